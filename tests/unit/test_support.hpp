#pragma once
// What several test files need: the shared samples and fixtures folder, and a temporary folder
// removed at the end of its scope.
#include <stdlib.h>

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace cx_test {

// ../shared (CX_SHARED overrides the path CMake compiled in).
inline std::string shared_dir() {
  if (const char* env = std::getenv("CX_SHARED")) return env;
#ifdef CX_SHARED_DIR
  return CX_SHARED_DIR;
#else
  return "../shared";
#endif
}

// A fresh folder under the system's temporary folder (mkdtemp), removed with what it holds.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "cx_test") {
    std::string templ = (std::filesystem::temp_directory_path() / (tag + "_XXXXXX")).string();
    if (!::mkdtemp(templ.data())) throw std::runtime_error("mkdtemp failed for " + templ);
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string operator/(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The message of what f() throws, or "no error": for asserting exact error texts in one line.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace cx_test
