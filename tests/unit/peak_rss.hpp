#pragma once
// The memory `fn` takes, run in a child process (fork + wait4): the child's peak resident set
// above what it started with (the parent's pages it shares), in KiB, with its exit status: 0 when
// `fn` returned, 1 when it threw (the message goes to `what` through a pipe), 2 when it died
// otherwise. Decoders must refuse hostile files without taking the memory their headers claim;
// this measures it apart from the test process's own history.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <exception>
#include <functional>
#include <string>

namespace cx_test {

struct ChildRun {
  long peak_rss_kib = -1;   // the child's ru_maxrss
  long growth_kib = -1;     // peak_rss_kib less the resident set the child started with
  int status = -1;
  std::string what;
};

inline ChildRun run_in_child(const std::function<void()>& fn) {
  int fds[2];
  ChildRun r;
  if (::pipe(fds) != 0) return r;
  const pid_t pid = ::fork();
  if (pid < 0) return r;
  if (pid == 0) {
    ::close(fds[0]);
    struct rusage start {};
    ::getrusage(RUSAGE_SELF, &start);  // at fork: the parent's resident set, now shared
    const std::string head = std::to_string(start.ru_maxrss) + "\n";
    if (::write(fds[1], head.data(), head.size()) < 0) ::_exit(2);
    int code = 0;
    std::string msg;
    try {
      fn();
    } catch (const std::exception& e) {
      msg = e.what();
      code = 1;
    } catch (...) {
      code = 2;
    }
    if (!msg.empty() && ::write(fds[1], msg.data(), msg.size()) < 0) code = 2;
    ::_exit(code);
  }
  ::close(fds[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) r.what.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  long start_kib = -1;
  if (const auto nl = r.what.find('\n'); nl != std::string::npos) {
    start_kib = std::stol(r.what.substr(0, nl));
    r.what.erase(0, nl + 1);
  }
  int wstatus = 0;
  struct rusage usage {};
  if (::wait4(pid, &wstatus, 0, &usage) == pid) {
    r.peak_rss_kib = usage.ru_maxrss;
    if (start_kib >= 0) r.growth_kib = usage.ru_maxrss - start_kib;
    r.status = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 2;
  }
  return r;
}

}  // namespace cx_test
