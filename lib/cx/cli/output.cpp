#include "cx/cli/output.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_EXCHANGE (glibc 2.28)
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::cli {

namespace fs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }

// Removes ".<base>.tmp.<pid>" and ".<base>.old.<pid>" beside `base` in `dir` left by a process
// that no longer exists (SIGKILL, power loss: nothing could clean them then). A live process's
// temporaries, ours included, are left alone. A folder is read once per process and what it held
// of that shape remembered: a tool writing one file per record (a folder of masks) must not read
// the folder again for each of them.
void remove_stale_temporaries(const std::string& dir, const std::string& base) {
  static std::mutex m;
  static std::map<std::string, std::vector<std::string>> stale_in;  // folder -> dead processes' temporaries
  std::vector<std::string> remove;
  {
    std::lock_guard<std::mutex> lk(m);
    auto [it, fresh] = stale_in.try_emplace(dir);
    if (fresh) {
      if (DIR* d = ::opendir(dir.empty() ? "." : dir.c_str())) {
        while (const dirent* e = ::readdir(d)) {
          const std::string name = e->d_name;
          const auto last = name.rfind('.');
          if (name.empty() || name[0] != '.' || last == std::string::npos || last < 5) continue;
          const std::string kind = name.substr(last - 4, 5);  // ".tmp." or ".old."
          if (kind != ".tmp." && kind != ".old.") continue;
          const std::string digits = name.substr(last + 1);
          if (digits.empty() || digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos) continue;
          const pid_t pid = static_cast<pid_t>(std::stol(digits));
          if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
          it->second.push_back(name);
        }
        ::closedir(d);
      }
    }
    const std::string prefix = "." + base + ".";
    auto& names = it->second;
    for (auto n = names.begin(); n != names.end();) {
      // ".<base>" then exactly ".tmp.<pid>" or ".old.<pid>" (kind and pid checked when listed)
      if (n->compare(0, prefix.size(), prefix) == 0 && n->rfind('.') == prefix.size() + 3) {
        remove.push_back(*n);
        n = names.erase(n);
      } else {
        ++n;
      }
    }
  }
  for (const auto& name : remove) {
    std::error_code ec;
    fs::remove_all((dir.empty() ? std::string() : dir + "/") + name, ec);
  }
}

std::string temp_name_for(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  remove_stale_temporaries(slash == std::string::npos ? "" : path.substr(0, slash), base);
  return dir + "." + base + ".tmp." + std::to_string(::getpid());
}

// Where `path` really leads: a symlink (chain) is followed to its final target, so the rename
// replaces the target and the link stays a link. A dangling link leads to the name it holds.
std::string resolve_links(const std::string& path) {
  std::string p = path;
  for (int hops = 0; hops < 40; ++hops) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::string target(4096, '\0');
    const ssize_t n = ::readlink(p.c_str(), target.data(), target.size() - 1);
    if (n < 0) return p;
    target.resize(static_cast<std::size_t>(n));
    if (target.empty() || target[0] != '/') {
      const auto slash = p.rfind('/');
      if (slash != std::string::npos) target = p.substr(0, slash + 1) + target;
    }
    p = target;
  }
  throw Error(at(path, "too many levels of symbolic links"));
}
}  // namespace

// --- temporary files and folders removed when a signal ends the process ---
namespace {
constexpr int kSlots = 64;
constexpr std::size_t kPathMax = 4096;
// 0 free, 1 being filled or emptied, 2 a file, 3 a folder. The handler reads only slots in state 2/3.
std::atomic<int> g_state[kSlots];
char g_path[kSlots][kPathMax];
std::atomic<bool> g_handlers_installed{false};
// Graceful stop (long jobs): the first SIGINT/SIGTERM/SIGHUP is only recorded; the next one ends the
// process as usual.
std::atomic<bool> g_graceful{false};
std::atomic<int> g_stop_signal{0};

void remove_tree_in_handler(const char* path) {
  // Best effort with calls that are safe enough here (opendir/readdir allocate on some libcs, but
  // the process is about to end). Temporary folders are flat: head and checkpoint files.
  if (DIR* d = ::opendir(path)) {
    char child[kPathMax];
    while (struct dirent* e = ::readdir(d)) {
      if (std::strcmp(e->d_name, ".") == 0 || std::strcmp(e->d_name, "..") == 0) continue;
      const std::size_t a = std::strlen(path), b = std::strlen(e->d_name);
      if (a + 1 + b + 1 > kPathMax) continue;
      std::memcpy(child, path, a);
      child[a] = '/';
      std::memcpy(child + a + 1, e->d_name, b + 1);
      if (::unlink(child) != 0) remove_tree_in_handler(child);
    }
    ::closedir(d);
  }
  ::rmdir(path);
}

extern "C" void cx_remove_temporaries_and_die(int sig) {
  if (g_graceful.load()) {
    int none = 0;
    if (g_stop_signal.compare_exchange_strong(none, sig)) return;
  }
  for (int i = 0; i < kSlots; ++i) {
    const int st = g_state[i].load();
    if (st == 2) ::unlink(g_path[i]);
    if (st == 3) remove_tree_in_handler(g_path[i]);
  }
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

void install_handlers() {
  if (g_handlers_installed.exchange(true)) return;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    struct sigaction old {};
    ::sigaction(sig, nullptr, &old);
    if (old.sa_handler == SIG_IGN) continue;  // nohup: keep ignoring
    struct sigaction sa {};
    sa.sa_handler = cx_remove_temporaries_and_die;
    sigemptyset(&sa.sa_mask);
    ::sigaction(sig, &sa, nullptr);
  }
}
}  // namespace

