#pragma once
// Output files written atomically: data goes to a temporary name in the target's folder and is
// renamed over the target only by commit(); destroyed uncommitted, the temporary is removed, so an
// interrupted run never leaves a file that looks complete. SIGINT, SIGTERM and SIGHUP remove the
// temporaries too (then the signal ends the process as it would have). "-" or "" means standard
// output (checked at exit by Tool::run). A symlink is followed: its final target is replaced and the
// link stays. A device, FIFO or socket (/dev/null, a named pipe) is opened and written directly,
// never replaced; a folder is refused.
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
  std::string path_;   // as given
  std::string final_;  // the regular file the rename replaces (symlinks followed)
  std::string temp_;
  std::FILE* file_ = nullptr;
  int slot_ = -1;
  bool is_stdout_ = false;
  bool direct_ = false;  // a device or FIFO written in place
  bool committed_ = false;
};

// Temporaries removed if SIGINT, SIGTERM or SIGHUP ends the process (at most 64 at once; the
// first call installs the handlers, leaving a signal ignored by nohup ignored). Returns a slot for
// unregister_temporary, or -1.
int register_temporary(const std::string& path, bool folder);
void unregister_temporary(int slot);

// For long jobs that stop cleanly (cx-pretrain checkpoints and exits): from now on the first SIGINT,
// SIGTERM or SIGHUP is only recorded, and stop_requested() returns it (0 until then); a second one ends
// the process as above, removing temporaries.
void enable_graceful_stop();
int stop_requested();

// Writes a whole file atomically.
void write_file_atomic(const std::string& path, const std::string& bytes);

// Writes a whole folder atomically: `fill` writes the files into a temporary sibling folder
// (".NAME.tmp.PID"), which then replaces `target` (an existing folder is moved aside first and
// removed after the rename). On any failure the temporary goes and `target` is left as it was.
void write_folder_atomic(const std::string& target, const std::function<void(const std::string& temp)>& fill);

}  // namespace cx::cli
