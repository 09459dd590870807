// lib/cx/data/table: TSV/CSV parsing, errors that name file and line, joins, strict numbers.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cx/cli/error.hpp"
#include "cx/data/csv_reader.hpp"
#include "cx/data/table.hpp"

using namespace cx::data;
namespace fs = std::filesystem;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "(no error)";
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("cx_table_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write_gzip(const fs::path& p, const std::string& data, std::size_t keep_bytes = std::string::npos) {
  const fs::path tmp = p.string() + ".full";
  gzFile g = gzopen(tmp.c_str(), "wb");
  gzwrite(g, data.data(), static_cast<unsigned>(data.size()));
  gzclose(g);
  std::ifstream in(tmp, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (keep_bytes != std::string::npos) bytes.resize(keep_bytes);
  std::ofstream(p, std::ios::binary) << bytes;
  fs::remove(tmp);
}

void write_zstd(const fs::path& p, const std::string& data, std::size_t keep_bytes = std::string::npos) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  out.resize(ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3));
  if (keep_bytes != std::string::npos) out.resize(keep_bytes);
  std::ofstream(p, std::ios::binary) << out;
}

// Every row the streaming reader gives, header first.
std::vector<std::vector<std::string>> stream_rows(const fs::path& p) {
  CsvReader r(p.string());
  std::vector<std::vector<std::string>> rows{r.columns()};
  std::vector<std::string> row;
  while (r.next(row)) rows.push_back(row);
  return rows;
}

std::vector<std::vector<std::string>> table_rows(const Table& t) {
  std::vector<std::vector<std::string>> rows{t.columns};
  rows.insert(rows.end(), t.rows.begin(), t.rows.end());
  return rows;
}

}  // namespace

TEST(Table, TsvWithCrlfBomAndBlankLines) {
  Table t = parse_table("\xEF\xBB\xBFkey\tEdema\r\na\t1\r\n\r\nb\t0\r\n", "x.tsv");
  ASSERT_EQ(t.columns, (std::vector<std::string>{"key", "Edema"}));
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[1], (std::vector<std::string>{"b", "0"}));
  EXPECT_EQ(t.where_row(1), "x.tsv: line 4");
  EXPECT_EQ(t.find_column("Edema"), 1);
  EXPECT_EQ(t.find_column("edema"), -1);
}

TEST(Table, TsvUnquotesOnlyWhollyQuotedFields) {
  Table t = parse_table("key\ttext\na\t\"He said \"\"no\"\"\"\nb\t\"Normal\" chest\n", "r.tsv");
  EXPECT_EQ(t.rows[0][1], "He said \"no\"");
  EXPECT_EQ(t.rows[1][1], "\"Normal\" chest");  // not a quoted field: kept as written
}

TEST(Table, CsvFollowsRfc4180) {
  Table t = parse_table("key,text,n\r\n\"a,1\",\"line one\nline two\",3\nb,\"say \"\"hi\"\"\",\n", "x.csv");
  ASSERT_EQ(t.rows.size(), 2u);
  EXPECT_EQ(t.rows[0][0], "a,1");
  EXPECT_EQ(t.rows[0][1], "line one\nline two");
  EXPECT_EQ(t.rows[1][1], "say \"hi\"");
  EXPECT_EQ(t.rows[1][2], "");
  EXPECT_EQ(t.where_row(1), "x.csv: line 4");  // the quoted line break counts
}

TEST(Table, DelimiterFromNameOrFirstLine) {
  EXPECT_EQ(parse_table("a,b\n1,2\n", "-").columns.size(), 2u);
  EXPECT_EQ(parse_table("a\tb,c\n1\t2,3\n", "stdin").columns, (std::vector<std::string>{"a", "b,c"}));
  EXPECT_EQ(parse_table("a\tb\n1\t2\n", "t.csv").columns.size(), 1u);  // the name wins: .csv is commas
  EXPECT_EQ(parse_table("a,b\n1,2\n", "t.tsv.gz").columns.size(), 1u);
}

TEST(Table, ErrorsNameFileAndLine) {
  EXPECT_EQ(error_of([] { parse_table("key\tA\nx\t1\ty\n", "p.tsv"); }), "p.tsv: line 2: 3 fields, the header has 2");
  EXPECT_EQ(error_of([] { parse_table("key,A\n\"x,1\n", "p.csv"); }), "p.csv: line 2: quoted field never closed");
  EXPECT_EQ(error_of([] { parse_table("", "e.tsv"); }), "e.tsv: empty table: no header row");
  EXPECT_EQ(error_of([] { parse_table("k\tk\n", "d.tsv"); }), "d.tsv: line 1: column 'k' appears twice in the header");
  Table t = parse_table("key\tA\tB\n", "p.tsv");
  EXPECT_EQ(error_of([&] { t.require_column("Edema"); }), "p.tsv: no column 'Edema' (columns: key, A, B)");
}