void enable_graceful_stop() {
  g_graceful.store(true);
  install_handlers();
}

int stop_requested() { return g_stop_signal.load(); }

int register_temporary(const std::string& path, bool folder) {
  install_handlers();
  if (path.size() >= kPathMax) return -1;
  for (int i = 0; i < kSlots; ++i) {
    int expected = 0;
    if (g_state[i].compare_exchange_strong(expected, 1)) {
      std::memcpy(g_path[i], path.c_str(), path.size() + 1);
      g_state[i].store(folder ? 3 : 2);
      return i;
    }
  }
  return -1;  // more than 64 at once: still removed on errors, not on signals
}

void unregister_temporary(int slot) {
  if (slot >= 0 && slot < kSlots) g_state[slot].store(0);
}

OutputFile::OutputFile(std::string path, bool binary) : path_(std::move(path)) {
  if (path_.empty() || path_ == "-") {
    path_ = "-";
    is_stdout_ = true;
    file_ = stdout;
    return;
  }
  const std::string target = resolve_links(path_);
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw Error(at(path_, "is a folder"));
    if (!S_ISREG(st.st_mode)) {
      // A device, FIFO or socket (/dev/null, /dev/stdout, a named pipe): written in place, never replaced.
      file_ = std::fopen(target.c_str(), binary ? "wb" : "w");
      if (!file_) throw Error(at(path_, "cannot open: " + errno_text()));
      direct_ = true;
      return;
    }
  }
  final_ = target;
  temp_ = temp_name_for(target);
  slot_ = register_temporary(temp_, false);
  file_ = std::fopen(temp_.c_str(), binary ? "wb" : "w");
  if (!file_) {
    unregister_temporary(slot_);
    throw Error(at(path_, "cannot create: " + errno_text()));
  }
}

OutputFile::~OutputFile() {
  if (is_stdout_ || committed_) return;
  if (file_) std::fclose(file_);
  if (!direct_) {
    ::unlink(temp_.c_str());
    unregister_temporary(slot_);
  }
}

void OutputFile::write(const void* data, std::size_t size) {
  if (size == 0) return;
  if (std::fwrite(data, 1, size, file_) != size)
    throw Error(at(is_stdout_ ? "standard output" : path_, "write error: " + errno_text()));
}

void OutputFile::commit() {
  if (committed_) return;
  if (is_stdout_) {
    if (std::fflush(stdout) != 0) throw Error("standard output: write error: " + errno_text());
    committed_ = true;
    return;
  }
  if (std::fflush(file_) != 0 || std::ferror(file_)) throw Error(at(path_, "write error: " + errno_text()));
  if (!direct_) ::fsync(fileno(file_));
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    throw Error(at(path_, "write error: " + errno_text()));
  }
  file_ = nullptr;
  if (direct_) {
    committed_ = true;
    return;
  }
  if (std::rename(temp_.c_str(), final_.c_str()) != 0) throw Error(at(path_, "cannot rename into place: " + errno_text()));
  unregister_temporary(slot_);
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  OutputFile out(path);
  out.write(bytes);
  out.commit();
}

void write_folder_atomic(const std::string& target, const std::function<void(const std::string& temp)>& fill) {
  fs::path t(target);
  while (!t.empty() && !t.has_filename()) t = t.parent_path();  // "head/" -> "head"
  if (t.empty()) throw Error(at(target, "not a folder name"));
  const std::string pid = std::to_string(::getpid());
  fs::path temp = t.parent_path() / ("." + t.filename().string() + ".tmp." + pid);
  fs::path aside = t.parent_path() / ("." + t.filename().string() + ".old." + pid);
  remove_stale_temporaries(t.parent_path().string(), t.filename().string());
  std::error_code ec;
  fs::remove_all(temp, ec);
  fs::create_directories(temp, ec);
  if (ec) throw Error(at(temp.string(), "cannot create folder: " + ec.message()));
  struct Registered {
    int slot;
    ~Registered() { unregister_temporary(slot); }
  } registered{register_temporary(temp.string(), true)};
  try {
    fill(temp.string());
  } catch (...) {
    fs::remove_all(temp, ec);
    throw;
  }
  const bool existed = fs::exists(t, ec);
  if (existed && !fs::is_directory(t, ec)) {
    fs::remove_all(temp, ec);
    throw Error(at(t.string(), "exists and is not a folder"));
  }
  if (existed) {
    // Swap the new folder in with one atomic exchange (Linux renameat2): at every moment the
    // target is the old folder or the new one, so a SIGKILL here cannot lose the last complete
    // checkpoint. Where the file system cannot exchange, the old folder is moved aside first.
    if (::renameat2(AT_FDCWD, temp.c_str(), AT_FDCWD, t.c_str(), RENAME_EXCHANGE) == 0) {
      fs::remove_all(temp, ec);  // now the old folder
      return;
    }
    fs::remove_all(aside, ec);
    fs::rename(t, aside, ec);
    if (ec) {
      fs::remove_all(temp, ec);
      throw Error(at(t.string(), "cannot move the old folder aside: " + ec.message()));
    }
  }
  fs::rename(temp, t, ec);
  if (ec) {
    std::error_code ec2;
    if (existed) fs::rename(aside, t, ec2);
    fs::remove_all(temp, ec2);
    throw Error(at(t.string(), "cannot rename into place: " + ec.message()));
  }
  if (existed) fs::remove_all(aside, ec);
}

}  // namespace cx::cli
