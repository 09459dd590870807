#pragma once
// How a file argument is named in messages: "-" is standard input (for inputs) or standard output
// (for outputs); anything else is the name as given.
#include <string>

namespace cx::cli {

inline std::string input_name(const std::string& path) { return path.empty() || path == "-" ? "standard input" : path; }
inline std::string output_name(const std::string& path) { return path.empty() || path == "-" ? "standard output" : path; }

}  // namespace cx::cli