TEST(Table, ReadsFilesGzipAndReportsTruncatedGzip) {
  fs::path d = temp_dir();
  const std::string text = "key\tEdema\na\t1\nb\t0\n";
  std::ofstream(d / "plain.tsv") << text;
  write_gzip(d / "z.tsv.gz", text);
  EXPECT_EQ(read_table((d / "plain.tsv").string()).rows.size(), 2u);
  Table z = read_table((d / "z.tsv.gz").string());
  EXPECT_EQ(z.rows.size(), 2u);
  EXPECT_EQ(z.rows[1][1], "0");
  write_gzip(d / "cut.tsv.gz", text, 20);
  auto msg = error_of([&] { read_table((d / "cut.tsv.gz").string()); });
  EXPECT_NE(msg.find("cut.tsv.gz: truncated gzip data"), std::string::npos) << msg;
  msg = error_of([&] { read_table((d / "absent.tsv").string()); });
  EXPECT_NE(msg.find("absent.tsv: cannot open: No such file or directory"), std::string::npos) << msg;
  fs::remove_all(d);
}

TEST(Table, StrictNumbersRefuseNaNByName) {
  EXPECT_DOUBLE_EQ(parse_score(" 0.25 ", "w"), 0.25);
  EXPECT_DOUBLE_EQ(parse_score("+1e-3", "w"), 1e-3);
  EXPECT_EQ(error_of([] { parse_score("nan", "p.tsv: line 3: column Edema.score"); }),
            "p.tsv: line 3: column Edema.score: NaN score refused (a score must be a finite number)");
  EXPECT_EQ(error_of([] { parse_score("NaN", "w"); }), "w: NaN score refused (a score must be a finite number)");
  EXPECT_EQ(error_of([] { parse_score("-inf", "w"); }), "w: infinite score refused (a score must be a finite number)");
  EXPECT_EQ(error_of([] { parse_score("0.5x", "w"); }), "w: not a number: '0.5x'");
  EXPECT_EQ(error_of([] { parse_score("", "w"); }), "w: empty cell where a number is needed");
  EXPECT_TRUE(std::isnan(parse_number("nan", "w")));  // plain numbers may be NaN; scores may not
}

TEST(Table, TruthCodes) {
  EXPECT_EQ(parse_truth("1", "w"), Truth::positive);
  EXPECT_EQ(parse_truth("1.0", "w"), Truth::positive);
  EXPECT_EQ(parse_truth("0", "w"), Truth::negative);
  EXPECT_EQ(parse_truth("-1.0", "w"), Truth::uncertain);
  EXPECT_EQ(parse_truth("", "w"), Truth::missing);
  EXPECT_EQ(parse_truth("NaN", "w"), Truth::missing);
  EXPECT_EQ(error_of([] { parse_truth("2", "t.tsv: line 2: column Edema"); }),
            "t.tsv: line 2: column Edema: truth must be 1, 0, -1 (uncertain) or blank, not '2'");
}

TEST(Table, JoinNamesUnmatchedAndRepeatedKeys) {
  Table truth = parse_table("key\tEdema\na\t1\nb\t0\nc\t1\n", "t.tsv");
  Table pred = parse_table("key\tEdema\nc\t0.9\na\t0.2\nz\t0.5\n", "p.tsv");
  JoinResult j = join_rows(truth, "key", pred, "key");
  ASSERT_EQ(j.pairs.size(), 2u);
  EXPECT_EQ(j.pairs[0], std::make_pair(std::size_t{0}, std::size_t{1}));
  EXPECT_EQ(j.pairs[1], std::make_pair(std::size_t{2}, std::size_t{0}));
  EXPECT_EQ(j.only_left, std::vector<std::string>{"b"});
  EXPECT_EQ(j.only_right, std::vector<std::string>{"z"});
  Table joined = join_tables(truth, pred, "key", j, ".score");
  EXPECT_EQ(joined.columns, (std::vector<std::string>{"key", "Edema", "Edema.score"}));
  EXPECT_EQ(joined.rows[1], (std::vector<std::string>{"c", "1", "0.9"}));
  Table dup = parse_table("key\tEdema\na\t1\na\t0\n", "d.tsv");
  EXPECT_EQ(error_of([&] { join_rows(truth, "key", dup, "key"); }), "d.tsv: line 3: key 'a' appears twice");
  EXPECT_EQ(join_rows(dup, "key", pred, "key", true).pairs.size(), 2u);  // several references per key
  EXPECT_EQ(error_of([&] { join_rows(truth, "id", pred, "key"); }), "t.tsv: no column 'id' (columns: key, Edema)");
  EXPECT_EQ(name_list({"a", "b", "c"}, 2), "a, b (and 1 more)");
}

TEST(Table, FormatTsvRoundTrips) {
  Table t = parse_table("key\ttext\na\thello world\n", "x.tsv");
  EXPECT_EQ(format_tsv(t), "key\ttext\na\thello world\n");
  EXPECT_EQ(parse_table(format_tsv(t), "y.tsv").rows, t.rows);
}

// --- one CSV parser under both readers (CsvParser in cx/data/csv_reader.hpp) ---

