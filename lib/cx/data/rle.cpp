#include "cx/data/rle.hpp"

#include <cstring>

#include "cx/cli/error.hpp"

namespace cx::data {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Next unsigned decimal in s from pos; false at the end. Throws on anything else.
bool next_number(std::string_view s, std::size_t& pos, std::int64_t& out, const std::string& where) {
  while (pos < s.size() && is_space(s[pos])) ++pos;
  if (pos >= s.size()) return false;
  std::size_t begin = pos;
  std::int64_t v = 0;
  while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
    if (v > (INT64_MAX - 9) / 10) throw Error(at(where, "RLE number too large at offset " + std::to_string(begin)));
    v = v * 10 + (s[pos] - '0');
    ++pos;
  }
  if (pos == begin || (pos < s.size() && !is_space(s[pos]))) {
    std::size_t end = begin;
    while (end < s.size() && !is_space(s[end]) && end - begin < 20) ++end;
    throw Error(at(where, "RLE: '" + std::string(s.substr(begin, end - begin)) + "' at offset " +
                              std::to_string(begin) + " is not a non-negative integer"));
  }
  out = v;
  return true;
}

void check_mask_size(int height, int width, const std::string& where) {
  if (height <= 0 || width <= 0)
    throw Error(at(where, "RLE mask size " + std::to_string(height) + "x" + std::to_string(width) + " is not positive"));
  if (static_cast<std::int64_t>(height) * width > kMaxMaskPixels)
    throw Error(at(where, "RLE mask size " + std::to_string(height) + "x" + std::to_string(width) + " is above the limit of " +
                              std::to_string(kMaxMaskPixels) + " pixels"));
}

}  // namespace

void rle_paint(std::string_view rle, int height, int width, std::uint8_t value, std::uint8_t* labels,
               const std::string& where) {
  check_mask_size(height, width, where);
  const std::int64_t total = static_cast<std::int64_t>(height) * width;
  std::size_t pos = 0;
  std::int64_t start = 0, length = 0;
  while (next_number(rle, pos, start, where)) {
    if (!next_number(rle, pos, length, where))
      throw Error(at(where, "RLE has an odd number of values (a start without its length)"));
    if (start < 1) throw Error(at(where, "RLE start 0: starts are 1-based"));
    if (start > total || length > total - (start - 1))  // start - 1 + length > total, without overflow
      throw Error(at(where, "RLE run " + std::to_string(start) + " " + std::to_string(length) +
                                " ends past the " + std::to_string(height) + "x" + std::to_string(width) + " mask"));
    std::memset(labels + (start - 1), value, static_cast<std::size_t>(length));
  }
}

std::vector<std::uint8_t> rle_decode(std::string_view rle, int height, int width, const std::string& where) {
  check_mask_size(height, width, where);
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(height) * width, 0);
  rle_paint(rle, height, width, 1, mask.data(), where);
  return mask;
}

namespace {

// Runs of the pixels where inside(value) holds.
template <class Inside>
std::string encode_runs(const std::uint8_t* mask, int height, int width, Inside inside) {
  const std::size_t total = static_cast<std::size_t>(height) * width;
  std::string out;
  std::size_t i = 0;
  while (i < total) {
    if (!inside(mask[i])) {
      ++i;
      continue;
    }
    std::size_t begin = i;
    while (i < total && inside(mask[i])) ++i;
    if (!out.empty()) out += ' ';
    out += std::to_string(begin + 1);
    out += ' ';
    out += std::to_string(i - begin);
  }
  return out;
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) {
    if (ch == '"') q += '"';
    q += ch;
  }
  return q + "\"";
}

}  // namespace

std::string rle_encode(const std::uint8_t* mask, int height, int width) {
  return encode_runs(mask, height, width, [](std::uint8_t v) { return v != 0; });
}

std::string rle_encode_value(const std::uint8_t* labels, int height, int width, std::uint8_t value) {
  return encode_runs(labels, height, width, [value](std::uint8_t v) { return v == value; });
}

std::string chexmask_column(const std::string& class_name) {
  if (class_name == "left lung") return "Left Lung";
  if (class_name == "right lung") return "Right Lung";
  if (class_name == "heart") return "Heart";
  return class_name;
}

std::string rle_csv_header(const std::vector<std::string>& classes) {
  std::string line = "key";
  for (std::size_t k = 1; k < classes.size(); ++k) line += "," + csv_cell(chexmask_column(classes[k]));
  return line + ",Height,Width\n";
}

std::string rle_csv_row(const std::string& key, const Image& label_map, int classes) {
  if (label_map.channels != 1 || label_map.bits != 8) throw Error(at(key, "an RLE row needs an 8-bit label map"));
  std::string line = csv_cell(key);
  for (int k = 1; k < classes; ++k)
    line += "," + rle_encode_value(label_map.u8(), label_map.height, label_map.width, static_cast<std::uint8_t>(k));
  return line + "," + std::to_string(label_map.height) + "," + std::to_string(label_map.width) + "\n";
}

Image chexmask_label_map(std::string_view left_lung, std::string_view right_lung, std::string_view heart,
                         int height, int width, const std::string& where) {
  check_mask_size(height, width, where);
  Image map = Image::gray8(width, height);
  rle_paint(left_lung, height, width, kLeftLung, map.u8(), where + ": Left Lung");
  rle_paint(right_lung, height, width, kRightLung, map.u8(), where + ": Right Lung");
  rle_paint(heart, height, width, kHeart, map.u8(), where + ": Heart");
  return map;
}

}  // namespace cx::data
