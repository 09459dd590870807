#pragma once
// Progress on long work: a bar with rate and ETA on stderr when stderr is a terminal; otherwise
// one plain line every few seconds; nothing with -q.
#include <chrono>
#include <cstdint>
#include <string>

namespace cx::cli {

class Progress {
 public:
  // total < 0: unknown length (no bar, no ETA).
  explicit Progress(std::string unit, std::int64_t total = -1, double plain_interval_s = 10.0);
  ~Progress();
  void add(std::int64_t n = 1);
  void finish();
  std::int64_t done() const { return done_; }

 private:
  void draw(bool final);
  std::string unit_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  bool tty_;
  bool enabled_;
  bool finished_ = false;
  double interval_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace cx::cli
