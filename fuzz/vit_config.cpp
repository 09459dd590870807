// A model folder's config.json (model/config.cpp, in cx_core) as cx-model info and the loader read
// it: read_vit_config(path), the derived sizes the loader uses, and the config written back.
#include "common.hpp"
#include "cx/model/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("config.json", data, size);
  cx::fuzz::run([&] {
    const cx::model::VitConfig c = cx::model::read_vit_config(path);
    (void)c.head_dim();
    (void)c.num_positions();
    (void)c.mlp_hidden();
    (void)cx::model::vit_config_to_json(c).dump();
  });
  return 0;
}
