#include "cx/data/csv_reader.hpp"

#include <unistd.h>
#include <zlib.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "cx/cli/error.hpp"
#include "cx/data/table.hpp"

namespace cx::data {

// zlib's gzread passes uncompressed files through unchanged, so one path serves both.
struct CsvReader::Input {
  gzFile gz = nullptr;
  std::vector<char> buf = std::vector<char>(1 << 16);
  std::size_t pos = 0, len = 0;
  bool eof = false;
  ~Input() {
    if (gz) gzclose(gz);
  }
};

namespace {
std::string trim_copy(const std::string& s) {
  std::size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t' || s[b] == '\r')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
  return s.substr(b, e - b);
}

bool ends_with(const std::string& s, const char* suffix) {
  std::size_t n = std::strlen(suffix);
  if (s.size() < n) return false;
  for (std::size_t i = 0; i < n; ++i)
    if (std::tolower(static_cast<unsigned char>(s[s.size() - n + i])) != suffix[i]) return false;
  return true;
}
}  // namespace

CsvReader::CsvReader(const std::string& path, char delimiter) : in_(std::make_unique<Input>()), path_(path) {
  if (delimiter == 0) {
    std::string name = path;
    if (ends_with(name, ".gz")) name.resize(name.size() - 3);
    delimiter = (ends_with(name, ".tsv") || ends_with(name, ".tab") || ends_with(name, ".txt")) ? '\t' : ',';
  }
  delim_ = delimiter;
  if (path == "-") {
    int fd = dup(STDIN_FILENO);
    in_->gz = fd < 0 ? nullptr : gzdopen(fd, "rb");
  } else {
    in_->gz = gzopen(path.c_str(), "rb");
  }
  if (!in_->gz) throw Error(at(path, std::string("cannot open: ") + std::strerror(errno ? errno : ENOMEM)));
  gzbuffer(in_->gz, 1 << 17);
  // UTF-8 byte order mark
  int c0 = get();
  if (c0 == 0xEF) {
    int c1 = get(), c2 = get();
    if (c1 != 0xBB || c2 != 0xBF) throw Error(at(path, "not UTF-8 text (bad byte order mark)"));
  } else if (c0 >= 0) {
    --in_->pos;
  }
  if (!read_row(columns_)) throw Error(at(path, "empty file: no header row"));
  // Trailing empty column names name nothing: NIH's files end their header (and, in the 2017
  // release, every row) with stray commas.
  while (columns_.size() > 1 && trim_copy(columns_.back()).empty()) columns_.pop_back();
  for (std::size_t i = 0; i < columns_.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (!columns_[i].empty() && columns_[i] == columns_[j])
        throw Error(at(path, "column '" + columns_[i] + "' appears twice in the header"));
}

CsvReader::~CsvReader() = default;

int CsvReader::get() {
  if (in_->pos < in_->len) return static_cast<unsigned char>(in_->buf[in_->pos++]);
  if (in_->eof) return -1;
  int n = gzread(in_->gz, in_->buf.data(), static_cast<unsigned>(in_->buf.size()));
  if (n < 0) {
    int err = 0;
    const char* msg = gzerror(in_->gz, &err);
    throw Error(at(path_, std::string("read error: ") + (err == Z_ERRNO ? std::strerror(errno) : msg)));
  }
  if (n == 0) {
    // A gzip member cut short reads as a plain end in zlib; gzerror says so.
    int err = 0;
    gzerror(in_->gz, &err);
    if (err != Z_OK && err != Z_STREAM_END) throw TruncatedError(at(path_, "compressed data ends early"));
    in_->eof = true;
    return -1;
  }
  in_->pos = 0;
  in_->len = static_cast<std::size_t>(n);
  return static_cast<unsigned char>(in_->buf[in_->pos++]);
}

bool CsvReader::read_row(std::vector<std::string>& row) {
  for (;;) {
    row.clear();
    row_line_ = line_;
    std::string field;
    bool any = false;      // saw any byte of this row
    bool quoted = false;   // inside a quoted CSV field
    bool was_quoted = false;
    int c;
    for (;;) {
      c = get();
      if (c < 0) {
        if (quoted) throw Error(at(path_, "line " + std::to_string(row_line_) + ": quoted field not closed at the end of the file"));
        break;
      }
      any = true;
      if (quoted) {
        if (c == '"') {
          int d = get();
          if (d == '"') {
            field.push_back('"');
          } else {
            quoted = false;
            if (d >= 0) --in_->pos;  // get() just filled or advanced the buffer: step back one
          }
        } else {
          if (c == '\n') ++line_;
          field.push_back(static_cast<char>(c));
        }
        continue;
      }
      if (c == '\n') {
        ++line_;
        break;
      }
      if (c == static_cast<unsigned char>(delim_)) {
        row.push_back(std::move(field));
        field.clear();
        was_quoted = false;
        continue;
      }
      if (c == '"' && delim_ == ',' && field.empty() && !was_quoted) {
        quoted = was_quoted = true;
        continue;
      }
      field.push_back(static_cast<char>(c));
    }
    if (!any) return false;
    // CRLF: the \r before the line break is line ending, not data (after a closing quote too).
    if (c == '\n' && !field.empty() && field.back() == '\r') field.pop_back();
    row.push_back(std::move(field));
    if (row.size() == 1 && row[0].empty()) {
      if (c < 0) return false;
      continue;  // blank line
    }
    if (delim_ == '\t') {
      for (auto& f : row) {
        if (f.size() >= 2 && f.front() == '"' && f.back() == '"') {
          std::string out;
          bool ok = true;
          for (std::size_t i = 1; i + 1 < f.size() && ok; ++i) {
            if (f[i] == '"') {
              if (i + 2 < f.size() && f[i + 1] == '"') {
                out.push_back('"');
                ++i;
              } else {
                ok = false;
              }
            } else {
              out.push_back(f[i]);
            }
          }
          if (ok) f.swap(out);
        }
      }
    }
    return true;
  }
}

bool CsvReader::next(std::vector<std::string>& row) {
  if (!read_row(row)) return false;
  while (row.size() > columns_.size() && trim_copy(row.back()).empty()) row.pop_back();
  if (row.size() != columns_.size())
    throw Error(at(path_, "line " + std::to_string(row_line_) + ": " + std::to_string(row.size()) +
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
  if (i < 0) throw Error(at(path_, "no column '" + name + "' (columns: " + name_list(columns_) + ")"));
  return i;
}

std::string CsvReader::where() const { return path_ + ":" + std::to_string(row_line_); }

}  // namespace cx::data
