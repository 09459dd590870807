#include "cx/cli/process.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "cx/util/strings.hpp"

extern char** environ;

namespace cx::cli {

namespace {
// Closes what it holds on every way out.
struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};
}  // namespace

int run_program(const std::vector<std::string>& args, const RunOptions& options) {
  if (args.empty()) return -1;
  Fd read_end, write_end;
  if (options.capture_stdout) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return -1;  // other children must not inherit it
    read_end.fd = p[0];
    write_end.fd = p[1];
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  if (options.capture_stdout) posix_spawn_file_actions_adddup2(&fa, write_end.fd, STDOUT_FILENO);
  else if (options.quiet) posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  else posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);  // never into our data stream
  if (options.quiet) posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  write_end.reset();  // the child holds its copy; EOF comes when it exits
  if (rc != 0) return -1;
  if (options.capture_stdout) {
    options.capture_stdout->clear();
    char buf[1 << 16];
    for (;;) {
      const ssize_t got = ::read(read_end.fd, buf, sizeof buf);
      if (got > 0) options.capture_stdout->append(buf, static_cast<std::size_t>(got));
      else if (got == 0 || errno != EINTR) break;
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string find_on_path(const std::string& program) {
  if (program.empty() || program.find('/') != std::string::npos) return {};
  const char* path = std::getenv("PATH");
  if (!path) return {};
  for (std::string dir : util::split_exact(path, ':')) {
    if (dir.empty()) dir = ".";
    const std::string candidate = dir + "/" + program;
    struct stat st {};
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return {};
}

}  // namespace cx::cli
