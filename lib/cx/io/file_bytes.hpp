#pragma once
// Whole-file reads for the decoders (PNG, JPEG): errors name the path in one line.
#include <string>

namespace cx::io {

// Reads a regular file (or a pipe) whole; "-" is not special here.
std::string read_file_bytes(const std::string& path);

}  // namespace cx::io
