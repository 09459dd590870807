#include "cx/io/npy.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <map>

#include "cx/cli/error.hpp"

namespace cx::io {

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;
// NumPy >= 1.23 aligns the data to 64 bytes and leaves room for the first axis to grow to 21 digits.
constexpr std::size_t kAlign = 64;
constexpr std::size_t kGrowthDigits = 21;

std::string shape_text(const std::vector<std::int64_t>& shape) {
  // Python's repr of a tuple: "()", "(3,)", "(2, 3)".
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

// The header is a Python dict literal, e.g. {'descr': '<f4', 'fortran_order': False, 'shape': (3,), }.
// This reads exactly what NumPy writes (and Python 2's "3L" integers), nothing more general.
class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& where) : s_(text), where_(where) {}

  struct Value {
    enum Kind { string, boolean, tuple, list } kind;
    std::string text;  // string; for a list, its source text
    bool flag = false;
    std::vector<std::int64_t> ints;
  };

  std::map<std::string, Value> parse_dict() {
    std::map<std::string, Value> out;
    skip_ws();
    expect('{');
    for (;;) {
      skip_ws();
      if (peek() == '}') {
        ++i_;
        break;
      }
      std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      Value v = parse_value();
      if (!out.emplace(key, std::move(v)).second) fail("key '" + key + "' appears twice");
      skip_ws();
      if (peek() == ',') {
        ++i_;
        continue;
      }
      skip_ws();
      expect('}');
      break;
    }
    skip_ws();
    if (i_ != s_.size()) fail("unexpected text after the dictionary");
    return out;
  }

 private:
  const std::string& s_;
  const std::string& where_;
  std::size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(at(where_, "malformed .npy header: " + what));
  }
  char peek() const { return i_ < s_.size() ? s_[i_] : '\0'; }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "' at byte " + std::to_string(i_));
    ++i_;
  }
  std::string parse_string() {
    char q = peek();
    if (q != '\'' && q != '"') fail("expected a quoted string at byte " + std::to_string(i_));
    ++i_;
    std::string out;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') fail("escapes in strings are not supported");
      out += s_[i_++];
    }
    expect(q);
    return out;
  }
  std::int64_t parse_int() {
    std::size_t start = i_;
    std::int64_t v = 0;
    bool negative = false;
    if (peek() == '-') {
      negative = true;
      ++i_;
    }
    if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("expected an integer at byte " + std::to_string(start));
    while (std::isdigit(static_cast<unsigned char>(peek()))) {
      if (v > (INT64_MAX - 9) / 10) fail("integer too large at byte " + std::to_string(start));
      v = v * 10 + (s_[i_++] - '0');
    }
    if (peek() == 'L') ++i_;  // Python 2 long
    return negative ? -v : v;
  }
  Value parse_value() {
    Value v{};
    char c = peek();
    if (c == '\'' || c == '"') {
      v.kind = Value::string;
      v.text = parse_string();
    } else if (s_.compare(i_, 4, "True") == 0) {
      v.kind = Value::boolean;
      v.flag = true;
      i_ += 4;
    } else if (s_.compare(i_, 5, "False") == 0) {
      v.kind = Value::boolean;
      v.flag = false;
      i_ += 5;
    } else if (c == '(') {
      v.kind = Value::tuple;
      ++i_;
      skip_ws();
      while (peek() != ')') {
        v.ints.push_back(parse_int());
        skip_ws();
        if (peek() == ',') {
          ++i_;
          skip_ws();
        } else if (peek() != ')') {
          fail("expected ',' or ')' in a tuple at byte " + std::to_string(i_));
        }
      }
      ++i_;
    } else if (c == '[') {
      // A structured dtype's descr: kept as text so the error can show it.
      v.kind = Value::list;
      std::size_t start = i_;
      int depth = 0;
      do {
        if (i_ >= s_.size()) fail("unterminated list");
        if (s_[i_] == '[' || s_[i_] == '(') ++depth;
        if (s_[i_] == ']' || s_[i_] == ')') --depth;
        ++i_;
      } while (depth > 0);
      v.text = s_.substr(start, i_ - start);
    } else {
      fail("unexpected value at byte " + std::to_string(i_));
    }
    return v;
  }
};

}  // namespace

