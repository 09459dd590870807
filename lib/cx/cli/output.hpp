#pragma once
// Output files written atomically: data goes to a temporary name in the target's folder and is
// renamed over the target only by commit(); destroyed uncommitted, the temporary is removed, so an
// interrupted run never leaves a file that looks complete. "-" or "" means standard output
// (checked at exit by Tool::run).
#include <cstdio>
#include <functional>
#include <string>

namespace cx::cli {

class OutputFile {
 public:
  explicit OutputFile(std::string path, bool binary = true);
  ~OutputFile();
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  std::FILE* file() { return file_; }
  const std::string& path() const { return path_; }  // the final name ("-" for stdout)
  bool is_stdout() const { return is_stdout_; }

  void write(const void* data, std::size_t size);
  void write(const std::string& s) { write(s.data(), s.size()); }

  // Flushes, fsyncs and renames into place (stdout: flushes). Throws cx::Error on failure.
  void commit();

 private:
  std::string path_;
  std::string temp_;
  std::FILE* file_ = nullptr;
  bool is_stdout_ = false;
  bool committed_ = false;
};

// Writes a whole file atomically.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Writes a whole folder atomically: `fill` writes the files into a temporary sibling folder
// (".NAME.tmp.PID"), which then replaces `target` (an existing folder is moved aside first and
// removed after the rename). On any failure the temporary goes and `target` is left as it was.
void write_folder_atomic(const std::string& target, const std::function<void(const std::string& temp)>& fill);

}  // namespace cx::cli
