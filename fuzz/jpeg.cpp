// JPEG (io/jpeg): decode_jpeg on the bytes, as image_file and cx-ingest call it.
#include "common.hpp"
#include "cx/io/jpeg.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  cx::fuzz::run([&] {
    const cx::Image im = cx::io::decode_jpeg(bytes, "x.jpg");
    if (im.data.size() != im.samples() * (im.bits / 8)) std::abort();
  });
  return 0;
}
