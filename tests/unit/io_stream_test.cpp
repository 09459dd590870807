// lib/cx/io/stream + tar: the record stream (man 5 cx-stream). Round trips, the exact bytes of a
// member header, truncation at every byte, plain WebDataset tars written by Python's tarfile and
// grouped by WebDataset's own rule, hostile names and structures refused by name, pipes, gzip and zstd.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/io/stream.hpp"
#include "cx/io/tar.hpp"
#include "io_python_helper.hpp"

namespace fs = std::filesystem;
using cx::io::Field;
using cx::io::Record;
using cx::io::StreamReader;
using cx::io::StreamWriter;
using nlohmann::json;

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

// A FILE* that collects what is written to it.
class MemOut {
 public:
  MemOut() : f_(open_memstream(&buf_, &size_)) {}
  ~MemOut() {
    if (f_) std::fclose(f_);
    std::free(buf_);
  }
  std::FILE* file() { return f_; }
  std::string take() {
    std::fclose(f_);
    f_ = nullptr;
    return std::string(buf_, size_);
  }

 private:
  char* buf_ = nullptr;
  std::size_t size_ = 0;
  std::FILE* f_;
};

// A FILE* that reads the given bytes (tmpfile: works for empty input too, unlike fmemopen).
FilePtr input_of(const std::string& bytes) {
  FilePtr f(std::tmpfile());
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f.get());
  std::rewind(f.get());
  return f;
}

Record make_record(const std::string& key, std::vector<std::pair<std::string, std::string>> fields) {
  Record r;
  r.key = key;
  for (auto& [n, d] : fields) r.fields.push_back(Field{n, d});
  return r;
}

std::string write_stream(const std::vector<Record>& records, const json& header = cx::io::new_stream_header()) {
  MemOut out;
  StreamWriter w(out.file(), header, "memory");
  for (const Record& r : records) w.write(r);
  w.finish();
  return out.take();
}

struct Contents {
  json header;
  bool cx = false;
  std::vector<Record> records;
};

Contents read_stream(const std::string& bytes, const std::string& where = "test.cx") {
  FilePtr f = input_of(bytes);
  StreamReader reader(f.get(), where);
  Contents c;
  c.header = reader.header();
  c.cx = reader.is_cx();
  Record r;
  while (reader.next(r)) c.records.push_back(r);
  EXPECT_EQ(reader.records(), static_cast<std::int64_t>(c.records.size()));
  EXPECT_FALSE(reader.next(r)) << "next() after the end stays false";
  return c;
}

// A raw tar with exactly these members (no checks of ours on the names): for hostile inputs.
std::string raw_tar(const std::vector<std::pair<std::string, std::string>>& members, bool end = true) {
  MemOut out;
  cx::io::tar::Writer w(out.file(), "memory");
  for (auto& [n, d] : members) w.add(n, d);
  if (end) w.finish();
  return out.take();
}

std::string cx_header_text(const std::string& version = "1.0") {
  json h = cx::io::new_stream_header();
  h["version"] = version;
  return h.dump();
}

// Expects reading `bytes` to throw an exception of type E whose message holds every `parts`.
template <class E>
void expect_refused(const std::string& bytes, std::vector<std::string> parts, const std::string& where = "test.cx") {
  try {
    read_stream(bytes, where);
    ADD_FAILURE() << "no error; expected one mentioning " << parts.front();
  } catch (const E& e) {
    std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
    EXPECT_EQ(msg.rfind(where + ": ", 0), 0u) << "message does not name the source: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "wrong exception type: " << e.what();
  }
}

std::string octal_field(const char* p, std::size_t n) { return std::string(p, n); }

