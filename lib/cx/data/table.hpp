#pragma once
// Delimited tables with a header row: the TSV/CSV files people and `make` pass between tools.
// Parsed by cx/data/csv_reader.hpp's CsvParser (the rules are there: RFC 4180 CSV, one-line TSV).
//  - The delimiter comes from the name (.tsv/.tab/.txt -> tab, .csv -> comma, after stripping .gz or
//    .zst) or, failing that (stdin, other names), from the first line: tab if it holds a tab, else comma.
//  - "-" reads standard input. gzip and zstd input is read transparently (cx/io/decompress.hpp).
//    A row with a different field count than the header is an error naming file and line.
// Numbers are parsed strictly: the whole cell must be a finite number; "nan" and "inf" are refused by
// name so a model that produced NaN cannot slip into a metric.
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace cx::data {

struct Table {
  std::string source;                          // the file name, "-" for stdin; used in errors
  std::vector<std::string> columns;            // the header row
  std::vector<std::vector<std::string>> rows;  // every row has columns.size() cells
  std::vector<std::size_t> lines;              // 1-based line of each row in the source; may be empty

  // Index of a column, or -1.
  int find_column(const std::string& name) const;
  // Index of a column; throws cx::Error "FILE: no column 'NAME' (columns: a, b, c)".
  int require_column(const std::string& name) const;
  // "FILE: line N" for data row i ("FILE: row i" when lines is empty).
  std::string where_row(std::size_t row) const;
};

// Reads a table from a path ("-" for stdin). delimiter 0: sniffed as described above.
Table read_table(const std::string& path, char delimiter = 0);
// Parses table text; `source` names it in errors and (when delimiter is 0) may decide the delimiter.
Table parse_table(const std::string& text, const std::string& source, char delimiter = 0);
// Whole file or stdin as bytes, decompressed when it starts with the gzip or zstd magic.
std::string read_text_file(const std::string& path);

// Writes a table as TSV (fields must not contain tab or newline; they are replaced by spaces).
std::string format_tsv(const Table& table);
// One TSV cell: tabs and line breaks become spaces (what format_tsv does to each field).
std::string tsv_cell(std::string text);

// Strict number parsing. `where` names the cell in errors ("pred.tsv: line 12: column Edema.score").
// Leading and trailing spaces are allowed; anything else must be consumed by the number.
double parse_number(const std::string& cell, const std::string& where);
// As parse_number but refuses NaN and infinities by name ("NaN score refused").
double parse_score(const std::string& cell, const std::string& where);

// Truth cells (1, 0, -1, blank) are read by the label vocabulary: data/labels.hpp.

// The row pairing of two tables on a key column (an inner join). Keys present in only one table are
// listed in table order; a key repeated within one table is an error unless allow_repeats_left is set,
// in which case every left row with the key pairs with the one right row (several references per key).
struct JoinResult {
  std::vector<std::pair<std::size_t, std::size_t>> pairs;  // (left row, right row), in left order
  std::vector<std::string> only_left;                      // keys of left with no right row
  std::vector<std::string> only_right;                     // keys of right with no left row
};
JoinResult join_rows(const Table& left, const std::string& left_key, const Table& right,
                     const std::string& right_key, bool allow_repeats_left = false);

// A joined table: key, then left's other columns, then right's other columns; a right column whose
// name is already taken gets right_suffix appended (truth "Edema" + pred "Edema" -> "Edema.score").
Table join_tables(const Table& left, const Table& right, const std::string& key, const JoinResult& join,
                  const std::string& right_suffix);

// "a, b, c (and 7 more)": a short list of names for error messages.
std::string name_list(const std::vector<std::string>& names, std::size_t show = 5);

}  // namespace cx::data
