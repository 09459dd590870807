#include "cx/io/json_file.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "cx/cli/error.hpp"

namespace cx::io {

nlohmann::json parse_json(const std::string& text, const std::string& where, bool require_object) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 2: ..."; keep the reason.
    std::string what = e.what();
    const auto colon = what.find(": ");
    if (colon != std::string::npos) what = what.substr(colon + 2);
    throw Error(at(where, "not valid JSON: " + what + " (byte " + std::to_string(e.byte) + ")"));
  } catch (const nlohmann::json::exception& e) {
    // Not a parse_error but as fatal: a number beyond double's range ("1e400") is out_of_range.406.
    std::string what = e.what();
    const auto bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    throw Error(at(where, "not valid JSON: " + what));
  }
  if (require_object && !j.is_object()) throw Error(at(where, "not a JSON object"));
  return j;
}

nlohmann::json read_json_file(const std::string& path, bool require_object) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) throw Error(at(path, std::string("cannot open: ") + std::strerror(errno)));
  if (S_ISDIR(st.st_mode)) throw Error(at(path, "is a folder"));
  if (S_ISREG(st.st_mode) && static_cast<std::uint64_t>(st.st_size) > kMaxJsonFileBytes)
    throw Error(at(path, "larger than 64 MiB (" + std::to_string(st.st_size) + " bytes): not a JSON file cx reads"));
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) throw Error(at(path, std::string("cannot open: ") + std::strerror(errno)));
  std::string text;
  char buf[65536];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) {
    text.append(buf, n);
    if (text.size() > kMaxJsonFileBytes) throw Error(at(path, "larger than 64 MiB: not a JSON file cx reads"));
  }
  if (std::ferror(f.get())) throw Error(at(path, std::string("read error: ") + std::strerror(errno)));
  return parse_json(text, path, require_object);
}

int check_format(const nlohmann::json& j, const std::string& where, const std::string& format, int max_major) {
  const auto f = j.find("format");
  const std::string got = f != j.end() && f->is_string() ? f->get<std::string>() : "";
  if (got != format)
    throw Error(at(where, got.empty() ? "no \"format\": not a " + format + " file"
                                      : "format is \"" + got + "\", not \"" + format + "\""));
  const auto v = j.find("version");
  const std::string version = v != j.end() && v->is_string() ? v->get<std::string>() : "";
  int major = 0;
  std::size_t i = 0;
  while (i < version.size() && version[i] >= '0' && version[i] <= '9' && i < 6) major = major * 10 + (version[i++] - '0');
  if (i == 0 || (i < version.size() && version[i] != '.')) throw Error(at(where, "unreadable version \"" + version + "\""));
  if (major > max_major)
    throw Error(at(where, "format version " + version + " is newer than this build reads (" + std::to_string(max_major) +
                              ".x)"));
  return major;
}

}  // namespace cx::io
