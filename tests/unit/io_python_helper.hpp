#pragma once
// Runs a Python script with Debian's /usr/bin/python3 (numpy, Pillow, torch) as an independent
// reference for the io tests. A script exits 77 when a module it needs is missing; the caller
// then skips, as it does when /usr/bin/python3 is absent.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace cx_test {

inline constexpr const char* kPython = "/usr/bin/python3";

inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') q += "'\\''";
    else q += c;
  }
  return q + "'";
}

struct PythonResult {
  bool ran = false;       // false: no python, or a module missing (exit 77): skip
  int status = -1;        // exit status when it ran
  std::string output;     // stdout and stderr
  std::string why_not;    // reason to skip
};

inline PythonResult run_python(const std::string& script, const std::vector<std::string>& args = {}) {
  PythonResult r;
  if (::access(kPython, X_OK) != 0) {
    r.why_not = std::string(kPython) + " not available";
    return r;
  }
  namespace fs = std::filesystem;
  fs::path file = fs::temp_directory_path() / ("cx_io_test_" + std::to_string(::getpid()) + ".py");
  {
    std::ofstream f(file);
    f << script;
  }
  std::string cmd = std::string(kPython) + " " + shell_quote(file.string());
  for (const auto& a : args) cmd += " " + shell_quote(a);
  cmd += " 2>&1";
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) {
    r.why_not = "cannot run " + std::string(kPython);
    return r;
  }
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int st = ::pclose(p);
  fs::remove(file);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (r.status == 77) {
    r.why_not = "python module missing: " + r.output;
    return r;
  }
  r.ran = true;
  return r;
}

}  // namespace cx_test
