// An image file given to cx-ingest (io/image_file dispatch by signature, then PNG, JPEG or DICOM):
// read_image_file(path) as cx-embed reads image inputs, and data::ingest_item on the same file,
// which is cx-ingest's whole per-file path (sniff, decode, DICOM render, window, PNG encode).
#include "common.hpp"
#include "cx/data/ingest.hpp"
#include "cx/io/image_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("image", data, size);
  cx::fuzz::run([&] { (void)cx::io::read_image_file(path); });
  cx::fuzz::run([&] {
    cx::data::IngestItem item;
    item.key = "k";
    item.image_path = path;
    item.origin = "fuzz";
    (void)cx::data::ingest_item(item, cx::data::IngestOptions{});
  });
  return 0;
}
