#include "cx/data/csv_reader.hpp"

#include <cstring>

#include "cx/cli/error.hpp"
#include "cx/cli/names.hpp"
#include "cx/data/table.hpp"
#include "cx/io/decompress.hpp"
#include "cx/util/strings.hpp"

namespace cx::data {

namespace {

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

}  // namespace

char delimiter_from_name(const std::string& name) {
  std::string_view n = name;
  if (util::ends_with_ci(n, ".gz")) n.remove_suffix(3);
  else if (util::ends_with_ci(n, ".zst")) n.remove_suffix(4);
  if (util::ends_with_ci(n, ".csv")) return ',';
  if (util::ends_with_ci(n, ".tsv") || util::ends_with_ci(n, ".tab") || util::ends_with_ci(n, ".txt")) return '\t';
  return 0;
}

// ---------------------------------------------------------------------------------------------
// CsvParser

CsvParser::CsvParser(const char* data, std::size_t size, std::string where, char delimiter)
    : p_(data), end_(data + size), eof_(true), where_(std::move(where)), delim_(delimiter) {}

CsvParser::CsvParser(Source source, std::string where, char delimiter)
    : source_(std::move(source)), buf_(1 << 16), where_(std::move(where)), delim_(delimiter) {}

int CsvParser::refill_and_get() {
  if (eof_) return -1;
  const std::size_t n = source_(buf_.data(), buf_.size());
  if (n == 0) {
    eof_ = true;
    return -1;
  }
  p_ = buf_.data();
  end_ = p_ + n;
  return static_cast<unsigned char>(*p_++);
}

void CsvParser::fail(std::size_t line, const std::string& what) const {
  throw Error(at(where_, "line " + std::to_string(line) + ": " + what));
}

bool CsvParser::next(std::vector<std::string>& row) {
  if (!started_) {
    started_ = true;
    if (source_) {  // the first three bytes in the buffer, to look for the byte order mark
      std::size_t have = 0;
      while (have < 3) {
        const std::size_t n = source_(buf_.data() + have, buf_.size() - have);
        if (n == 0) {
          eof_ = true;
          break;
        }
        have += n;
      }
      p_ = buf_.data();
      end_ = p_ + have;
    }
    if (end_ - p_ >= 3 && std::memcmp(p_, "\xEF\xBB\xBF", 3) == 0) p_ += 3;
  }
  return delim_ == '\t' ? next_tsv(row) : next_csv(row);
}

bool CsvParser::next_csv(std::vector<std::string>& row) {
  const int delim = static_cast<unsigned char>(delim_);
  for (;;) {
    row.clear();
    row_line_ = line_;
    std::string field;
    bool quoted = false;  // the current field was quoted
    bool any = false;     // the row has any byte
    int c;
    for (;;) {
      c = get();
      if (c < 0) break;
      any = true;
      if (c == '"' && field.empty() && !quoted) {
        const std::size_t opened = line_;
        for (;;) {
          const int q = get();
          if (q < 0) fail(opened, "quoted field never closed");
          if (q == '"') {
            const int d = get();
            if (d == '"') {
              field.push_back('"');
              continue;
            }
            if (d >= 0) unget();
            break;
          }
          if (q == '\n') ++line_;
          field.push_back(static_cast<char>(q));
        }
        quoted = true;
        const int d = get();
        if (d < 0) break;
        if (d != delim && d != '\n' && d != '\r') fail(line_, "text after a closing quote");
        unget();
        continue;
      }
      if (c == delim) {
        row.push_back(std::move(field));
        field.clear();
        quoted = false;
      } else if (c == '\n') {
        ++line_;
        break;
      } else if (c == '\r') {  // CRLF, or a lone CR (old Mac spreadsheets)
        const int d = get();
        if (d >= 0 && d != '\n') unget();
        ++line_;
        break;
      } else {
        field.push_back(static_cast<char>(c));
      }
    }
    if (!any) return false;
    const bool blank = row.empty() && field.empty() && !quoted;
    row.push_back(std::move(field));
    if (!blank) return true;
    if (c < 0) return false;
  }
}

bool CsvParser::next_tsv(std::vector<std::string>& row) {
  for (;;) {
    row.clear();
    row_line_ = line_;
    std::string field;
    bool any = false;
    int c;
    for (;;) {
      c = get();
      if (c < 0) break;
      any = true;
      if (c == '\n') {
        ++line_;
        break;
      }
      if (c == '\t') {
        row.push_back(std::move(field));
        field.clear();
      } else {
        field.push_back(static_cast<char>(c));
      }
    }
    if (!any) return false;
    if (!field.empty() && field.back() == '\r') field.pop_back();  // CRLF
    const bool blank = row.empty() && field.empty();
    row.push_back(std::move(field));
    if (!blank) {
      for (auto& f : row)
        if (!f.empty() && f.front() == '"') unquote_tsv_field(f);
      return true;
    }
    if (c < 0) return false;
  }
}

// ---------------------------------------------------------------------------------------------
// CsvReader

CsvReader::CsvReader(const std::string& path, char delimiter) : path_(path), name_(cli::input_name(path)) {
  if (delimiter == 0) delimiter = delimiter_from_name(path) == '\t' ? '\t' : ',';
  in_ = io::DecompressingInput::open(path, name_);
  io::DecompressingInput* in = in_.get();
  parser_ = std::make_unique<CsvParser>([in](char* buf, std::size_t cap) { return in->read(buf, cap); }, name_,
                                        delimiter);
  if (!parser_->next(columns_)) throw Error(at(name_, "empty file: no header row"));
  // Trailing empty column names name nothing: NIH's files end their header (and, in the 2017
  // release, every row) with stray commas.
  while (columns_.size() > 1 && util::trim(columns_.back()).empty()) columns_.pop_back();
  for (std::size_t i = 0; i < columns_.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (!columns_[i].empty() && columns_[i] == columns_[j])
        throw Error(at(name_, "column '" + columns_[i] + "' appears twice in the header"));
}

CsvReader::~CsvReader() = default;

bool CsvReader::next(std::vector<std::string>& row) {
  if (!parser_->next(row)) return false;
  while (row.size() > columns_.size() && util::trim(row.back()).empty()) row.pop_back();
  if (row.size() != columns_.size())
    throw Error(at(name_, "line " + std::to_string(line()) + ": " + std::to_string(row.size()) +
                              " fields, the header has " + std::to_string(columns_.size())));
  return true;
}

int CsvReader::find_column(const std::string& name) const {
  for (std::size_t i = 0; i < columns_.size(); ++i)
    if (columns_[i] == name) return static_cast<int>(i);
  return -1;
}

int CsvReader::require_column(const std::string& name) const {
  int i = find_column(name);
  if (i < 0) throw Error(at(name_, "no column '" + name + "' (columns: " + name_list(columns_) + ")"));
  return i;
}

std::string CsvReader::where() const { return name_ + ":" + std::to_string(line()); }

}  // namespace cx::data
