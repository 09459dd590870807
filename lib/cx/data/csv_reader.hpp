#pragma once
// Label files read one row at a time. cx/data/table.hpp holds a whole table in memory, which is
// right for prediction tables but not for dataset label files: CheXpert's train.csv has 223k rows
// and a CheXmask CSV is gigabytes of RLE. Same rules as table.hpp: CSV is RFC 4180 (quoted
// fields may hold delimiters, doubled quotes and line breaks), TSV one line per row; gzip input
// is read transparently (any name); a UTF-8 BOM and CRLF are accepted; blank lines are skipped;
// a row whose field count differs from the header's is an error naming file and line.
// Trailing empty header names are dropped, and so are surplus empty fields at a row's end (NIH's
// files end lines with stray commas).
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace cx::data {

class CsvReader {
 public:
  // Opens `path` ("-": standard input) and reads the header row. delimiter 0: tab for
  // .tsv/.tab/.txt names (after .gz), else comma.
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
  std::size_t line() const { return row_line_; }
  std::string where() const;
  const std::string& path() const { return path_; }

 private:
  bool read_row(std::vector<std::string>& row);
  int get();  // next byte or -1
  struct Input;
  std::unique_ptr<Input> in_;
  std::string path_;
  char delim_;
  std::vector<std::string> columns_;
  std::size_t line_ = 1, row_line_ = 0;
};

}  // namespace cx::data
