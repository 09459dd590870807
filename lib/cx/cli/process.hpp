#pragma once
// Running another program, for the few jobs a well-kept one does better (rsvg-convert draws an SVG
// as PNG). The child never writes into our data stream: its standard input is /dev/null, its standard
// output is captured (when asked) or goes to our standard error, and `quiet` sends what it would
// print on either to /dev/null. posix_spawn, no shell: arguments are passed as they are.
#include <string>
#include <vector>

namespace cx::cli {

struct RunOptions {
  std::string* capture_stdout = nullptr;  // the child's standard output, whole
  bool quiet = true;                      // its diagnostics to /dev/null
};

// Runs argv[0] (searched on PATH when it holds no '/') and waits for it. Returns its exit status;
// -1 when it could not be started or ended by a signal.
int run_program(const std::vector<std::string>& argv, const RunOptions& options = {});

// The path of an executable `program` in a PATH directory (an empty entry is the current one), or ""
// when there is none.
std::string find_on_path(const std::string& program);

}  // namespace cx::cli
