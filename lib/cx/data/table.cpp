#include "cx/data/table.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "cx/cli/error.hpp"
#include "cx/cli/names.hpp"
#include "cx/data/csv_reader.hpp"
#include "cx/io/decompress.hpp"
#include "cx/util/strings.hpp"

namespace cx::data {

namespace {

void check_header(const Table& t, std::size_t line) {
  std::unordered_map<std::string, int> seen;
  for (std::size_t i = 0; i < t.columns.size(); ++i)
    if (!seen.emplace(t.columns[i], static_cast<int>(i)).second)
      throw Error(at(t.source, "line " + std::to_string(line) + ": column '" + t.columns[i] + "' appears twice in the header"));
}

}  // namespace

int Table::find_column(const std::string& name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return static_cast<int>(i);
  return -1;
}

int Table::require_column(const std::string& name) const {
  int i = find_column(name);
  if (i < 0) throw Error(at(source, "no column '" + name + "' (columns: " + name_list(columns, 12) + ")"));
  return i;
}

std::string Table::where_row(std::size_t row) const {
  if (row < lines.size()) return at(source, "line " + std::to_string(lines[row]));
  return at(source, "row " + std::to_string(row + 1));
}

std::string read_text_file(const std::string& path) { return io::read_decompressed(path); }

Table parse_table(const std::string& text, const std::string& source, char delimiter) {
  Table t;
  t.source = source;
  char delim = delimiter ? delimiter : delimiter_from_name(source);
  if (!delim) {
    // From the first line: tab if it holds one.
    const std::size_t nl = text.find('\n');
    delim = text.find('\t') < (nl == std::string::npos ? text.size() : nl) ? '\t' : ',';
  }
  CsvParser parser(text.data(), text.size(), source, delim);
  if (!parser.next(t.columns)) throw Error(at(source, "empty table: no header row"));
  check_header(t, parser.line());
  std::vector<std::string> fields;
  while (parser.next(fields)) {
    if (fields.size() != t.columns.size())
      throw Error(at(source, "line " + std::to_string(parser.line()) + ": " + std::to_string(fields.size()) +
                                 " fields, the header has " + std::to_string(t.columns.size())));
    t.rows.push_back(std::move(fields));
    t.lines.push_back(parser.line());
    fields = {};
  }
  return t;
}

Table read_table(const std::string& path, char delimiter) {
  std::string text = read_text_file(path);
  return parse_table(text, cli::input_name(path), delimiter);
}

std::string tsv_cell(std::string text) {
  for (char& c : text)
    if (c == '\t' || c == '\n' || c == '\r') c = ' ';
  return text;
}

std::string format_tsv(const Table& table) {
  std::string out;
  auto put_row = [&out](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i) out.push_back('\t');
      out += tsv_cell(row[i]);
    }
    out.push_back('\n');
  };
  put_row(table.columns);
  for (const auto& r : table.rows) put_row(r);
  return out;
}

double parse_number(const std::string& cell, const std::string& where) {
  std::size_t b = 0, e = cell.size();
  while (b < e && cell[b] == ' ') ++b;
  while (e > b && cell[e - 1] == ' ') --e;
  if (b == e) throw Error(at(where, "empty cell where a number is needed"));
  const char* first = cell.data() + b;
  const char* last = cell.data() + e;
  if (*first == '+') ++first;  // from_chars refuses a leading '+', strtod takes it
  double v = 0;
  auto [ptr, ec] = std::from_chars(first, last, v);
  if (ec == std::errc::result_out_of_range) throw Error(at(where, "number out of range: '" + cell + "'"));
  if (ec != std::errc() || ptr != last) throw Error(at(where, "not a number: '" + cell + "'"));
  return v;
}

double parse_score(const std::string& cell, const std::string& where) {
  double v = parse_number(cell, where);
  if (std::isnan(v)) throw Error(at(where, "NaN score refused (a score must be a finite number)"));
  if (std::isinf(v)) throw Error(at(where, "infinite score refused (a score must be a finite number)"));
  return v;
}

JoinResult join_rows(const Table& left, const std::string& left_key, const Table& right,
                     const std::string& right_key, bool allow_repeats_left) {
  const int lk = left.require_column(left_key);
  const int rk = right.require_column(right_key);
  std::unordered_map<std::string, std::size_t> right_index;
  right_index.reserve(right.rows.size() * 2);
  for (std::size_t i = 0; i < right.rows.size(); ++i) {
    const std::string& k = right.rows[i][rk];
    if (!right_index.emplace(k, i).second)
      throw Error(at(right.where_row(i), "key '" + k + "' appears twice"));
  }
  JoinResult r;
  r.pairs.reserve(left.rows.size());
  std::vector<char> used(right.rows.size(), 0);
  std::unordered_map<std::string, std::size_t> left_seen;
  if (!allow_repeats_left) left_seen.reserve(left.rows.size() * 2);
  for (std::size_t i = 0; i < left.rows.size(); ++i) {
    const std::string& k = left.rows[i][lk];
    if (!allow_repeats_left && !left_seen.emplace(k, i).second)
      throw Error(at(left.where_row(i), "key '" + k + "' appears twice"));
    auto it = right_index.find(k);
    if (it == right_index.end()) {
      if (r.only_left.empty() || r.only_left.back() != k) r.only_left.push_back(k);
      continue;
    }
    used[it->second] = 1;
    r.pairs.emplace_back(i, it->second);
  }
  for (std::size_t i = 0; i < right.rows.size(); ++i)
    if (!used[i]) r.only_right.push_back(right.rows[i][rk]);
  return r;
}

Table join_tables(const Table& left, const Table& right, const std::string& key, const JoinResult& join,
                  const std::string& right_suffix) {
  const int lk = left.require_column(key);
  const int rk = right.require_column(key);
  Table t;
  t.source = left.source + "+" + right.source;
  t.columns.push_back(key);
  std::vector<int> lcols, rcols;
  for (int i = 0; i < static_cast<int>(left.columns.size()); ++i)
    if (i != lk) {
      lcols.push_back(i);
      t.columns.push_back(left.columns[i]);
    }
  for (int i = 0; i < static_cast<int>(right.columns.size()); ++i) {
    if (i == rk) continue;
    std::string name = right.columns[i];
    if (std::find(t.columns.begin(), t.columns.end(), name) != t.columns.end()) name += right_suffix;
    if (std::find(t.columns.begin(), t.columns.end(), name) != t.columns.end())
      throw Error(at(right.source, "column '" + right.columns[i] + "' clashes with '" + name + "' after the join"));
    rcols.push_back(i);
    t.columns.push_back(name);
  }
  t.rows.reserve(join.pairs.size());
  for (auto [li, ri] : join.pairs) {
    std::vector<std::string> row;
    row.reserve(t.columns.size());
    row.push_back(left.rows[li][lk]);
    for (int c : lcols) row.push_back(left.rows[li][c]);
    for (int c : rcols) row.push_back(right.rows[ri][c]);
    t.rows.push_back(std::move(row));
  }
  return t;
}

std::string name_list(const std::vector<std::string>& names, std::size_t show) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < show; ++i) {
    if (i) out += ", ";
    out += names[i];
  }
  if (names.size() > show) out += " (and " + std::to_string(names.size() - show) + " more)";
  return out;
}

}  // namespace cx::data
