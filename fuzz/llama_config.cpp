// A Llama model folder's config.json (model/llama_config.cpp, in cx_core) as load_llama reads it:
// read_llama_config(path), the sizes derived from it, and the config written back and read again
// (a changed config after the round trip is a finding).
#include <cstdlib>

#include "common.hpp"
#include "cx/model/llama_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("config.json", data, size);
  cx::fuzz::run([&] {
    const cx::model::LlamaConfig c = cx::model::read_llama_config(path);
    (void)c.parameter_count();
    (void)c.kv_groups();
    const nlohmann::json written = c.to_json();
    const cx::model::LlamaConfig again = cx::model::LlamaConfig::from_json(written, "round trip");
    if (again.to_json() != written) {
      CX_FUZZ_REPORT("llama config changed in a to_json/from_json round trip: %s\n",
                     written.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
      std::abort();
    }
  });
  return 0;
}
