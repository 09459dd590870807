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
