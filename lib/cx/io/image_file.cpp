#include "cx/io/image_file.hpp"

#include <algorithm>
#include <cstring>

#include "cx/cli/error.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/jpeg.hpp"
#include "cx/io/png.hpp"

namespace cx::io {

namespace {
bool starts_like(const std::string& bytes, const char* signature, std::size_t n) {
  const std::size_t have = std::min(bytes.size(), n);
  return have > 0 && std::memcmp(bytes.data(), signature, have) == 0;
}
}  // namespace

ImageFormat sniff_image_format(const std::string& bytes) {
  if (starts_like(bytes, "\x89PNG\r\n\x1a\n", 8)) return ImageFormat::png;
  if (starts_like(bytes, "\xFF\xD8\xFF", 3)) return ImageFormat::jpeg;
  return ImageFormat::unknown;
}

Image decode_image(const std::string& bytes, const std::string& where) {
  switch (sniff_image_format(bytes)) {
    case ImageFormat::png: return decode_png(bytes, where);
    case ImageFormat::jpeg: return decode_jpeg(bytes, where);
    case ImageFormat::unknown: break;
  }
  if (bytes.empty()) throw TruncatedError(at(where, "empty file, not a PNG or JPEG image"));
  if (bytes.size() >= 132 && bytes.compare(128, 4, "DICM") == 0)
    throw Error(at(where, "not a PNG or JPEG file (it looks like DICOM)"));
  throw Error(at(where, "not a PNG or JPEG file"));
}

Image read_image_file(const std::string& path) { return decode_image(read_file_bytes(path), path); }

}  // namespace cx::io