std::vector<Record> sample_records() {
  std::string binary;
  for (int i = 0; i < 1500; ++i) binary.push_back(static_cast<char>(i * 7 % 256));  // holds zero bytes
  std::string long100 = "train/" + std::string(90, 'p') + "/img";      // member name > 100, fits prefix
  std::string long255 = std::string(200, 'a') + "/" + std::string(80, 'b');  // member name > 255: pax
  return {
      make_record("0001", {{"json", R"({"id":"0001","sex":"F"})"}, {"png", binary}, {"mask.png", std::string("\0\0\x01", 3)}}),
      make_record("0002", {{"json", "{}"}, {"txt", ""}, {"cls.npy", std::string(384 * 4, '\0')}}),
      make_record(long100, {{"json", "{\"long\":100}"}, {"png", "x"}}),
      make_record(long255, {{"txt", "far"}}),
      make_record("sub/dir/0003", {{"json", "{}"}, {"weird.field", "kept"}}),
  };
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Round trips and exact bytes

TEST(Stream, RoundTripKeepsEveryRecordFieldAndByte) {
  json header = cx::io::new_stream_header();
  header["labels"] = {"cardiomegaly", "effusion"};
  header["fields"]["cls.npy"] = {{"dtype", "float32"}, {"shape", {384}}};
  header["provenance"].push_back({{"tool", "cx-test"}, {"version", "0"}});
  header["future_key"] = "passed through";
  auto records = sample_records();
  std::string bytes = write_stream(records, header);
  ASSERT_EQ(bytes.size() % 512, 0u);

  Contents c = read_stream(bytes);
  EXPECT_TRUE(c.cx);
  EXPECT_EQ(c.header, header);
  ASSERT_EQ(c.records.size(), records.size());
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(c.records[i].key, records[i].key);
    ASSERT_EQ(c.records[i].fields.size(), records[i].fields.size()) << records[i].key;
    for (std::size_t j = 0; j < records[i].fields.size(); ++j) {
      EXPECT_EQ(c.records[i].fields[j].name, records[i].fields[j].name);
      EXPECT_EQ(c.records[i].fields[j].data, records[i].fields[j].data) << records[i].key;
    }
  }
  EXPECT_EQ(c.records[4].find("weird.field")->data, "kept");  // unknown fields pass through
  EXPECT_EQ(write_stream(records, header), bytes) << "the same records give the same bytes";
}

TEST(Stream, ZeroRecordsIsAValidStream) {
  Contents c = read_stream(write_stream({}));
  EXPECT_TRUE(c.cx);
  EXPECT_TRUE(c.records.empty());
}

TEST(Stream, FirstMemberHeaderBytes) {
  std::string bytes = write_stream({make_record("k", {{"txt", "hi"}})});
  std::string text = cx::io::new_stream_header().dump() + "\n";
  const char* b = bytes.data();
  EXPECT_EQ(std::string(b, 7), std::string("__cx__\0", 7));
  EXPECT_EQ(octal_field(b + 100, 8), std::string("0000644\0", 8));  // mode
  EXPECT_EQ(octal_field(b + 108, 8), std::string("0000000\0", 8));  // uid
  EXPECT_EQ(octal_field(b + 116, 8), std::string("0000000\0", 8));  // gid
  char size[13];
  std::snprintf(size, sizeof size, "%011o", static_cast<unsigned>(text.size()));
  EXPECT_EQ(octal_field(b + 124, 12), std::string(size, 12));        // size, NUL-ended
  EXPECT_EQ(octal_field(b + 136, 12), std::string("00000000000\0", 12));  // mtime 0
  EXPECT_EQ(b[156], '0');
  EXPECT_EQ(std::string(b + 257, 8), std::string("ustar\0" "00", 8));
  EXPECT_EQ(std::string(b + 265, 64), std::string(64, '\0'));  // uname, gname empty
  // The checksum: the unsigned byte sum with the checksum field read as eight spaces.
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += (i >= 148 && i < 156) ? 32u : static_cast<unsigned char>(b[i]);
  char chk[9];
  std::snprintf(chk, sizeof chk, "%06o", sum);
  EXPECT_EQ(std::string(b + 148, 8), std::string(chk, 6) + std::string("\0 ", 2));
  EXPECT_EQ(bytes.substr(512, text.size()), text);
  EXPECT_EQ(bytes.substr(512 + text.size(), 512 - text.size()), std::string(512 - text.size(), '\0'));

  // The trailer: __end__ with the count, then exactly two zero blocks and nothing more.
  std::string end_text = "{\"records\":1}\n";
  ASSERT_GE(bytes.size(), 3 * 512u);
  std::size_t end_at = bytes.size() - 4 * 512;
  EXPECT_EQ(std::string(bytes.data() + end_at, 8), std::string("__end__\0", 8));
  EXPECT_EQ(bytes.substr(end_at + 512, end_text.size()), end_text);
  EXPECT_EQ(bytes.substr(bytes.size() - 1024), std::string(1024, '\0'));
}

