#pragma once
// Shared by the libFuzzer targets (fuzz/README.md). Each target feeds its input to the library
// function the tools call and sorts what comes out:
//   - cx::Error (TruncatedError included) and cx::UsageError are the refusals the tools print and
//     exit on: expected, the input is simply bad.
//   - std::bad_alloc, and any other exception (a std::out_of_range from a library, a JSON type error)
//     are findings: the tool would print a message that names no file, or none that helps; the
//     target aborts so that libFuzzer saves the input.
//   - crashes, sanitizer reports, and memory above -rss_limit_mb / -malloc_limit_mb are findings
//     that libFuzzer and the sanitizers report themselves.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <string>
#include <typeinfo>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"

namespace cx::fuzz {

// Where the scratch folders go: /dev/shm when there is one (a file written per input costs
// milliseconds on a disk-backed /tmp), else /tmp; CX_FUZZ_TMP overrides.
inline std::string scratch_root() {
  if (const char* e = std::getenv("CX_FUZZ_TMP"); e && *e) return e;
  std::error_code ec;
  return std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : "/tmp";
}

// A per-process scratch folder, removed at exit: file-based APIs read their input there.
inline const std::string& scratch_dir() {
  static const std::string dir = [] {
    std::string d = scratch_root() + "/cx-fuzz-" + std::to_string(::getpid());
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d);
    std::atexit([] { std::error_code ec; std::filesystem::remove_all(scratch_root() + "/cx-fuzz-" + std::to_string(::getpid()), ec); });
    return d;
  }();
  return dir;
}

// Writes `size` bytes to scratch_dir()/name (replacing it) and returns the path.
inline std::string write_input(const std::string& name, const std::uint8_t* data, std::size_t size) {
  const std::string path = scratch_dir() + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) { std::perror(path.c_str()); std::abort(); }
  if (size && std::fwrite(data, 1, size, f) != size) { std::perror(path.c_str()); std::abort(); }
  std::fclose(f);
  return path;
}
inline std::string write_input(const std::string& name, const std::string& bytes) {
  return write_input(name, reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

// A copy of standard error taken before libFuzzer's -close_fd_mask=2 closes it (run.sh passes it
// to keep the libraries' warnings out of the logs), so that the targets' own reports still show.
inline int report_fd() {
  static const int fd = ::dup(2);
  return fd;
}
[[maybe_unused]] static const int kReportFd = report_fd();  // taken at start-up, before main

#define CX_FUZZ_REPORT(...) (dprintf(cx::fuzz::report_fd(), "cx-fuzz: FINDING: " __VA_ARGS__))

[[noreturn]] inline void finding(const char* kind, const std::exception& e) {
  CX_FUZZ_REPORT("%s escaped the library (%s): %s\n", kind, typeid(e).name(), e.what());
  std::abort();
}

// j.dump() as cx-ingest writes a record's .json: strings that are not UTF-8 (a Latin-1 label-file
// cell or DICOM attribute) become U+FFFD (findings F4/F5, fixed); any exception here is a finding.
inline void dump_like_ingest(const nlohmann::json& j) {
  (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Runs `body` and sorts its exceptions as the header says.
template <class F>
void run(F&& body) {
  try {
    body();
  } catch (const cx::Error&) {
  } catch (const cx::UsageError&) {
  } catch (const std::bad_alloc& e) {
    finding("std::bad_alloc", e);
  } catch (const std::exception& e) {
    finding("a non-cx exception", e);
  }
}

}  // namespace cx::fuzz
