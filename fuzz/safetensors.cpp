// safetensors as the model and head loaders open it (io/safetensors): SafetensorsFile::open(path)
// (mmap + header and tensor-table validation), then every tensor copied out.
#include "common.hpp"
#include "cx/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("model.safetensors", data, size);
  cx::fuzz::run([&] {
    const auto file = cx::io::SafetensorsFile::open(path);
    for (const auto& [name, t] : file.tensors()) {
      const cx::io::NdArray a = t.copy();
      if (a.data.size() != t.nbytes) std::abort();
    }
    (void)file.metadata().size();
  });
  cx::fuzz::run([&] {  // the in-memory entry point (stream fields) must agree with the file one
    (void)cx::io::SafetensorsFile::from_bytes(std::string(reinterpret_cast<const char*>(data), size), "field");
  });
  return 0;
}
