#pragma once
// JPEG through libjpeg-turbo (the classic jpeglib API): baseline, extended and progressive JPEG
// with 8-bit samples, decoded to 8-bit gray (1 component) or RGB (YCbCr and RGB input), with
// libjpeg's defaults (islow IDCT, fancy upsampling), so pixels equal those of Pillow on the same
// library. CMYK/YCCK and 12-bit JPEGs are refused by name. A file cut short is a TruncatedError
// (libjpeg alone would pad it with gray and call it a warning); other corrupt data is a cx::Error.
#include <string>

#include "cx/image/image.hpp"

namespace cx::io {

Image decode_jpeg(const std::string& bytes, const std::string& where);
Image read_jpeg_file(const std::string& path);
// Baseline JPEG of an 8-bit gray or RGB image (4:2:0 chroma for RGB), quality 1-100; deterministic.
// For tests and examples: cx streams carry PNG, never JPEG.
std::string encode_jpeg(const Image& image, int quality = 90);

}  // namespace cx::io