// RFC 4180's cases through both readers give the same rows and the same line numbers: quoted
// delimiters, doubled quotes, embedded LF and CRLF, CRLF and lone-CR line ends, a BOM, blank lines,
// a last line without its line break.
TEST(Csv, BothReadersParseTheSameRows) {
  fs::path d = temp_dir();
  const std::string text =
      "\xEF\xBB\xBFid,text,n\r\n"
      "1,\"a, \"\"quoted\"\"\nline\",3\r\n"
      "\r\n"
      "2,\"crlf\r\ninside\",\"\"\r"
      "3,plain,\"\"\"\"\n"
      "4,last,x";
  std::ofstream(d / "a.csv", std::ios::binary) << text;
  const std::vector<std::vector<std::string>> want = {
      {"id", "text", "n"}, {"1", "a, \"quoted\"\nline", "3"}, {"2", "crlf\r\ninside", ""}, {"3", "plain", "\""},
      {"4", "last", "x"}};
  EXPECT_EQ(stream_rows(d / "a.csv"), want);
  Table t = read_table((d / "a.csv").string());
  EXPECT_EQ(table_rows(t), want);
  EXPECT_EQ(t.lines, (std::vector<std::size_t>{2, 5, 7, 8}));
  CsvReader r((d / "a.csv").string());
  std::vector<std::string> row;
  std::vector<std::size_t> lines;
  while (r.next(row)) lines.push_back(r.line());
  EXPECT_EQ(lines, t.lines);
  // TSV: one line per row, wholly quoted fields unquoted, other quotes kept.
  std::ofstream(d / "b.tsv", std::ios::binary) << "k\tv\r\na\t\"x \"\"y\"\"\"\r\nb\t\"open\n";
  const std::vector<std::vector<std::string>> want_tsv = {{"k", "v"}, {"a", "x \"y\""}, {"b", "\"open"}};
  EXPECT_EQ(stream_rows(d / "b.tsv"), want_tsv);
  EXPECT_EQ(table_rows(read_table((d / "b.tsv").string())), want_tsv);
  fs::remove_all(d);
}

// Broken files: each reader names the file and the line.
TEST(Csv, BrokenFilesNameFileAndLine) {
  fs::path d = temp_dir();
  auto both = [&](const std::string& name, const std::string& text) {
    std::ofstream(d / name, std::ios::binary) << text;
    const std::string path = (d / name).string();
    std::string from_table = error_of([&] { read_table(path); });
    std::string from_stream = error_of([&] { stream_rows(d / name); });
    return std::make_pair(from_table, from_stream);
  };
  const std::string p = d.string() + "/";
  // An unterminated quote: the line where it opened.
  auto e = both("open.csv", "a,b\n1,2\n3,\"never\nclosed\n");
  EXPECT_EQ(e.first, p + "open.csv: line 3: quoted field never closed");
  EXPECT_EQ(e.second, e.first);
  // Ragged rows, short and long.
  e = both("short.csv", "a,b,c\n1,2,3\n4,5\n");
  EXPECT_EQ(e.first, p + "short.csv: line 3: 2 fields, the header has 3");
  EXPECT_EQ(e.second, e.first);
  e = both("long.csv", "a,b\n1,\"x\ny\"\n2,3,4\n");
  EXPECT_EQ(e.first, p + "long.csv: line 4: 3 fields, the header has 2");
  EXPECT_EQ(e.second, e.first);
  // Text after a closing quote.
  e = both("after.csv", "a,b\n1,\"x\"y\n");
  EXPECT_EQ(e.first, p + "after.csv: line 2: text after a closing quote");
  EXPECT_EQ(e.second, e.first);
  fs::remove_all(d);
}

// Compressed label files read transparently (any name); a cut one is refused as truncated.
TEST(Csv, ZstdAndGzipLabelFiles) {
  fs::path d = temp_dir();
  const std::string text = "key,Edema\na,1\nb,0\n";
  write_zstd(d / "l.csv.zst", text);
  write_gzip(d / "l.csv.gz", text);
  write_zstd(d / "z.tsv.zst", "key\tEdema\na\t1\n");
  const std::vector<std::vector<std::string>> want = {{"key", "Edema"}, {"a", "1"}, {"b", "0"}};
  EXPECT_EQ(stream_rows(d / "l.csv.zst"), want);
  EXPECT_EQ(stream_rows(d / "l.csv.gz"), want);
  EXPECT_EQ(table_rows(read_table((d / "l.csv.zst").string())), want);
  EXPECT_EQ(read_table((d / "z.tsv.zst").string()).columns, (std::vector<std::string>{"key", "Edema"}));
  write_zstd(d / "cut.csv.zst", text, 12);
  const std::string cut = (d / "cut.csv.zst").string();
  EXPECT_EQ(error_of([&] { read_table(cut); }), cut + ": truncated zstd data (the input ends inside a zstd frame)");
  EXPECT_THROW(stream_rows(d / "cut.csv.zst"), cx::TruncatedError);
  fs::remove_all(d);
}
