#pragma once
// PNG through libpng. Decoding accepts gray, gray+alpha, RGB, RGBA and palette images of 1-16 bits
// and returns 8- or 16-bit gray or RGB (alpha dropped, palette expanded, <8 bits widened to 8).
// Encoding writes 8/16-bit gray or RGB, deterministically (no time chunk).
// Speed: non-interlaced 8/16-bit gray and RGB files are read by our own chunk reader (zlib, and
// cx/io/png_rows.hpp's filters), which hands anything irregular to libpng, so results and error
// messages are libpng's. Levels 1-3 are written by our own writer (Paeth rows; Huffman coding, or
// run-length matching for images that are mostly runs), the other levels by libpng.
#include <string>

#include "cx/image/image.hpp"

namespace cx::io {

Image decode_png(const std::string& bytes, const std::string& where);
std::string encode_png(const Image& image, int compression_level = 6);
Image read_png_file(const std::string& path);
void write_png_file(const std::string& path, const Image& image);  // atomic

}  // namespace cx::io
