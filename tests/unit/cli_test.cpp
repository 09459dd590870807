// lib/cx/cli: atomic output files and the shared error shape.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"

namespace fs = std::filesystem;

namespace {
fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("cx_cli_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}
std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}
}  // namespace

TEST(OutputFile, NothingAppearsUntilCommit) {
  fs::path dir = temp_dir();
  fs::path target = dir / "out.cx";
  {
    cx::cli::OutputFile out(target.string());
    out.write("hello");
    EXPECT_FALSE(fs::exists(target));
    out.commit();
  }
  EXPECT_EQ(slurp(target), "hello");
  fs::remove_all(dir);
}

TEST(OutputFile, UncommittedLeavesNoFileBehind) {
  fs::path dir = temp_dir();
  fs::path target = dir / "out.cx";
  {
    cx::cli::OutputFile out(target.string());
    out.write("partial");
  }
  EXPECT_FALSE(fs::exists(target));
  EXPECT_TRUE(fs::is_empty(dir)) << "the temporary file must be removed";
  fs::remove_all(dir);
}

TEST(OutputFile, UncommittedKeepsThePreviousFile) {
  fs::path dir = temp_dir();
  fs::path target = dir / "out.cx";
  cx::cli::write_file_atomic(target.string(), "old");
  {
    cx::cli::OutputFile out(target.string());
    out.write("new but interrupted");
  }
  EXPECT_EQ(slurp(target), "old");
  fs::remove_all(dir);
}

TEST(OutputFile, UnwritableFolderNamesThePath) {
  try {
    cx::cli::OutputFile out("/nonexistent-dir/x.cx");
    FAIL() << "expected an error";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/x.cx: cannot create"), std::string::npos) << e.what();
  }
}

// --- shared option parsing, the --skip-bad policy, the stream output helper, folder writes ---
#include "cx/cli/bad_inputs.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/names.hpp"
#include "cx/cli/options.hpp"
#include "cx/cli/stream_output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/stream.hpp"

namespace {
// Runs f with stderr captured into a string.
template <class F>
std::string capture_stderr(F&& f) {
  std::fflush(stderr);
  char path[] = "/tmp/cx_cli_test_err_XXXXXX";
  const int fd = ::mkstemp(path);
  const int saved = ::dup(2);
  ::dup2(fd, 2);
  f();
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fd);
  std::string text = slurp(path);
  ::unlink(path);
  return text;
}
}  // namespace

TEST(Names, DashIsStandardInputOrOutput) {
  EXPECT_EQ(cx::cli::input_name("-"), "standard input");
  EXPECT_EQ(cx::cli::output_name("-"), "standard output");
  EXPECT_EQ(cx::cli::output_name(""), "standard output");
  EXPECT_EQ(cx::cli::input_name("a.cx"), "a.cx");
}

TEST(Options, ListsAreTrimmedAndEmptyTextIsRefused) {
  EXPECT_EQ(cx::cli::parse_list(" PA, AP,,LL ", "--view"), (std::vector<std::string>{"PA", "AP", "LL"}));
  EXPECT_TRUE(cx::cli::parse_list("", "--view").empty());
  try {
    cx::cli::parse_list(" , ", "--view");
    FAIL() << "no error";
  } catch (const cx::UsageError& e) {
    EXPECT_STREQ(e.what(), "--view: empty list");
  }
}