TEST(Stream, LongNamesUseUstarPrefixThenPax) {
  // 6 + 90 + 4 + 5 = 105 bytes: split into prefix "train/ppp..." and name "img.json"; no pax.
  std::string mid = "train/" + std::string(90, 'p') + "/img";
  std::string bytes = write_stream({make_record(mid, {{"json", "{}"}})});
  std::size_t h = 1024;  // after __cx__ (its JSON fits one block)
  EXPECT_EQ(std::string(bytes.data() + h), "img.json");
  EXPECT_EQ(std::string(bytes.data() + h + 345), "train/" + std::string(90, 'p'));
  EXPECT_EQ(bytes[h + 156], '0');

  // 281 bytes with no usable split: a pax 'x' member with a path record comes first.
  std::string longkey = std::string(200, 'a') + "/" + std::string(80, 'b');
  bytes = write_stream({make_record(longkey, {{"txt", "far"}})});
  EXPECT_EQ(std::string(bytes.data() + h), "././@PaxHeader");
  EXPECT_EQ(bytes[h + 156], 'x');
  // "<len> path=<name>\n" where <len> counts the whole record: 3 digits + 292 = 295.
  std::string record = "295 path=" + longkey + ".txt\n";
  ASSERT_EQ(record.size(), 295u);
  EXPECT_EQ(bytes.substr(h + 512, record.size()), record);
  EXPECT_EQ(read_stream(bytes).records.at(0).key, longkey);
}

TEST(Stream, WriterRefusesRecordsThatWouldNotReadBack) {
  auto refused = [](const Record& r, const std::string& part) {
    MemOut out;
    StreamWriter w(out.file(), cx::io::new_stream_header(), "dest.cx");
    try {
      w.write(r);
      ADD_FAILURE() << "accepted key '" << r.key << "'";
    } catch (const cx::Error& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).rfind("dest.cx: ", 0), 0u) << e.what();
    }
  };
  refused(make_record("a.b", {{"png", "x"}}), "would not read back");
  refused(make_record("a", {{"PNG", "x"}}), "would not read back");
  refused(make_record("a", {{"x/y", "x"}}), "would not read back");
  refused(make_record("__meta__/x", {{"png", "x"}}), "would not read back");  // WebDataset skips it
  refused(make_record("../a", {{"png", "x"}}), "bad path component");
  refused(make_record("/a", {{"png", "x"}}), "bad path component");
  refused(make_record("a", {}), "no fields");
  refused(make_record("", {{"png", "x"}}), "empty key");
  refused(make_record("a", {{"png", "x"}, {"png", "y"}}), "twice");

  MemOut out;
  StreamWriter w(out.file(), cx::io::new_stream_header(), "dest.cx");
  w.write(make_record("a", {{"png", "x"}}));
  w.write(make_record("b", {{"png", "x"}}));
  EXPECT_THROW(w.write(make_record("a", {{"json", "{}"}})), cx::Error);
  EXPECT_THROW(w.write(make_record("b", {{"json", "{}"}})), cx::Error);
}

