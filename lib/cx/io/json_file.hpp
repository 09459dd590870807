#pragma once
// The one reader of JSON files (configs, head and checkpoint folders, recipes' siblings): size
// bounded before anything is read, parse errors with the byte offset, and an optional check of
// a cx file's "format" name and "version" major, so every reader refuses the same things the
// same way.
#include <cstddef>
#include <string>

#include <nlohmann/json.hpp>

namespace cx::io {

// JSON files cx reads are small (configs, head descriptions); anything bigger is refused unread.
inline constexpr std::size_t kMaxJsonFileBytes = std::size_t{64} << 20;

// Reads and parses `path`. Errors (cx::Error): "PATH: cannot open: <reason>", "PATH: is a folder",
// "PATH: larger than 64 MiB", "PATH: not valid JSON: <reason> (byte N)". With `require_object`,
// a top level that is not an object is refused too ("PATH: not a JSON object").
nlohmann::json read_json_file(const std::string& path, bool require_object = true);

// Parses JSON text read from somewhere named `where` (a stream member, say), with the same errors.
nlohmann::json parse_json(const std::string& text, const std::string& where, bool require_object = true);

// Checks a cx file's identity: j["format"] == format and the major of j["version"] ("M.m") at most
// `max_major`. Errors name `where`: "format is \"X\", not \"Y\"", "unreadable version \"V\"",
// "format version 2.0 is newer than this build reads (1.x)". Returns the major version.
int check_format(const nlohmann::json& j, const std::string& where, const std::string& format, int max_major);

}  // namespace cx::io