NdArray read_npy(const std::string& bytes, const std::string& where) {
  const std::size_t size = bytes.size();
  if (bytes.compare(0, std::min(size, kMagicLen), kMagic, std::min(size, kMagicLen)) != 0)
    throw Error(at(where, "not a .npy file (bad magic)"));
  if (size < kMagicLen + 2)
    throw TruncatedError(at(where, "truncated .npy header (" + std::to_string(size) + " bytes)"));
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0)
    throw Error(at(where, "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor)));
  const std::size_t len_size = major == 1 ? 2 : 4;
  const std::size_t prefix = kMagicLen + 2 + len_size;
  if (size < prefix) throw TruncatedError(at(where, "truncated .npy header (" + std::to_string(size) + " bytes)"));
  std::uint64_t header_len = 0;
  for (std::size_t i = 0; i < len_size; ++i)
    header_len |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
  if (header_len > size - prefix)
    throw TruncatedError(at(where, "header length " + std::to_string(header_len) + " past the end of the file (" +
                                       std::to_string(size) + " bytes)"));
  const std::string header = bytes.substr(prefix, header_len);

  auto dict = HeaderParser(header, where).parse_dict();
  for (const char* key : {"descr", "fortran_order", "shape"})
    if (!dict.count(key)) throw Error(at(where, std::string("malformed .npy header: no '") + key + "' key"));
  if (dict.size() != 3) {
    for (const auto& [k, v] : dict)
      if (k != "descr" && k != "fortran_order" && k != "shape")
        throw Error(at(where, "malformed .npy header: unexpected key '" + k + "'"));
  }
  const auto& descr = dict["descr"];
  if (descr.kind == HeaderParser::Value::list)
    throw Error(at(where, "structured dtype " + descr.text + " is not supported"));
  if (descr.kind != HeaderParser::Value::string)
    throw Error(at(where, "malformed .npy header: 'descr' is not a string"));
  if (dict["fortran_order"].kind != HeaderParser::Value::boolean)
    throw Error(at(where, "malformed .npy header: 'fortran_order' is not True or False"));
  if (dict["fortran_order"].flag) throw Error(at(where, "Fortran-order arrays are not supported (fortran_order: True)"));
  if (dict["shape"].kind != HeaderParser::Value::tuple)
    throw Error(at(where, "malformed .npy header: 'shape' is not a tuple"));

  NdArray a;
  a.dtype = dtype_from_npy_descr(descr.text, where);
  a.shape = dict["shape"].ints;
  const std::uint64_t remaining = size - prefix - header_len;
  // The element count of the nonzero dimensions, within int64 (numel() and every consumer's
  // row * column); then the bytes it needs.
  std::uint64_t elements = 1, need = 0;
  bool zero = false, overflow = false;
  for (auto d : a.shape) {
    if (d < 0) throw Error(at(where, "negative dimension in shape " + shape_text(a.shape)));
    if (d == 0) zero = true;
    else if (elements > static_cast<std::uint64_t>(INT64_MAX) / static_cast<std::uint64_t>(d)) overflow = true;
    else elements *= static_cast<std::uint64_t>(d);
  }
  if (!overflow && elements > UINT64_MAX / dtype_size(a.dtype)) overflow = true;
  if (!overflow) need = elements * dtype_size(a.dtype);
  // An empty array needs no data, but its other dimensions must still multiply within int64.
  if (zero && overflow)
    throw Error(at(where, "shape " + shape_text(a.shape) + " has more than 2^63 elements besides its zero"));
  if (zero) need = 0;
  if ((overflow && !zero) || need > remaining)
    throw TruncatedError(at(where, "data holds " + std::to_string(remaining) + " bytes, shape " + shape_text(a.shape) +
                                       " of " + descr.text + " needs " +
                                       (overflow && !zero ? std::string("more") : std::to_string(need))));
  if (need < remaining)
    throw Error(at(where, std::to_string(remaining - need) + " unexpected bytes after the data of shape " +
                              shape_text(a.shape) + " " + descr.text));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(prefix + header_len), bytes.end());
  return a;
}

std::string write_npy(const NdArray& array) {
  const std::string descr = dtype_npy_descr(array.dtype);
  for (auto d : array.shape)
    if (d < 0) throw Error("write_npy: negative dimension in shape " + shape_text(array.shape));
  const auto need = static_cast<std::uint64_t>(array.numel()) * dtype_size(array.dtype);
  if (array.data.size() != need)
    throw Error("write_npy: array holds " + std::to_string(array.data.size()) + " bytes, shape " +
                shape_text(array.shape) + " of " + descr + " needs " + std::to_string(need));

  // Exactly numpy.lib.format._write_array_header: sorted keys, repr values, growth spaces, then
  // spaces and '\n' up to the 64-byte boundary (a full 64 when already aligned, as NumPy does).
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text(array.shape) + ", }";
  if (!array.shape.empty()) dict.append(kGrowthDigits - std::to_string(array.shape[0]).size(), ' ');
  const std::size_t hlen = dict.size() + 1;
  std::size_t len_size = 2;
  std::size_t pad = kAlign - (kMagicLen + 2 + len_size + hlen) % kAlign;
  int major = 1;
  if (hlen + pad > 0xFFFF) {
    major = 2;
    len_size = 4;
    pad = kAlign - (kMagicLen + 2 + len_size + hlen) % kAlign;
  }
  const std::uint64_t total = hlen + pad;
  std::string out(kMagic, kMagicLen);
  out += static_cast<char>(major);
  out += '\0';
  for (std::size_t i = 0; i < len_size; ++i) out += static_cast<char>((total >> (8 * i)) & 0xFF);
  out += dict;
  out.append(pad, ' ');
  out += '\n';
  out.append(array.data.begin(), array.data.end());
  return out;
}

}  // namespace cx::io