TEST(Stream, WriteErrorNamesTheDestination) {
  FilePtr full(std::fopen("/dev/full", "wb"));
  if (!full) GTEST_SKIP() << "/dev/full not available";
  try {
    StreamWriter w(full.get(), cx::io::new_stream_header(), "out.cx");
    w.write(make_record("a", {{"bin", std::string(1 << 20, 'x')}}));  // beyond stdio's buffer
    w.finish();
    ADD_FAILURE() << "writing to /dev/full succeeded";
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("out.cx: write failed", 0), 0u) << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// Truncation

TEST(Stream, CutAtEveryByteIsTruncated) {
  std::string big(700, 'z');  // spans two blocks, so cuts fall inside data and inside padding
  std::string bytes = write_stream({make_record("r1", {{"json", "{}"}, {"bin", big}}),
                                    make_record("r2", {{"txt", ""}}),
                                    make_record("r3", {{"json", "{\"k\":3}"}})});
  for (std::size_t cut = 0; cut < bytes.size(); ++cut) {
    try {
      read_stream(bytes.substr(0, cut), "cut.cx");
      ADD_FAILURE() << "cut at byte " << cut << " of " << bytes.size() << " read as complete";
    } catch (const cx::TruncatedError& e) {
      std::string msg = e.what();
      if (msg.rfind("cut.cx: truncated stream", 0) != 0) ADD_FAILURE() << "cut at " << cut << ": " << msg;
    } catch (const std::exception& e) {
      ADD_FAILURE() << "cut at byte " << cut << ": not a TruncatedError: " << e.what();
    }
  }
  EXPECT_EQ(read_stream(bytes).records.size(), 3u);
}

TEST(Stream, CutAtEachMemberBoundarySaysWhatIsMissing) {
  std::string bytes = write_stream({make_record("r1", {{"json", "{}"}, {"png", "p"}}),
                                    make_record("r2", {{"json", "{}"}}),
                                    make_record("r3", {{"json", "{}"}}),
                                    make_record("r4", {{"json", "{}"}})});
  // Member offsets, from our own tar reader over the complete stream.
  std::vector<std::uint64_t> starts;
  {
    FilePtr f = input_of(bytes);
    cx::io::tar::Reader tr(f.get(), "x");
    cx::io::tar::Member m;
    while (tr.next(m)) starts.push_back(m.offset);
  }
  ASSERT_EQ(starts.size(), 7u);  // __cx__, 5 record members, __end__
  auto message = [&](std::size_t cut) -> std::string {
    try {
      read_stream(bytes.substr(0, cut), "train.cx");
    } catch (const cx::TruncatedError& e) {
      return e.what();
    }
    return "no error";
  };
  EXPECT_EQ(message(starts[1]).rfind("train.cx: truncated stream: ended after 0 records without __end__", 0), 0u)
      << message(starts[1]);
  // Cut just before __end__: records 1-3 came through, record 4 was pending.
  EXPECT_EQ(message(starts[6]).rfind("train.cx: truncated stream: ended after 3 records without __end__", 0), 0u)
      << message(starts[6]);
  for (std::size_t i = 1; i < starts.size(); ++i)
    EXPECT_NE(message(starts[i]).find("without __end__"), std::string::npos) << message(starts[i]);
  // After __end__, before and between the two zero blocks.
  EXPECT_NE(message(bytes.size() - 1024).find("cut after __end__"), std::string::npos) << message(bytes.size() - 1024);
  EXPECT_NE(message(bytes.size() - 512).find("cut after __end__"), std::string::npos) << message(bytes.size() - 512);
  EXPECT_EQ(message(0), "train.cx: truncated stream: empty input");
}

TEST(Stream, EndOfArchiveWithoutTrailerIsTruncated) {
  // A cx stream re-terminated by some tool: tar blocks present, __end__ missing.
  std::string bytes = raw_tar({{"__cx__", cx_header_text()}, {"a.json", "{}"}});
  expect_refused<cx::TruncatedError>(bytes, {"truncated stream", "without __end__"});
}

// ---------------------------------------------------------------------------------------------
// Refused by name

TEST(Stream, HostileNamesAreRefused) {
  for (std::string bad : {"../x.png", "a/../b.png", "/abs.png", "a/.."}) {
    expect_refused<cx::Error>(raw_tar({{"__cx__", cx_header_text()}, {bad, "x"}}), {"'" + bad + "'"});
    expect_refused<cx::Error>(raw_tar({{"ok.png", "x"}, {bad, "x"}}), {"'" + bad + "'"});
  }
  expect_refused<cx::Error>(raw_tar({{"../x.png", "x"}}), {"'..' path component"});
  expect_refused<cx::Error>(raw_tar({{"/abs.png", "x"}}), {"absolute path"});
}

TEST(Stream, KeyRepeatedOutOfOrderIsRefused) {
  std::string bytes = raw_tar({{"__cx__", cx_header_text()}, {"A.json", "{}"}, {"B.json", "{}"}, {"A.png", "x"}});
  expect_refused<cx::Error>(bytes, {"key 'A' repeats out of order", "A.png"});
  expect_refused<cx::Error>(raw_tar({{"A.json", "{}"}, {"B.json", "{}"}, {"A.png", "x"}}), {"key 'A' repeats"});
}

TEST(Stream, DuplicateFieldIsRefused) {
  expect_refused<cx::Error>(raw_tar({{"__cx__", cx_header_text()}, {"A.json", "{}"}, {"A.json", "{}"}}),
                            {"record 'A' has field 'json' twice"});
  // Field names are lowercased as WebDataset does, so these collide too.
  expect_refused<cx::Error>(raw_tar({{"A.png", "x"}, {"A.PNG", "y"}}), {"field 'png' twice", "A.PNG"});
}

TEST(Stream, NewerMajorVersionIsRefusedByName) {
  expect_refused<cx::Error>(raw_tar({{"__cx__", cx_header_text("2.0")}, {"__end__", "{\"records\":0}"}}),
                            {"test.cx: written by a newer cx (version 2.0); this reader knows 1.x"});
  // A newer minor version reads, with its unknown keys kept.
  json h = json::parse(cx_header_text("1.7"));
  h["new_in_1_7"] = {1, 2};
  Contents c = read_stream(raw_tar({{"__cx__", h.dump()}, {"a.json", "{}"}, {"__end__", "{\"records\":1}"}}));
  EXPECT_EQ(c.header["version"], "1.7");
  EXPECT_EQ(c.header["new_in_1_7"], json({1, 2}));
  EXPECT_EQ(c.records.size(), 1u);
}

TEST(Stream, MalformedHeaderAndTrailerAreRefused) {
  expect_refused<cx::Error>(raw_tar({{"__cx__", R"({"format":"other","version":"1.0"})"}}), {"format \"other\""});
  expect_refused<cx::Error>(raw_tar({{"__cx__", "{not json"}}), {"__cx__ is not valid JSON"});
  expect_refused<cx::Error>(raw_tar({{"__cx__", R"({"format":"cx-stream"})"}}), {"no valid version"});
  expect_refused<cx::Error>(raw_tar({{"__cx__", cx_header_text()}, {"a.json", "{}"}, {"__end__", "{\"records\":2}"}}),
                            {"__end__ counts 2 records but the stream holds 1"});
  expect_refused<cx::Error>(raw_tar({{"__cx__", cx_header_text()}, {"__end__", "{\"records\":0}"}, {"a.json", "{}"}}),
                            {"member 'a.json' follows __end__"});
  expect_refused<cx::Error>(raw_tar({{"__cx__", cx_header_text()}, {"__cx__", cx_header_text()}}),
                            {"a second __cx__"});
}

TEST(Stream, BadChecksumIsAnError) {
  std::string bytes = write_stream({make_record("a", {{"json", "{}"}}), make_record("b", {{"json", "{}"}})});
  std::string bad = bytes;
  bad[1024 + 5] ^= 0x20;  // a name byte of the second member's header ("a.json")
  expect_refused<cx::Error>(bad, {"bad tar header checksum at byte offset 1024"});
  bad = bytes;
  bad[0] = 'X';
  expect_refused<cx::Error>(bad, {"not a tar stream"});
  expect_refused<cx::Error>(std::string(1024, 'h'), {"not a tar stream"});
}

TEST(Stream, DataAfterTheEndIsRefusedButZeroPaddingIsNot) {
  std::string bytes = write_stream({make_record("a", {{"json", "{}"}})});
  EXPECT_EQ(read_stream(bytes + std::string(10240 - bytes.size() % 10240, '\0')).records.size(), 1u);
  expect_refused<cx::Error>(bytes + bytes, {"data after the end-of-archive blocks"});
}

TEST(Stream, Base256SizeAndGnuLongNamesAreRead) {
  // A handmade member whose size field is base-256 (GNU/star), as tars write sizes >= 8 GiB.
  char block[512];
  ASSERT_TRUE(cx::io::tar::format_ustar_header(block, "k.bin", 5));
  std::memset(block + 124, 0, 12);
  block[124] = static_cast<char>(0x80);
  block[135] = 5;
  std::memset(block + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; ++i) sum += static_cast<unsigned char>(block[i]);
  std::snprintf(block + 148, 8, "%06o", sum);
  std::string tar(block, 512);
  tar += std::string("hello") + std::string(507, '\0') + std::string(1024, '\0');
  Contents c = read_stream(tar);
  ASSERT_EQ(c.records.size(), 1u);
  EXPECT_FALSE(c.cx);
  EXPECT_EQ(c.records[0].find("bin")->data, "hello");
}

TEST(Stream, KeyRuleIsWebDatasets) {
  struct Case {
    std::string name, key, field;
  };
  // Expected values from WebDataset's re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name), lcase=True.
  for (const Case& c : std::vector<Case>{{"0001.png", "0001", "png"},
                                         {"0001.mask.png", "0001", "mask.png"},
                                         {"train/p1/view1.png", "train/p1/view1", "png"},
                                         {"a.b/c.d.E", "a.b/c", "d.e"},
                                         {"a/.png", "a/", "png"},
                                         {"x/y/.png", "x/y/", "png"},
                                         {"k.", "k", ""}}) {
    std::string key, field;
    ASSERT_TRUE(cx::io::split_member_name(c.name, key, field)) << c.name;
    EXPECT_EQ(key, c.key) << c.name;
    EXPECT_EQ(field, c.field) << c.name;
  }
  for (std::string none : {"README", ".png", "a.b/c", "a.b/.c", "dir/"}) {
    std::string key, field;
    EXPECT_FALSE(cx::io::split_member_name(none, key, field)) << none;
  }
  for (std::string meta : {"__cx__", "__end__", "__x__/a.png", "____", "___"}) EXPECT_TRUE(cx::io::is_meta_member(meta)) << meta;
  for (std::string rec : {"__key__.json", "a/__x__", "_x_.png", "__a/b__"}) EXPECT_FALSE(cx::io::is_meta_member(rec)) << rec;
}

// ---------------------------------------------------------------------------------------------
// Interoperability with Python's tarfile and WebDataset's grouping

namespace {

// Writes a plain WebDataset-style tar with Python's tarfile (format given in argv[2]) and prints
// the samples WebDataset would yield: its tar_file_iterator filters and group_by_keys, verbatim
// in logic, over Python's own reading of the file.
const char* kPythonWebDataset = R"PY(
import json, re, sys, tarfile, io
path, fmt = sys.argv[1], sys.argv[2]
fmt = {"pax": tarfile.PAX_FORMAT, "gnu": tarfile.GNU_FORMAT, "ustar": tarfile.USTAR_FORMAT}[fmt]
members = [("0001.json", b'{"id":1}'), ("0001.png", b"\x89PNG\x00\x00\x01"), ("0001.Mask.PNG", b"mask"),
           ("README", b"no key"), ("__meta__", b"meta"), ("__x__/inner.txt", b"meta too"),
           ("train/p1/view1.png", b"v1"), ("train/p1/view1.json", b"{}"), ("train/p1/view2.png", b"v2"),
           ("x/.png", b"dot base"), ("0002.cls.npy", bytes(range(256)) * 3), ("0003.txt", b"")]
if fmt != tarfile.USTAR_FORMAT:
    members.append(("d" * 150 + "/" + "e" * 120 + ".txt", b"long"))
with tarfile.open(path, "w", format=fmt) as t:
    d = tarfile.TarInfo("train"); d.type = tarfile.DIRTYPE; t.addfile(d)
    for name, data in members:
        info = tarfile.TarInfo(name); info.size = len(data); info.mtime = 1700000000
        t.addfile(info, io.BytesIO(data))
    s = tarfile.TarInfo("link.png"); s.type = tarfile.SYMTYPE; s.linkname = "0001.png"; t.addfile(s)
    end = t.offset
def base_plus_ext(path):
    match = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", path)
    if not match:
        return None, None
    return match.group(1), match.group(2)
samples, current = [], None
with tarfile.open(path) as t:
    for ti in t:
        fname = ti.name
        if not ti.isreg():
            continue
        if "/" not in fname and fname.startswith("__") and fname.endswith("__"):
            continue
        if re.match(r"__[^/]*__($|/)", fname):
            continue
        data = t.extractfile(ti).read()
        prefix, suffix = base_plus_ext(fname)
        if prefix is None:
            continue
        suffix = suffix.lower()
        if current is None or prefix != current["key"]:
            if current is not None:
                samples.append(current)
            current = {"key": prefix, "fields": []}
        current["fields"].append([suffix, data.hex()])
if current is not None:
    samples.append(current)
print(json.dumps({"end": end, "samples": samples}))
)PY";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string hex(const std::string& s) {
  static const char* d = "0123456789abcdef";
  std::string out;
  for (unsigned char c : s) {
    out += d[c >> 4];
    out += d[c & 15];
  }
  return out;
}

