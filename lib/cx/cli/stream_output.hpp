#pragma once
// A tool's output stream in one object: opens -o FILE (atomically) or standard output, writes the
// stream header with this tool's provenance entry appended (unless --no-provenance), and on
// finish() writes __end__ and renames the file into place. Destroyed unfinished, it leaves no file
// that looks complete (a temporary is removed; on stdout the missing __end__ marks truncation).
// Binary data is never written onto a terminal: standard output being one is a usage error.
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cx/cli/output.hpp"
#include "cx/io/stream.hpp"

namespace cx::cli {

class Tool;

class StreamOutput {
 public:
  // `path`: "-" or "" for standard output; the default is the tool's -o.
  StreamOutput(const Tool& tool, nlohmann::json header);
  StreamOutput(const Tool& tool, nlohmann::json header, const std::string& path);

  io::StreamWriter& writer() { return *writer_; }
  void write(const io::Record& record) { writer_->write(record); }
  std::int64_t records() const { return writer_->records(); }
  // The name used in messages ("standard output" or the file name).
  const std::string& name() const { return name_; }
  void finish();

 private:
  std::unique_ptr<OutputFile> file_;
  std::unique_ptr<io::StreamWriter> writer_;
  std::string name_;
};

}  // namespace cx::cli
