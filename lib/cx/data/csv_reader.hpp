#pragma once
// Delimited text, one parser for both readers: CsvReader below (label files, one row at a time)
// and cx/data/table.hpp (whole tables in memory).
//  - CSV (any delimiter but tab) follows RFC 4180: a field that starts with a double quote is
//    quoted and may hold delimiters, doubled quotes and line breaks; after its closing quote only
//    a delimiter or the line's end may follow. Lines end with LF, CRLF or a lone CR.
//  - TSV (tab) is one line per row (IANA text/tab-separated-values); a field wholly wrapped in
//    double quotes, with inner quotes doubled (what pandas writes), is unquoted; any other quote is
//    kept as text. Lines end with LF or CRLF.
//  - A UTF-8 byte order mark is skipped; blank lines are skipped; a field never closed is an
//    error naming the file and the line where it opened.
// CsvReader: label files are read a row at a time because CheXpert's train.csv has 223k rows and
// a CheXmask CSV is gigabytes of RLE. gzip and zstd input is read transparently (any name,
// cx/io/decompress.hpp). A row whose field count differs from the header's is an error naming file
// and line. Trailing empty header names are dropped, and so are surplus empty fields at a row's
// end (NIH's files end lines with stray commas).
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace cx::io {
class DecompressingInput;
}

namespace cx::data {

class CsvParser {
 public:
  // Fills up to `cap` bytes of `buf`; 0 at the end of the input.
  using Source = std::function<std::size_t(char* buf, std::size_t cap)>;

  // Parses text held in memory (not copied: it must outlive the parser).
  CsvParser(const char* data, std::size_t size, std::string where, char delimiter);
  // Parses the bytes `source` gives, in pieces.
  CsvParser(Source source, std::string where, char delimiter);

  // The next non-blank row; false at the end of the input. Throws cx::Error
  // "WHERE: line N: quoted field never closed" / "...: text after a closing quote".
  bool next(std::vector<std::string>& row);
  // 1-based line where the row last returned by next() began.
  std::size_t line() const { return row_line_; }
  char delimiter() const { return delim_; }

 private:
  int get() { return p_ < end_ ? static_cast<unsigned char>(*p_++) : refill_and_get(); }
  void unget() { --p_; }  // only right after a get() that returned a byte
  int refill_and_get();
  bool next_csv(std::vector<std::string>& row);
  bool next_tsv(std::vector<std::string>& row);
  [[noreturn]] void fail(std::size_t line, const std::string& what) const;

  Source source_;
  std::vector<char> buf_;
  const char* p_ = nullptr;
  const char* end_ = nullptr;
  bool eof_ = false;
  std::string where_;
  char delim_;
  std::size_t line_ = 1, row_line_ = 0;
  bool started_ = false;  // the byte order mark has been looked for
};

class CsvReader {
 public:
  // Opens `path` ("-": standard input) and reads the header row. delimiter 0: tab for
  // .tsv/.tab/.txt names (after .gz or .zst), else comma.
  explicit CsvReader(const std::string& path, char delimiter = 0);
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  const std::vector<std::string>& columns() const { return columns_; }
  int find_column(const std::string& name) const;  // -1 when absent
  // Throws cx::Error "FILE: no column 'NAME' (columns: a, b, c)".
  int require_column(const std::string& name) const;

  // The next data row; false at the end of the file.
  bool next(std::vector<std::string>& row);
  // 1-based line where the row last returned by next() began; "FILE:LINE" for messages.
  std::size_t line() const { return parser_->line(); }
  std::string where() const;  // standard input is named so
  const std::string& path() const { return path_; }

 private:
  std::unique_ptr<io::DecompressingInput> in_;
  std::unique_ptr<CsvParser> parser_;
  std::string path_, name_;  // as given; for messages ("-": "standard input")
  std::vector<std::string> columns_;
};

// The delimiter a file name implies: ',' for .csv, tab for .tsv/.tab/.txt (after stripping .gz or
// .zst, any case); 0 for other names.
char delimiter_from_name(const std::string& name);

}  // namespace cx::data