fs::path temp_path(const std::string& name) {
  return fs::temp_directory_path() / ("cx_stream_test_" + std::to_string(::getpid()) + "_" + name);
}

}  // namespace

TEST(Stream, ReadsPlainWebDatasetTarsFromPythonGroupedAsWebDatasetDoes) {
  for (std::string format : {"pax", "gnu", "ustar"}) {
    SCOPED_TRACE(format);
    fs::path tar = temp_path("plain.tar");
    auto py = cx_test::run_python(kPythonWebDataset, {tar.string(), format});
    if (!py.ran) GTEST_SKIP() << py.why_not;
    ASSERT_EQ(py.status, 0) << py.output;
    json expected = json::parse(py.output);
    std::string bytes = slurp(tar);
    fs::remove(tar);
    ASSERT_EQ(bytes.size() % 10240, 0u) << "Python pads to 10240: the trailing zeros must be accepted";

    Contents c = read_stream(bytes);
    EXPECT_FALSE(c.cx);
    EXPECT_EQ(c.header, cx::io::new_stream_header());
    ASSERT_EQ(c.records.size(), expected["samples"].size());
    for (std::size_t i = 0; i < c.records.size(); ++i) {
      const json& s = expected["samples"][i];
      EXPECT_EQ(c.records[i].key, s["key"].get<std::string>());
      ASSERT_EQ(c.records[i].fields.size(), s["fields"].size()) << c.records[i].key;
      for (std::size_t j = 0; j < c.records[i].fields.size(); ++j) {
        EXPECT_EQ(c.records[i].fields[j].name, s["fields"][j][0].get<std::string>());
        EXPECT_EQ(hex(c.records[i].fields[j].data), s["fields"][j][1].get<std::string>());
      }
    }

    // The tar's own end-of-archive blocks must be there: cut before or between them -> truncated.
    std::size_t end = expected["end"].get<std::size_t>();
    expect_refused<cx::TruncatedError>(bytes.substr(0, end), {"truncated stream", "without the tar end-of-archive blocks"});
    expect_refused<cx::TruncatedError>(bytes.substr(0, end + 512), {"truncated stream"});
    expect_refused<cx::TruncatedError>(bytes.substr(0, end - 1), {"truncated stream"});
    EXPECT_EQ(read_stream(bytes.substr(0, end + 1024)).records.size(), c.records.size());
    EXPECT_EQ(read_stream(bytes.substr(0, end + 1500)).records.size(), c.records.size());
  }
}

