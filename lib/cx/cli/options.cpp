#include "cx/cli/options.hpp"

#include "cx/cli/error.hpp"
#include "cx/util/strings.hpp"

namespace cx::cli {

std::vector<std::string> parse_list(const std::string& text, const std::string& option) {
  std::vector<std::string> items = util::split_list(text, ',');
  if (!text.empty() && items.empty()) throw UsageError(option + ": empty list");
  return items;
}

namespace {
bool parse_count(const std::string& s, std::int64_t& out) {
  if (s.empty() || s.size() > 10) return false;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}
}  // namespace

Shard parse_shard(const std::string& text, const std::string& option) {
  Shard shard;
  if (text.empty()) return shard;
  const auto slash = text.find('/');
  const bool ok = slash != std::string::npos && parse_count(text.substr(0, slash), shard.index) &&
                  parse_count(text.substr(slash + 1), shard.count) && shard.count >= 1 &&
                  shard.count <= (std::int64_t{1} << 31) && shard.index < shard.count;
  if (!ok) throw UsageError(option + ": expected i/n with 0 <= i < n, not '" + text + "'");
  return shard;
}

CLI::Validator count_range(std::int64_t lo, std::int64_t hi) {
  const std::string range = std::to_string(lo) + " to " + std::to_string(hi);
  return CLI::Validator(
      [lo, hi, range](std::string& text) -> std::string {
        std::string t = util::trim(text);
        bool ok = !t.empty() && t.size() <= 18;
        std::int64_t v = 0;
        std::size_t i = 0;
        bool negative = false;
        if (ok && (t[0] == '-' || t[0] == '+')) {
          negative = t[0] == '-';
          ok = t.size() > 1;
          i = 1;
        }
        for (; ok && i < t.size(); ++i) {
          if (t[i] < '0' || t[i] > '9') ok = false;
          else v = v * 10 + (t[i] - '0');
        }
        if (negative) v = -v;
        if (!ok || v < lo || v > hi) return "must be an integer from " + range + ", not " + text;
        return std::string();
      },
      "INT in [" + range + "]", "count_range");
}

}  // namespace cx::cli