TEST(Options, ShardsPartitionTheInputs) {
  const auto s = cx::cli::parse_shard("2/5");
  EXPECT_EQ(s.index, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_TRUE(s.takes(7));
  EXPECT_FALSE(s.takes(8));
  const auto all = cx::cli::parse_shard("");
  EXPECT_TRUE(all.takes(0) && all.takes(123));
  for (const char* bad : {"5/5", "-1/3", "1/0", "1", "/3", "1/", "a/3", "1/3x", "0/99999999999999999999", "1 /3"}) {
    try {
      cx::cli::parse_shard(bad);
      ADD_FAILURE() << bad << " accepted";
    } catch (const cx::UsageError& e) {
      EXPECT_EQ(std::string(e.what()), std::string("--shard: expected i/n with 0 <= i < n, not '") + bad + "'");
    }
  }
}

TEST(BadInputs, WithoutSkipTheFirstFailsTheRun) {
  cx::cli::BadInputs bad(false);
  try {
    bad.report("scan.dcm", "not a DICOM file");
    FAIL() << "no error";
  } catch (const cx::Error& e) {
    EXPECT_STREQ(e.what(), "scan.dcm: not a DICOM file");
  }
  EXPECT_EQ(bad.exit_code(), cx::kExitOk);
}

TEST(BadInputs, SkippedInputsAreNamedEvenWhenQuiet) {
  cx::log::set_tool_name("cx-test");
  cx::log::set_level(cx::log::Level::quiet);
  cx::cli::BadInputs bad(true);
  int code = -1;
  const std::string err = capture_stderr([&] {
    bad.report("a.png", "truncated");
    bad.report("b.png: bad CRC");
    code = bad.finish(5, 3);
  });
  cx::log::set_level(cx::log::Level::normal);
  EXPECT_EQ(err,
            "cx-test: a.png: truncated (skipped)\n"
            "cx-test: b.png: bad CRC (skipped)\n"
            "cx-test: 2 of 5 inputs skipped (bad input); 3 records written\n");
  EXPECT_EQ(bad.count(), 2);
  EXPECT_EQ(code, cx::kExitPartial);
  EXPECT_EQ(bad.exit_code(), cx::kExitPartial);
}

TEST(StreamOutput, HeaderCarriesThisToolsProvenanceUnlessAskedNot) {
  fs::path dir = temp_dir();
  for (bool no_prov : {false, true}) {
    cx::cli::Tool tool("cx-test", "test");
    tool.add_shared_options(cx::cli::Tool::kOutput | cx::cli::Tool::kProvenance);
    const std::string out = (dir / (no_prov ? "b.cx" : "a.cx")).string();
    std::vector<std::string> args = {"cx-test", "-o", out};
    if (no_prov) args.push_back("--no-provenance");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    // parsed, not run: Tool::run closes standard output at its end
    tool.app().parse(static_cast<int>(argv.size()), argv.data());
    {
      nlohmann::json header = cx::io::new_stream_header();
      header["provenance"].push_back({{"tool", "earlier"}});
      cx::cli::StreamOutput s(tool, header);
      EXPECT_EQ(s.name(), out);
      EXPECT_FALSE(fs::exists(out));
      s.finish();
    }
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> in(std::fopen(out.c_str(), "rb"), &std::fclose);
    ASSERT_TRUE(in);
    cx::io::StreamReader reader(in.get(), out);
    const auto& prov = reader.header()["provenance"];
    ASSERT_EQ(prov.size(), no_prov ? 1u : 2u);
    EXPECT_EQ(prov[0]["tool"], "earlier");
    if (!no_prov) {
      EXPECT_EQ(prov[1]["tool"], "cx-test");
    }
  }
  fs::remove_all(dir);
}

TEST(WriteFolderAtomic, ReplacesWholeOrLeavesTheOldFolder) {
  fs::path dir = temp_dir();
  const std::string target = (dir / "head").string();
  cx::cli::write_folder_atomic(target, [](const std::string& tmp) { std::ofstream(tmp + "/a.txt") << "one"; });
  EXPECT_EQ(slurp(dir / "head" / "a.txt"), "one");
  EXPECT_THROW(cx::cli::write_folder_atomic(target,
                                            [](const std::string& tmp) {
                                              std::ofstream(tmp + "/a.txt") << "half";
                                              throw cx::Error("disk full");
                                            }),
               cx::Error);
  EXPECT_EQ(slurp(dir / "head" / "a.txt"), "one");
  cx::cli::write_folder_atomic(target + "/", [](const std::string& tmp) { std::ofstream(tmp + "/b.txt") << "two"; });
  EXPECT_FALSE(fs::exists(dir / "head" / "a.txt"));
  EXPECT_EQ(slurp(dir / "head" / "b.txt"), "two");
  std::size_t entries = 0;
  for (auto& e : fs::directory_iterator(dir)) entries += e.path().filename() == "head" ? 0 : 1;
  EXPECT_EQ(entries, 0u) << "a temporary or moved-aside folder was left behind";
  fs::remove_all(dir);
}

TEST(JsonFile, RefusesWhatIsNotAReadableObject) {
  fs::path dir = temp_dir();
  auto expect_error = [](const std::string& path, const std::string& message) {
    try {
      cx::io::read_json_file(path);
      ADD_FAILURE() << path << ": no error";
    } catch (const cx::Error& e) {
      EXPECT_EQ(std::string(e.what()), message);
    }
  };
  expect_error((dir / "missing.json").string(), (dir / "missing.json").string() + ": cannot open: No such file or directory");
  expect_error(dir.string(), dir.string() + ": is a folder");
  std::ofstream(dir / "bad.json") << "{\"a\": 1,";
  expect_error((dir / "bad.json").string(),
               (dir / "bad.json").string() +
                   ": not valid JSON: syntax error while parsing object key - unexpected end of input; expected string "
                   "literal (byte 9)");
  // Found by fuzz/vit_config: a number beyond double's range escaped as nlohmann's out_of_range, so
  // the tools printed "[json.exception.out_of_range.406] ..." without the file's name.
  std::ofstream(dir / "huge.json") << "{\"image_size\": 1e400}";
  expect_error((dir / "huge.json").string(),
               (dir / "huge.json").string() + ": not valid JSON: number overflow parsing '1e400'");
  std::ofstream(dir / "list.json") << "[1, 2]";
  expect_error((dir / "list.json").string(), (dir / "list.json").string() + ": not a JSON object");
  EXPECT_EQ(cx::io::read_json_file((dir / "list.json").string(), false).size(), 2u);
  fs::remove_all(dir);
}

TEST(JsonFile, ChecksFormatAndMajorVersion) {
  using cx::io::check_format;
  EXPECT_EQ(check_format({{"format", "cx-head"}, {"version", "1.3"}}, "h.json", "cx-head", 1), 1);
  auto message = [](const nlohmann::json& j) {
    try {
      check_format(j, "h.json", "cx-head", 1);
    } catch (const cx::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message({{"format", "cx-seghead"}, {"version", "1.0"}}), "h.json: format is \"cx-seghead\", not \"cx-head\"");
  EXPECT_EQ(message({{"version", "1.0"}}), "h.json: no \"format\": not a cx-head file");
  EXPECT_EQ(message({{"format", "cx-head"}, {"version", "x"}}), "h.json: unreadable version \"x\"");
  EXPECT_EQ(message({{"format", "cx-head"}, {"version", "2.0"}}),
            "h.json: format version 2.0 is newer than this build reads (1.x)");
}
