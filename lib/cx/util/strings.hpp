#pragma once
// The string helpers every concern needs, in one place (ASCII only: file names, CSV cells, label
// names and options are ASCII in every format cx reads; UTF-8 bytes pass through unchanged).
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

namespace cx::util {

inline bool is_space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// Leading and trailing white space (space, tab, CR, LF, VT, FF) removed.
inline std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && is_space(s[b])) ++b;
  while (e > b && is_space(s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

inline std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

inline std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Case-insensitive (ASCII) suffix test: file extensions (".PNG", ".Dcm").
inline bool ends_with_ci(std::string_view s, std::string_view suffix) {
  if (s.size() < suffix.size()) return false;
  for (std::size_t i = 0; i < suffix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - suffix.size() + i])) !=
        std::tolower(static_cast<unsigned char>(suffix[i])))
      return false;
  return true;
}

// Runs of white space become one space; leading and trailing white space goes.
inline std::string collapse_space(std::string_view s) {
  std::string t;
  bool space = false;
  for (char c : s) {
    if (is_space(c)) {
      space = true;
    } else {
      if (space && !t.empty()) t += ' ';
      space = false;
      t += c;
    }
  }
  return t;
}

// A command-line list: "a, b,,c" -> {"a", "b", "c"}. Items are trimmed; empty items are dropped.
inline std::vector<std::string> split_list(std::string_view s, char sep = ',') {
  std::vector<std::string> out;
  std::size_t b = 0;
  while (b <= s.size()) {
    std::size_t e = s.find(sep, b);
    if (e == std::string_view::npos) e = s.size();
    std::string item = trim(s.substr(b, e - b));
    if (!item.empty()) out.push_back(std::move(item));
    b = e + 1;
  }
  return out;
}

// Every field between separators, empty ones kept: "a,,b" -> {"a", "", "b"}; "" -> {""}.
inline std::vector<std::string> split_exact(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t b = 0;
  while (true) {
    std::size_t e = s.find(sep, b);
    if (e == std::string_view::npos) {
      out.emplace_back(s.substr(b));
      return out;
    }
    out.emplace_back(s.substr(b, e - b));
    b = e + 1;
  }
}

inline std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

}  // namespace cx::util
