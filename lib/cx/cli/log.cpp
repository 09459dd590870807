#include "cx/cli/log.hpp"

#include <cmath>
#include <cstdio>
#include <mutex>

namespace cx::log {
namespace {
std::string g_name = "cx";
Level g_level = Level::normal;
std::mutex g_mutex;

void emit(const std::string& message) {
  std::lock_guard<std::mutex> lock(g_mutex);
  std::string line = g_name + ": " + message + "\n";
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}
}  // namespace

void set_tool_name(std::string name) { g_name = std::move(name); }
const std::string& tool_name() { return g_name; }
void set_level(Level level) { g_level = level; }
Level level() { return g_level; }

// Errors are printed even with -q: -q silences chatter, not the reason for a failure.
void error(const std::string& message) { emit(message); }
void always(const std::string& message) { emit(message); }
void warn(const std::string& message) {
  if (g_level >= Level::normal) emit("warning: " + message);
}
void info(const std::string& message) {
  if (g_level >= Level::normal) emit(message);
}
void debug(const std::string& message) {
  if (g_level >= Level::verbose) emit(message);
}

std::string number(double v, int decimals) {
  if (std::isnan(v)) return "NA";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

}  // namespace cx::log
