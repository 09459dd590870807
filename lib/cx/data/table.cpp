#include "cx/data/table.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <unordered_map>

#include "cx/cli/error.hpp"

namespace cx::data {

namespace {

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string trim(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

char delimiter_from_name(const std::string& source) {
  std::string name = lower(source);
  if (ends_with(name, ".gz")) name.resize(name.size() - 3);
  if (ends_with(name, ".csv")) return ',';
  if (ends_with(name, ".tsv") || ends_with(name, ".tab") || ends_with(name, ".txt")) return '\t';
  return 0;
}

// Unquotes a TSV field only when it is wholly a quoted string with inner quotes doubled.
void unquote_tsv_field(std::string& f) {
  if (f.size() < 2 || f.front() != '"' || f.back() != '"') return;
  std::string out;
  out.reserve(f.size() - 2);
  for (std::size_t i = 1; i + 1 < f.size(); ++i) {
    if (f[i] == '"') {
      if (i + 2 < f.size() && f[i + 1] == '"') {
        out.push_back('"');
        ++i;
      } else {
        return;  // a lone inner quote: not a quoted field; keep the text as it is
      }
    } else {
      out.push_back(f[i]);
    }
  }
  f.swap(out);
}

void add_row(Table& t, std::vector<std::string>&& fields, std::size_t line, bool& have_header) {
  if (!have_header) {
    t.columns = std::move(fields);
    std::unordered_map<std::string, int> seen;
    for (std::size_t i = 0; i < t.columns.size(); ++i) {
      if (!seen.emplace(t.columns[i], static_cast<int>(i)).second)
        throw Error(at(t.source, "line " + std::to_string(line) + ": column '" + t.columns[i] + "' appears twice in the header"));
    }
    have_header = true;
    return;
  }
  if (fields.size() != t.columns.size())
    throw Error(at(t.source, "line " + std::to_string(line) + ": " + std::to_string(fields.size()) +
                                 " fields, the header has " + std::to_string(t.columns.size())));
  t.rows.push_back(std::move(fields));
  t.lines.push_back(line);
}

void parse_tsv(const std::string& text, std::size_t begin, Table& t) {
  bool have_header = false;
  std::size_t line = 0, pos = begin;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    std::size_t end = nl == std::string::npos ? text.size() : nl;
    ++line;
    std::size_t e = end;
    if (e > pos && text[e - 1] == '\r') --e;
    if (e > pos) {
      std::vector<std::string> fields;
      fields.reserve(t.columns.empty() ? 8 : t.columns.size());
      std::size_t a = pos;
      for (;;) {
        std::size_t tab = text.find('\t', a);
        if (tab == std::string::npos || tab >= e) {
          fields.emplace_back(text, a, e - a);
          break;
        }
        fields.emplace_back(text, a, tab - a);
        a = tab + 1;
      }
      for (auto& f : fields)
        if (!f.empty() && f.front() == '"') unquote_tsv_field(f);
      add_row(t, std::move(fields), line, have_header);
    }
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  if (!have_header) throw Error(at(t.source, "empty table: no header row"));
}

// RFC 4180: fields may be quoted; quoted fields hold delimiters, doubled quotes and line breaks.
void parse_csv(const std::string& text, std::size_t begin, char delim, Table& t) {
  bool have_header = false;
  std::size_t line = 1, row_line = 1, i = begin, n = text.size();
  std::vector<std::string> fields;
  std::string field;
  bool row_has_content = false;
  auto end_row = [&] {
    fields.push_back(std::move(field));
    field.clear();
    if (row_has_content || fields.size() > 1 || !fields.front().empty())
      add_row(t, std::move(fields), row_line, have_header);
    fields.clear();
    row_has_content = false;
  };
  while (i < n) {
    char c = text[i];
    if (c == '"' && field.empty()) {
      std::size_t start_line = line;
      ++i;
      row_has_content = true;
      for (;;) {
        if (i >= n) throw Error(at(t.source, "line " + std::to_string(start_line) + ": quoted field never closed"));
        char q = text[i];
        if (q == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        if (q == '\n') ++line;
        field.push_back(q);
        ++i;
      }
      // After the closing quote: a delimiter, a line end, or the end of input.
      if (i < n && text[i] != delim && text[i] != '\n' && text[i] != '\r')
        throw Error(at(t.source, "line " + std::to_string(line) + ": text after a closing quote"));
      continue;
    }
    if (c == delim) {
      fields.push_back(std::move(field));
      field.clear();
      row_has_content = true;
      ++i;
    } else if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < n && text[i + 1] == '\n') ++i;
      ++i;
      end_row();
      ++line;
      row_line = line;
    } else {
      field.push_back(c);
      ++i;
    }
  }
  if (!field.empty() || !fields.empty() || row_has_content) end_row();
  if (!have_header) throw Error(at(t.source, "empty table: no header row"));
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

std::string read_text_file(const std::string& path) {
  int fd = path == "-" ? ::dup(STDIN_FILENO) : ::open(path.c_str(), O_RDONLY);
  const std::string where = path == "-" ? "standard input" : path;
  if (fd < 0) throw Error(at(where, std::string("cannot open: ") + std::strerror(errno)));
  gzFile gz = ::gzdopen(fd, "rb");
  if (!gz) {
    ::close(fd);
    throw Error(at(where, "cannot open: out of memory"));
  }
  ::gzbuffer(gz, 1 << 17);
  std::string out;
  std::vector<char> buf(1 << 17);
  for (;;) {
    int got = ::gzread(gz, buf.data(), static_cast<unsigned>(buf.size()));
    if (got < 0) {
      int err = 0;
      std::string msg = ::gzerror(gz, &err);
      if (err == Z_ERRNO) msg = std::strerror(errno);
      ::gzclose(gz);
      if (err == Z_BUF_ERROR) throw TruncatedError(at(where, "truncated gzip data"));
      throw Error(at(where, "read error: " + msg));
    }
    if (got == 0) break;
    out.append(buf.data(), static_cast<std::size_t>(got));
  }
  // A gzip member cut short reads as a clean end in gzread; gzclose_r reports it as Z_BUF_ERROR.
  int rc = ::gzclose_r(gz);
  if (rc == Z_BUF_ERROR) throw TruncatedError(at(where, "truncated gzip data"));
  if (rc != Z_OK) throw Error(at(where, "read error while closing"));
  return out;
}

Table parse_table(const std::string& text, const std::string& source, char delimiter) {
  Table t;
  t.source = source;
  std::size_t begin = 0;
  if (text.size() >= 3 && static_cast<unsigned char>(text[0]) == 0xEF && static_cast<unsigned char>(text[1]) == 0xBB &&
      static_cast<unsigned char>(text[2]) == 0xBF)
    begin = 3;
  char delim = delimiter ? delimiter : delimiter_from_name(source);
  if (!delim) {
    std::size_t nl = text.find('\n', begin);
    std::size_t first_end = nl == std::string::npos ? text.size() : nl;
    delim = text.find('\t', begin) < first_end ? '\t' : ',';
  }
  if (delim == '\t')
    parse_tsv(text, begin, t);
  else
    parse_csv(text, begin, delim, t);
  return t;
}

Table read_table(const std::string& path, char delimiter) {
  std::string text = read_text_file(path);
  return parse_table(text, path == "-" ? "standard input" : path, delimiter);
}

std::string format_tsv(const Table& table) {
  std::string out;
  auto put_row = [&out](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i) out.push_back('\t');
      for (char c : row[i]) out.push_back(c == '\t' || c == '\n' || c == '\r' ? ' ' : c);
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

Truth parse_truth(const std::string& cell, const std::string& where) {
  // The spellings of almost every cell, without allocating.
  if (cell.empty()) return Truth::missing;
  if (cell == "1" || cell == "1.0") return Truth::positive;
  if (cell == "0" || cell == "0.0") return Truth::negative;
  if (cell == "-1" || cell == "-1.0") return Truth::uncertain;
  std::string t = lower(trim(cell));
  if (t.empty() || t == "nan" || t == "na" || t == "n/a") return Truth::missing;
  double v = 0;
  try {
    v = parse_number(t, where);
  } catch (const Error&) {
    throw Error(at(where, "truth must be 1, 0, -1 (uncertain) or blank, not '" + cell + "'"));
  }
  if (v == 1) return Truth::positive;
  if (v == 0) return Truth::negative;
  if (v == -1) return Truth::uncertain;
  throw Error(at(where, "truth must be 1, 0, -1 (uncertain) or blank, not '" + cell + "'"));
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
