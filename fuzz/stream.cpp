// The record stream reader as every tool opens its input: StreamReader::open(path), which sniffs
// gzip / zstd (io/decompress) and reads the tar (io/tar), then every record to the end.
#include "common.hpp"
#include "cx/io/stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("input.cx", data, size);
  cx::fuzz::run([&] {
    auto reader = cx::io::StreamReader::open(path);
    (void)reader->header().dump();
    cx::io::Record record;
    while (reader->next(record)) {
      (void)record.image();
      for (const auto& f : record.fields) (void)f.data.size();
    }
  });
  return 0;
}