TEST(Stream, PythonTarfileReadsEveryMemberWeWrite) {
  auto records = sample_records();
  std::string bytes = write_stream(records);
  fs::path file = temp_path("ours.cx");
  {
    std::ofstream f(file, std::ios::binary);
    f << bytes;
  }
  const char* script = R"PY(
import json, sys, tarfile
out = []
with tarfile.open(sys.argv[1]) as t:
    for ti in t:
        out.append([ti.name, ti.size, ti.mode, ti.mtime, ti.uid, ti.gid, t.extractfile(ti).read().hex()])
print(json.dumps(out))
)PY";
  auto py = cx_test::run_python(script, {file.string()});
  fs::remove(file);
  if (!py.ran) GTEST_SKIP() << py.why_not;
  ASSERT_EQ(py.status, 0) << py.output;
  json members = json::parse(py.output);
  std::vector<std::pair<std::string, std::string>> want;
  want.emplace_back("__cx__", cx::io::new_stream_header().dump() + "\n");
  for (const Record& r : records)
    for (const Field& f : r.fields) want.emplace_back(r.key + "." + f.name, f.data);
  want.emplace_back("__end__", "{\"records\":" + std::to_string(records.size()) + "}\n");
  ASSERT_EQ(members.size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(members[i][0], want[i].first);
    EXPECT_EQ(members[i][1], want[i].second.size());
    EXPECT_EQ(members[i][2], 0644);
    EXPECT_EQ(members[i][3], 0);
    EXPECT_EQ(members[i][4], 0);
    EXPECT_EQ(members[i][5], 0);
    EXPECT_EQ(members[i][6], hex(want[i].second));
  }
}

