// The cx_core half of reading a head folder's head.json and a checkpoint's state.json
// (train/head.cpp read_head_json, train/checkpoint.cpp read_state): io::read_json_file(path) and
// io::check_format. The rest of those readers lives in cx_torch (LibTorch) and is not fuzzed here
// (fuzz/README.md).
#include "common.hpp"
#include "cx/io/json_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("head.json", data, size);
  cx::fuzz::run([&] {
    const nlohmann::json j = cx::io::read_json_file(path);
    cx::fuzz::run([&] { (void)cx::io::check_format(j, path, "cx-head", 1); });
    cx::fuzz::run([&] { (void)cx::io::check_format(j, path, "cx-finetune-checkpoint", 1); });
  });
  return 0;
}
