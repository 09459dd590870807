// Label and prediction tables as cx-eval and cx-classify read them (data/table over
// data/csv_reader's CsvParser, through io/decompress): read_table on a file named so that the
// delimiter is sniffed (tab when the first line holds one); then every cell through parse_number /
// parse_score and the table joined with itself on its first column.
#include "common.hpp"
#include "cx/data/table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("table", data, size);
  cx::fuzz::run([&] {
    const cx::data::Table t = cx::data::read_table(path);
    for (std::size_t r = 0; r < t.rows.size(); ++r) {
      if (t.rows[r].size() != t.columns.size()) std::abort();
      for (const auto& cell : t.rows[r]) {
        cx::fuzz::run([&] { (void)cx::data::parse_number(cell, t.where_row(r)); });
        cx::fuzz::run([&] { (void)cx::data::parse_score(cell, t.where_row(r)); });
      }
    }
    (void)cx::data::format_tsv(t);
    if (!t.columns.empty()) {
      const auto join = cx::data::join_rows(t, t.columns[0], t, t.columns[0]);
      (void)cx::data::join_tables(t, t, t.columns[0], join, ".score");
    }
  });
  return 0;
}
