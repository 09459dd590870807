#pragma once
// The --skip-bad policy every tool shares (exit codes in CONVENTIONS.md): without --skip-bad the
// first bad input fails the run (cx::Error, exit 1); with it each bad input is named on stderr as
// `tool: where: what (skipped)` (printed even with -q: a skipped input is never silent), counted,
// and the run ends with exit 3. Safe to call from several threads.
#include <atomic>
#include <cstdint>
#include <string>

namespace cx::cli {

class BadInputs {
 public:
  explicit BadInputs(bool skip) : skip_(skip) {}

  bool skipping() const { return skip_; }
  // Throws cx::Error(`where: what`) without --skip-bad; otherwise names and counts the input.
  void report(const std::string& where, const std::string& what);
  // The same for a message that already names its input (`file: problem`).
  void report(const std::string& message);
  std::int64_t count() const { return count_.load(); }
  // kExitPartial (3) when any input was skipped, else kExitOk.
  int exit_code() const;
  // When any was skipped: one line `N of TOTAL inputs skipped (bad input); W records written`,
  // printed even with -q, and returns kExitPartial; otherwise prints nothing and returns kExitOk.
  int finish(std::int64_t total, std::int64_t written, const std::string& item = "input",
             const std::string& output = "record") const;

 private:
  bool skip_;
  std::atomic<std::int64_t> count_{0};
};

}  // namespace cx::cli
