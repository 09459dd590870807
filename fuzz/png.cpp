// PNG as stream fields and mask files are read (io/png, io/png_rows): decode_png on the bytes.
#include "common.hpp"
#include "cx/io/png.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  cx::fuzz::run([&] {
    const cx::Image im = cx::io::decode_png(bytes, "0001.png");
    if (im.data.size() != im.samples() * (im.bits / 8)) std::abort();
  });
  return 0;
}