// ---------------------------------------------------------------------------------------------
// Pipes and compression

TEST(Stream, ReadsFromAPipeWhileItIsWritten) {
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  const int n = 200;
  std::string payload(10000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i % 251);
  // 2 MB through a 64 KiB pipe: the reader must consume as the writer produces (no seeking).
  std::thread writer([&] {
    std::FILE* w = ::fdopen(fds[1], "wb");
    StreamWriter sw(w, cx::io::new_stream_header(), "pipe");
    for (int i = 0; i < n; ++i) sw.write(make_record("r" + std::to_string(i), {{"bin", payload}, {"json", "{}"}}));
    sw.finish();
    std::fclose(w);
  });
  FilePtr r(::fdopen(fds[0], "rb"));
  StreamReader reader(r.get(), "pipe");
  Record rec;
  int count = 0;
  while (reader.next(rec)) {
    EXPECT_EQ(rec.key, "r" + std::to_string(count));
    EXPECT_EQ(rec.find("bin")->data, payload);
    ++count;
  }
  writer.join();
  EXPECT_EQ(count, n);
}

namespace {
std::string gzip(const std::string& data, int level = 6) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// With the content checksum, as the zstd command writes frames.
std::string zstd(const std::string& data, int level = 3) {
  std::unique_ptr<ZSTD_CCtx, std::size_t (*)(ZSTD_CCtx*)> c(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(c.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t n = ZSTD_compress2(c.get(), out.data(), out.size(), data.data(), data.size());
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}
}  // namespace

TEST(Stream, GzipInputIsReadTransparently) {
  auto records = sample_records();
  std::string bytes = write_stream(records);
  std::string gz = gzip(bytes);
  Contents c = read_stream(gz);
  ASSERT_EQ(c.records.size(), records.size());
  EXPECT_EQ(c.records[0].find("png")->data, records[0].find("png")->data);
  // Two gzip members back to back (`cat a.gz b.gz`) are one stream.
  std::string split = gzip(bytes.substr(0, 3000)) + gzip(bytes.substr(3000));
  EXPECT_EQ(read_stream(split).records.size(), records.size());
  // A cut gzip stream is truncated, even when the cut only loses the gzip trailer.
  expect_refused<cx::TruncatedError>(gz.substr(0, gz.size() / 2), {"truncated stream"});
  expect_refused<cx::TruncatedError>(gz.substr(0, gz.size() - 4), {"truncated stream"});
  std::string corrupt = gz;
  corrupt[gz.size() / 2] ^= 0x55;
  EXPECT_THROW(read_stream(corrupt), cx::Error);
}

// The .tar.zst that man 5 cx-stream promises: read as the plain stream, frames back to back are one
// stream, a cut anywhere in the compressed bytes is truncated.
TEST(Stream, ZstdInputIsReadTransparently) {
  auto records = sample_records();
  std::string bytes = write_stream(records);
  std::string zst = zstd(bytes);
  Contents c = read_stream(zst);
  ASSERT_EQ(c.records.size(), records.size());
  for (std::size_t i = 0; i < records.size(); ++i)
    for (const auto& f : records[i].fields) EXPECT_EQ(c.records[i].find(f.name)->data, f.data) << i << " " << f.name;
  std::string split = zstd(bytes.substr(0, 3000)) + zstd(bytes.substr(3000, 5000)) + zstd(bytes.substr(8000));
  EXPECT_EQ(read_stream(split).records.size(), records.size());
  expect_refused<cx::TruncatedError>(zst.substr(0, zst.size() / 2), {"truncated stream", "zstd"});
  expect_refused<cx::TruncatedError>(zst.substr(0, zst.size() - 1), {"truncated stream", "zstd"});
  std::string corrupt = zst;
  corrupt[zst.size() / 2] ^= 0x55;
  EXPECT_THROW(read_stream(corrupt), cx::Error);
}

// A compressed stream arriving through a pipe in small pieces (`zstd -dc` is not needed first).
TEST(Stream, ZstdStreamThroughAPipe) {
  std::string payload(10000, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>((i * 7) % 251);
  std::vector<Record> records;
  for (int i = 0; i < 100; ++i) records.push_back(make_record("r" + std::to_string(i), {{"bin", payload}, {"json", "{}"}}));
  const std::string zst = zstd(write_stream(records));
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::thread writer([&] {
    for (std::size_t at = 0; at < zst.size(); at += 1000) {
      const std::size_t n = std::min<std::size_t>(1000, zst.size() - at);
      if (::write(fds[1], zst.data() + at, n) != static_cast<ssize_t>(n)) break;
    }
    ::close(fds[1]);
  });
  FilePtr r(::fdopen(fds[0], "rb"));
  StreamReader reader(r.get(), "pipe");
  Record rec;
  int count = 0;
  while (reader.next(rec)) {
    EXPECT_EQ(rec.key, "r" + std::to_string(count));
    EXPECT_EQ(rec.find("bin")->data, payload);
    ++count;
  }
  writer.join();
  EXPECT_EQ(count, 100);
}

TEST(Stream, OtherCompressionsAreRefusedByName) {
  expect_refused<cx::Error>(std::string("\xfd" "7zXZ\0", 6) + std::string(600, '\0'), {"xz"});
  expect_refused<cx::Error>(std::string("BZh91AY&SY") + std::string(600, '\0'), {"bzip2"});
}

TEST(Stream, OpenReadsAPathAndNamesIt) {
  fs::path file = temp_path("open.cx");
  {
    std::ofstream f(file, std::ios::binary);
    f << write_stream({make_record("a", {{"json", "{}"}})});
  }
  auto reader = StreamReader::open(file.string());
  EXPECT_EQ(reader->where(), file.string());
  Record r;
  EXPECT_TRUE(reader->next(r));
  EXPECT_FALSE(reader->next(r));
  fs::remove(file);
  try {
    StreamReader::open(file.string());
    ADD_FAILURE() << "opened a missing file";
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()), file.string() + ": No such file or directory");
  }
}
