#include "cx/cli/progress.hpp"

#include <unistd.h>

#include <cstdio>

#include "cx/cli/log.hpp"

namespace cx::cli {

Progress::Progress(std::string unit, std::int64_t total, double plain_interval_s)
    : unit_(std::move(unit)), total_(total), tty_(isatty(STDERR_FILENO)), interval_(plain_interval_s) {
  enabled_ = log::level() != log::Level::quiet;
  start_ = last_ = std::chrono::steady_clock::now();
}

Progress::~Progress() { finish(); }

void Progress::add(std::int64_t n) {
  done_ += n;
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_).count();
  if ((tty_ && since >= 0.2) || (!tty_ && since >= interval_)) {
    last_ = now;
    draw(false);
  }
}

void Progress::finish() {
  if (finished_) return;
  finished_ = true;
  if (enabled_ && tty_ && done_ > 0) draw(true);
}

void Progress::draw(bool final) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? done_ / elapsed : 0.0;
  char line[256];
  if (tty_) {
    if (total_ > 0) {
      const int width = 30;
      int filled = static_cast<int>(width * std::min<double>(1.0, double(done_) / double(total_)));
      std::string bar(filled, '#');
      bar.resize(width, '.');
      double eta = rate > 0 ? (total_ - done_) / rate : 0.0;
      std::snprintf(line, sizeof line, "\r%s: [%s] %lld/%lld %s %.1f/s ETA %.0fs ", log::tool_name().c_str(),
                    bar.c_str(), (long long)done_, (long long)total_, unit_.c_str(), rate, eta);
    } else {
      std::snprintf(line, sizeof line, "\r%s: %lld %s %.1f/s ", log::tool_name().c_str(), (long long)done_,
                    unit_.c_str(), rate);
    }
    std::fputs(line, stderr);
    if (final) std::fputs("\n", stderr);
  } else {
    if (total_ > 0)
      std::snprintf(line, sizeof line, "%s: %lld/%lld %s, %.1f/s\n", log::tool_name().c_str(), (long long)done_,
                    (long long)total_, unit_.c_str(), rate);
    else
      std::snprintf(line, sizeof line, "%s: %lld %s, %.1f/s\n", log::tool_name().c_str(), (long long)done_,
                    unit_.c_str(), rate);
    std::fputs(line, stderr);
  }
  std::fflush(stderr);
}

}  // namespace cx::cli
