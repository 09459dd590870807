#pragma once
// Option values that several tools parse the same way: comma lists and shards. Errors are
// UsageError (exit 2) naming the option and the text.
#include <cstdint>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

namespace cx::cli {

// "a, b,,c" -> {"a", "b", "c"}; "" -> {} (the option was not given). Text that holds no item
// ("," or " ") is a usage error: "--view: empty list".
std::vector<std::string> parse_list(const std::string& text, const std::string& option);

// Every n-th input starting at i: "--shard i/n" with 0 <= i < n. The default takes everything.
struct Shard {
  std::int64_t index = 0;
  std::int64_t count = 1;
  // Whether the input at position `position` (0-based, in input order) belongs to this shard.
  bool takes(std::int64_t position) const { return position % count == index; }
};
// "" -> {0, 1}; otherwise "i/n" with decimal i and n, 0 <= i < n, n <= 2^31.
Shard parse_shard(const std::string& text, const std::string& option = "--shard");

// A validator for counts (-n, --batch, --epochs ...): a decimal integer from lo to hi, checked on the
// text before any conversion, so "99999999999999999999" is refused instead of saturating, and the
// message says the range in plain numbers: "must be an integer from 1 to 4096, not 0".
CLI::Validator count_range(std::int64_t lo, std::int64_t hi);

}  // namespace cx::cli
