// The label-file reader every adapter uses (data/csv_reader): CsvReader on a file, header then
// rows, from a .csv (RFC 4180; the TSV rules are fuzzed through the table target).
#include "common.hpp"
#include "cx/data/csv_reader.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("labels.csv", data, size);
  cx::fuzz::run([&] {
    cx::data::CsvReader csv(path);
    (void)csv.find_column("Path");
    std::vector<std::string> row;
    while (csv.next(row))
      if (row.size() != csv.columns().size()) std::abort();
  });
  return 0;
}
