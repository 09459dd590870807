#pragma once
// Errors and the exit codes every tool shares (man pages list them):
//   0 success, 1 data or runtime failure, 2 usage error, 3 partial success (--skip-bad).
#include <stdexcept>
#include <string>

namespace cx {

enum ExitCode : int { kExitOk = 0, kExitFailure = 1, kExitUsage = 2, kExitPartial = 3 };

// A failure caused by the data or a runtime step (exit 1). The message names the file and the
// problem, e.g. "scans/12.dcm: unsupported transfer syntax ...".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// A stream or file that ends before its end marker (exit 1).
class TruncatedError : public Error {
 public:
  explicit TruncatedError(const std::string& message) : Error(message) {}
};

// Bad command line (exit 2).
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

// Prefixes `where: ` to a message; the common shape of every error we print.
inline std::string at(const std::string& where, const std::string& what) {
  return where.empty() ? what : where + ": " + what;
}

}  // namespace cx
