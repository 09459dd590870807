#include "cx/train/distributed.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <sstream>
#include <thread>

// c10d's headers declare their process groups only under these macros, which LibTorch's CMake
// config does not set; CMakeLists.txt defines CX_WITH_GLOO / CX_WITH_NCCL on this file when the
// LibTorch found has the symbols (and Gloo's or NCCL's headers are installed).
#ifdef CX_WITH_GLOO
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef CX_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#if defined(CX_WITH_GLOO) || defined(CX_WITH_NCCL)
#define CX_WITH_C10D 1
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/process.hpp"
#include "cx/util/strings.hpp"

extern char** environ;

namespace cx::train::dist {

// --- the launcher's environment ---

namespace {

struct Var {
  const char* name;
  const char* value;  // null when unset
  bool set() const { return value != nullptr; }
};

Var var(const char* name) { return {name, std::getenv(name)}; }

[[noreturn]] void env_error(const std::string& what) { throw Error("environment: " + what); }

int whole_number(const Var& v, int min) {
  const std::string s = v.value;
  int out = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || out < min)
    env_error(std::string(v.name) + "=" + s + ": expected a whole number >= " + std::to_string(min));
  return out;
}

// All of `vars` set, or none; true when set.
bool all_or_none(std::initializer_list<Var> vars) {
  const Var* set = nullptr;
  const Var* unset = nullptr;
  for (const Var& v : vars) {
    if (v.set() && !set) set = &v;
    if (!v.set() && !unset) unset = &v;
  }
  if (set && unset) env_error(std::string(set->name) + "=" + set->value + " is set but " + unset->name + " is not");
  return set != nullptr;
}

}  // namespace

Env read_env() {
  const Var rank = var("RANK"), world = var("WORLD_SIZE"), local = var("LOCAL_RANK");
  const Var proc = var("SLURM_PROCID"), ntasks = var("SLURM_NTASKS"), localid = var("SLURM_LOCALID");
  Env env;
  const Var *r = &rank, *w = &world, *l = &local;
  if (!all_or_none({rank, world, local})) {
    if (!all_or_none({proc, ntasks, localid})) return env;
    r = &proc, w = &ntasks, l = &localid;
  }
  env.from_env = true;
  env.world_size = whole_number(*w, 1);
  env.rank = whole_number(*r, 0);
  env.local_rank = whole_number(*l, 0);
  const std::string world_text = std::string(w->name) + "=" + w->value;
  if (env.rank >= env.world_size) env_error(std::string(r->name) + "=" + r->value + " is not below " + world_text);
  if (env.local_rank >= env.world_size) env_error(std::string(l->name) + "=" + l->value + " is not below " + world_text);
  if (env.world_size == 1) return env;  // one process: nobody to meet
  const Var addr = var("MASTER_ADDR"), port = var("MASTER_PORT");
  for (const Var* v : {&addr, &port})
    if (!v->set()) env_error(world_text + " is set but " + v->name + " is not");
  env.master_addr = addr.value;
  if (env.master_addr.empty()) env_error("MASTER_ADDR=: expected a host name or address");
  const std::string p = port.value;
  int n = 0;
  const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size() || n < 1 || n > 65535)
    env_error("MASTER_PORT=" + p + ": expected a port number (1-65535)");
  env.master_port = n;
  return env;
}

torch::Device rank_device(torch::Device requested, const Env& env, std::int64_t cuda_devices) {
  if (!requested.is_cuda() || requested.has_index() || !env.from_env || env.world_size < 2) return requested;
  if (env.local_rank >= cuda_devices)
    throw Error("LOCAL_RANK " + std::to_string(env.local_rank) + " has no GPU: this machine shows " + std::to_string(cuda_devices) +
                " CUDA device" + (cuda_devices == 1 ? "" : "s") + " (start one rank per GPU, or give --device cuda:N)");
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
}

bool available(torch::DeviceType type) {
#ifdef CX_WITH_GLOO
  if (type == torch::kCPU) return true;
#endif
#ifdef CX_WITH_NCCL
  if (type == torch::kCUDA) return true;
#endif
  (void)type;
  return false;
}

// --- the group ---

namespace {

const char* device_name(torch::DeviceType type) {
  return type == torch::kCUDA ? "CUDA" : type == torch::kCPU ? "CPU" : "this device";
}

// The first line of an exception's text, without the "[file.cc:123] " Gloo and c10 put in front.
std::string detail_of(const std::exception& e) {
  std::string s = e.what();
  s = s.substr(0, s.find('\n'));
  while (!s.empty() && s[0] == '[') {
    const auto close = s.find("] ");
    if (close == std::string::npos || s.find(':') > close) break;
    s = s.substr(close + 2);
  }
  return util::trim(s);
}

// Blocks SIGPIPE in this thread while it lives, and so in every thread started meanwhile: Gloo
// writes to its sockets with writev from threads of its own, and a write to a peer that is gone would
// raise SIGPIPE, whose default action (kept by the tools for stdout) ends the process without a word.
// Blocked, the signal stays pending in that thread and the write fails with EPIPE, which Gloo reports.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~SigpipeBlocked() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t old_;
};

std::string seconds(std::chrono::milliseconds t) {
  std::ostringstream o;
  o << static_cast<double>(t.count()) / 1000.0;
  return o.str();
}

}  // namespace

struct Group::Impl {
  int rank = 0, size = 1;
  torch::DeviceType device = torch::kCPU;
  std::chrono::milliseconds timeout{0};
#ifdef CX_WITH_C10D
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
#endif
  std::thread heartbeat;
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  bool failed = false;  // a collective failed: rank 0 keeps the store up while the others probe
  std::vector<int> gone;  // the ranks whose heartbeat stood still through the last probe

  // Each rank bumps its counter 4 times a second while its process lives; a counter that stands still
  // through the probe window (6 beats) is a lost rank.
  static constexpr std::chrono::milliseconds kBeat{250};
  static constexpr std::chrono::milliseconds kProbeWindow{1500};
  static std::string alive_key(int r) { return "cx/alive/" + std::to_string(r); }
  static std::string failed_key(int r) { return "cx/failed/" + std::to_string(r); }

  std::string who() const { return "rank " + std::to_string(rank) + " of " + std::to_string(size); }

  ~Impl() {
    if (failed && rank == 0) linger();
    if (heartbeat.joinable()) {
      {
        std::lock_guard<std::mutex> lock(mu);
        stop = true;
      }
      cv.notify_all();
      heartbeat.join();
    }
#ifdef CX_WITH_C10D
    pg.reset();  // before the store: rank 0's store serves the others until its process group is gone
    store.reset();
#endif
  }

  void beat() {
#ifdef CX_WITH_C10D
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      lock.unlock();
      try {
        store->add(alive_key(rank), 1);
      } catch (const std::exception&) {
        return;  // the store's host is gone (or ended): a probe reports it
      }
      lock.lock();
      cv.wait_for(lock, kBeat, [&] { return stop; });
    }
#endif
  }

  // Rank 0's store answers the other ranks' probes: after a failure it stays up (with its heartbeat)
  // until the heartbeat of every rank that was alive at its own probe has stood still for 1 s, or for
  // at most a probe window and 1 s, so that a rank still probing is not told that rank 0 is lost.
  void linger() {
#ifdef CX_WITH_C10D
    try {
      using clock = std::chrono::steady_clock;
      const auto start = clock::now(), end = start + kProbeWindow + std::chrono::seconds(1);
      std::vector<std::int64_t> last(static_cast<std::size_t>(size), -1);
      std::vector<clock::time_point> changed(static_cast<std::size_t>(size), start);
      for (;;) {
        bool all_still = true;
        const auto now = clock::now();
        for (int r = 0; r < size; ++r) {
          if (r == rank || std::find(gone.begin(), gone.end(), r) != gone.end()) continue;
          const auto i = static_cast<std::size_t>(r);
          const std::int64_t v = store->add(alive_key(r), 0);
          if (v != last[i]) last[i] = v, changed[i] = now;
          if (now - changed[i] < std::chrono::seconds(1)) all_still = false;
        }
        if (all_still || now >= end) return;
        std::this_thread::sleep_for(kBeat);
      }
    } catch (const std::exception&) {
    }
#endif
  }

  // The ranks whose heartbeat stopped; {0} when the store (rank 0's) cannot be reached. Ranks that
  // stopped after reporting a failure of their own are left out when others stopped without one: in a
  // ring, the neighbours of a dead rank fail first and exit, and only then do the ranks beyond them.
  std::vector<int> lost_ranks() {
    std::vector<int> candidates;
#ifdef CX_WITH_C10D
    try {
      std::vector<std::int64_t> first(static_cast<std::size_t>(size));
      for (int r = 0; r < size; ++r)
        if (r != rank) {
          first[static_cast<std::size_t>(r)] = store->add(alive_key(r), 0);
          candidates.push_back(r);
        }
      const auto end = std::chrono::steady_clock::now() + kProbeWindow;
      while (!candidates.empty() && std::chrono::steady_clock::now() < end) {
        std::this_thread::sleep_for(kBeat / 2);
        std::vector<int> still;
        for (int r : candidates)
          if (store->add(alive_key(r), 0) == first[static_cast<std::size_t>(r)]) still.push_back(r);
        candidates = std::move(still);
      }
      gone = candidates;
      std::vector<int> silent;
      for (int r : candidates)
        if (!store->check({failed_key(r)})) silent.push_back(r);
      if (!silent.empty()) candidates = std::move(silent);
    } catch (const std::exception&) {
      return {0};
    }
#endif
    return candidates;
  }

  [[noreturn]] void fail(const std::string& op, const std::exception& e) {
    failed = true;
    const std::string detail = detail_of(e);
#ifdef CX_WITH_C10D
    try {
      store->set(failed_key(rank), std::vector<std::uint8_t>{1});
    } catch (const std::exception&) {
    }
    pg.reset();  // the group is broken: closing its connections now fails the peers that wait on us
#endif
    const std::vector<int> lost = lost_ranks();
    std::string msg = who() + ": ";
    if (!lost.empty()) {
      msg += lost.size() == 1 ? "lost rank " : "lost ranks ";
      for (std::size_t i = 0; i < lost.size(); ++i) msg += (i ? ", " : "") + std::to_string(lost[i]);
      msg += " during " + op;
    } else if (util::lower(detail).find("timed out") != std::string::npos) {
      msg += op + " timed out after " + seconds(timeout) + " s; no rank was lost: one is stuck or slow";
    } else {
      msg += op + " failed";
    }
    throw Error(msg + " (" + detail + ")");
  }

#ifdef CX_WITH_C10D
  void run(const std::string& op, const std::function<c10::intrusive_ptr<c10d::Work>()>& start) {
    try {
      start()->wait();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(op, e);
    }
  }
#endif

  // Gloo adds float, double, half and 8-, 32-, 64-bit integers; bfloat16 is summed in float (below).
  void check_summable(c10::ScalarType dtype) const {
    if (device != torch::kCPU) return;
    using S = c10::ScalarType;
    for (S ok : {S::Float, S::Double, S::Half, S::BFloat16, S::Char, S::Byte, S::Int, S::Long})
      if (dtype == ok) return;
    throw Error(who() + ": all-reduce of " + c10::toString(dtype) +
                " tensors: sums are taken of floating-point and 8-, 32- or 64-bit integer tensors only");
  }

#ifdef CX_WITH_C10D
  // The sums over the ranks of the contiguous `buf`: in buf itself, or in a float copy for bfloat16
  // on Gloo (which has no bfloat16 arithmetic; one rounding back at the end).
  torch::Tensor sum(torch::Tensor buf) {
    std::vector<torch::Tensor> v{device == torch::kCPU && buf.scalar_type() == torch::kBFloat16 ? buf.to(torch::kFloat) : buf};
    run("all-reduce", [&] { return pg->allreduce(v); });
    return v[0];
  }
#endif

  void check_usable() const {
#ifdef CX_WITH_C10D
    if (!pg) throw Error(who() + ": the group failed in an earlier collective");
#endif
  }

  void check_device(const torch::Tensor& t, const std::string& op) const {
    if (t.device().type() != device)
      throw Error(who() + ": " + op + " of a tensor on " + t.device().str() + " in a group for " +
                  device_name(device) + " tensors");
  }
};

std::shared_ptr<Group> Group::create(const Env& env, torch::Device device, std::chrono::milliseconds timeout,
                                     std::chrono::milliseconds join_timeout) {
  if (env.world_size < 1 || env.rank < 0 || env.rank >= env.world_size)
    throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": not a rank of the group");
  std::shared_ptr<Group> group(new Group(env.rank, env.world_size));
  if (env.world_size == 1) return group;
  const std::string who = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);
  if (!available(device.type()))
    throw Error(who + ": this build of cx has no process group for " + device_name(device.type()) +
                " tensors (Gloo for CPU, NCCL for CUDA), so it runs one process only");
  if (env.master_addr.empty() || env.master_port < 1 || env.master_port > 65535)
    throw Error(who + ": no MASTER_ADDR and MASTER_PORT to meet the other ranks at");
  if (timeout.count() <= 0 || join_timeout.count() <= 0) throw Error(who + ": timeouts must be positive");
#ifdef CX_WITH_C10D
  auto impl = std::make_unique<Impl>();
  impl->rank = env.rank;
  impl->size = env.world_size;
  impl->device = device.type();
  impl->timeout = timeout;
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  const SigpipeBlocked sigpipe_blocked;  // in the threads Gloo and the heartbeat start below
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = static_cast<std::size_t>(env.world_size);
    so.timeout = join_timeout;  // also the store's waits, used only while joining
    impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    impl->store->add(Impl::alive_key(env.rank), 1);
    // Every rank present before the process group is built, whose rendezvous waits only `timeout`.
    if (impl->store->add("cx/joined", 1) == env.world_size) impl->store->set("cx/all_joined", std::vector<std::uint8_t>{1});
    impl->store->wait({"cx/all_joined"});
    auto pg_store = c10::make_intrusive<c10d::PrefixStore>("cx/pg", impl->store);
    if (device.is_cpu()) {
#ifdef CX_WITH_GLOO
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
      const std::string& a = env.master_addr;
      if (ifname && *ifname)
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(util::split_list(ifname).at(0)));
      else if (a == "localhost" || a == "::1" || util::starts_with(a, "127."))
        opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, env.rank, env.world_size, opts);
#endif
    } else {
#ifdef CX_WITH_NCCL
      ::setenv("NCCL_BLOCKING_WAIT", "1", 0);  // a failed or timed-out collective throws from wait()
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      impl->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(pg_store, env.rank, env.world_size, opts);
#endif
    }
  } catch (const std::exception& e) {
    throw Error(who + ": cannot join the group at " + where + " (" + detail_of(e) + ")");
  }
  Impl* raw = impl.get();
  impl->heartbeat = std::thread([raw] { raw->beat(); });
  group->impl_ = std::move(impl);
#endif
  return group;
}

Group::Group(int rank, int size) : rank_(rank), size_(size) {}
Group::~Group() = default;

void Group::all_reduce_sum(torch::Tensor& t) {
  if (!impl_) return;
  impl_->check_usable();
  if (!t.defined()) throw Error(impl_->who() + ": all-reduce of an undefined tensor");
  impl_->check_device(t, "all-reduce");
  impl_->check_summable(t.scalar_type());
#ifdef CX_WITH_C10D
  torch::NoGradGuard no_grad;
  const torch::Tensor sums = impl_->sum(t.is_contiguous() ? t : t.contiguous());
  if (!sums.is_same(t)) t.copy_(sums);
#endif
}

void Group::all_reduce_sum(std::vector<torch::Tensor>& ts) {
  if (!impl_) return;
  impl_->check_usable();
  std::vector<c10::ScalarType> dtypes;
  for (const auto& t : ts)
    if (t.defined()) {
      impl_->check_device(t, "all-reduce");
      impl_->check_summable(t.scalar_type());
      if (std::find(dtypes.begin(), dtypes.end(), t.scalar_type()) == dtypes.end()) dtypes.push_back(t.scalar_type());
    }
#ifdef CX_WITH_C10D
  torch::NoGradGuard no_grad;
  for (const auto dtype : dtypes) {
    std::vector<torch::Tensor> flat;
    for (const auto& t : ts)
      if (t.defined() && t.scalar_type() == dtype) flat.push_back(t.reshape({-1}));
    const torch::Tensor sums = impl_->sum(torch::cat(flat));
    std::int64_t offset = 0;
    for (auto& t : ts)
      if (t.defined() && t.scalar_type() == dtype) {
        t.copy_(sums.narrow(0, offset, t.numel()).view(t.sizes()));
        offset += t.numel();
      }
  }
#endif
}

void Group::broadcast(torch::Tensor& t, int root) {
  if (root < 0 || root >= size_)
    throw Error("rank " + std::to_string(rank_) + " of " + std::to_string(size_) + ": broadcast from rank " +
                std::to_string(root) + ", which is not in the group");
  if (!impl_) return;
  impl_->check_usable();
  if (!t.defined()) throw Error(impl_->who() + ": broadcast of an undefined tensor");
  impl_->check_device(t, "broadcast");
#ifdef CX_WITH_C10D
  torch::NoGradGuard no_grad;
  const torch::Tensor c = t.is_contiguous() ? t : t.contiguous();
  // As bytes: exact for every dtype, including those Gloo has no arithmetic for (bfloat16, bool).
  std::vector<torch::Tensor> bytes{c.reshape({-1}).view(torch::kByte)};
  c10d::BroadcastOptions opts;
  opts.rootRank = root;
  impl_->run("broadcast", [&] { return impl_->pg->broadcast(bytes, opts); });
  if (!c.is_same(t)) t.copy_(c);
#endif
}

void Group::barrier() {
  if (!impl_) return;
  impl_->check_usable();
#ifdef CX_WITH_C10D
  impl_->run("barrier", [&] { return impl_->pg->barrier(); });
#endif
}

// --- local ranks ---

int free_local_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) throw Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(err));
  return ntohs(addr.sin_port);
}

namespace {

// The self-pipe through which run_local_ranks' signal handlers wake its loop. Process-wide because
// signal handlers are; set only while run_local_ranks runs (one call at a time).
int g_wake_fd = -1;

void on_signal(int sig) {
  const int saved = errno;
  const unsigned char b = static_cast<unsigned char>(sig);
  if (g_wake_fd >= 0) (void)!::write(g_wake_fd, &b, 1);
  errno = saved;
}

// Installs the handlers for the forwarded signals and SIGCHLD, restores the previous ones on exit. A
// forwarded signal this process ignores (nohup's SIGHUP) stays ignored, here and in the ranks.
class SignalPipe {
 public:
  SignalPipe() {
    if (g_wake_fd >= 0) throw Error("run_local_ranks: already running in this process");
    if (::pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0) throw Error(std::string("cannot make a pipe: ") + std::strerror(errno));
    g_wake_fd = fds_[1];
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    for (std::size_t i = 0; i < std::size(kSignals); ++i) {
      ::sigaction(kSignals[i], nullptr, &old_[i]);
      if (kSignals[i] == SIGCHLD || old_[i].sa_handler != SIG_IGN) ::sigaction(kSignals[i], &sa, nullptr);
    }
  }
  ~SignalPipe() {
    restore();
    g_wake_fd = -1;
    ::close(fds_[0]);
    ::close(fds_[1]);
  }
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;
  int read_fd() const { return fds_[0]; }
  // The dispositions found on entry (async-signal-safe: a child calls it before exec, which turns
  // handlers into the default and keeps ignored signals ignored).
  void restore() const {
    for (std::size_t i = 0; i < std::size(kSignals); ++i) ::sigaction(kSignals[i], &old_[i], nullptr);
  }

 private:
  static constexpr int kSignals[] = {SIGINT, SIGTERM, SIGHUP, SIGCHLD};
  int fds_[2] = {-1, -1};
  struct sigaction old_[std::size(kSignals)] {};
};

bool is_launcher_var(const char* entry) {
  static const char* const names[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"};
  const char* eq = std::strchr(entry, '=');
  const std::size_t n = eq ? static_cast<std::size_t>(eq - entry) : std::strlen(entry);
  for (const char* name : names)
    if (std::strlen(name) == n && std::strncmp(entry, name, n) == 0) return true;
  return false;
}

std::string how_it_ended(int rank, int status, int* code) {
  const std::string who = "rank " + std::to_string(rank);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    *code = 128 + sig;
    const char* name = ::strsignal(sig);
    return who + " was killed by signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  *code = WEXITSTATUS(status);
  return who + " exited with status " + std::to_string(*code);
}

}  // namespace

int run_local_ranks(int nproc, const std::vector<std::string>& argv, const LocalRunOptions& options) {
  if (nproc < 1) throw UsageError("--nproc: expected at least 1 process, got " + std::to_string(nproc));
  if (argv.empty() || argv[0].empty()) throw UsageError("--nproc: no program to run");
  int result = 0;
  std::string message;
  auto finish = [&] {
    if (!message.empty()) {
      if (options.message) *options.message = message;
      else log::error(message);
    }
    return result;
  };
  const std::string program = argv[0].find('/') == std::string::npos ? cli::find_on_path(argv[0]) : argv[0];
  if (program.empty()) {
    result = 127;
    message = "rank 0: cannot run " + argv[0] + ": not found on PATH";
    return finish();
  }
  const int port = free_local_port();

  // Everything the children get is built before the first fork: between fork and exec a child of a
  // threaded process may only make async-signal-safe calls.
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> inherited;
  for (char** e = environ; *e; ++e)
    if (!is_launcher_var(*e)) inherited.emplace_back(*e);
  std::vector<std::vector<std::string>> env_strings(static_cast<std::size_t>(nproc));
  std::vector<std::vector<char*>> envs(static_cast<std::size_t>(nproc));
  for (int r = 0; r < nproc; ++r) {
    auto& s = env_strings[static_cast<std::size_t>(r)];
    s = inherited;
    s.push_back("RANK=" + std::to_string(r));
    s.push_back("WORLD_SIZE=" + std::to_string(nproc));
    s.push_back("LOCAL_RANK=" + std::to_string(r));
    s.push_back("LOCAL_WORLD_SIZE=" + std::to_string(nproc));
    s.push_back("MASTER_ADDR=127.0.0.1");
    s.push_back("MASTER_PORT=" + std::to_string(port));
    for (auto& e : s) envs[static_cast<std::size_t>(r)].push_back(e.data());
    envs[static_cast<std::size_t>(r)].push_back(nullptr);
  }

  SignalPipe signals;
  struct Child {
    pid_t pid = -1;
    bool live = false;
  };
  std::vector<Child> children(static_cast<std::size_t>(nproc));
  bool stopping = false, killed = false, interrupted = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  auto signal_live = [&](int sig) {
    for (const auto& c : children)
      if (c.live) ::kill(c.pid, sig);
  };
  auto failed = [&](int code, std::string what) {
    if (result == 0) {
      result = code;
      message = std::move(what);
    }
    if (!stopping && !interrupted) {
      stopping = true;
      signal_live(SIGTERM);
      deadline = std::chrono::steady_clock::now() + options.grace;
    }
  };

  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &old);  // no handler of ours runs in a child before exec
  const pid_t parent = ::getpid();
  pid_t pgid = 0;
  for (int r = 0; r < nproc; ++r) {
    int status_pipe[2];
    if (::pipe2(status_pipe, O_CLOEXEC) != 0) {
      failed(1, std::string("rank ") + std::to_string(r) + ": cannot make a pipe: " + std::strerror(errno));
      break;
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setpgid(0, pgid);  // one group for the ranks: a terminal's ^C reaches us alone, and we forward it
      signals.restore();
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(128 + SIGTERM);
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      ::execve(program.c_str(), args.data(), envs[static_cast<std::size_t>(r)].data());
      const int err = errno;
      (void)!::write(status_pipe[1], &err, sizeof err);
      ::_exit(127);
    }
    ::close(status_pipe[1]);
    if (pid < 0) {
      ::close(status_pipe[0]);
      failed(1, "rank " + std::to_string(r) + ": cannot start a process: " + std::strerror(errno));
      break;
    }
    ::setpgid(pid, pgid == 0 ? pid : pgid);  // also here: whichever of the two runs first
    if (pgid == 0) pgid = pid;
    children[static_cast<std::size_t>(r)] = {pid, true};
    int err = 0;
    ssize_t got;
    while ((got = ::read(status_pipe[0], &err, sizeof err)) < 0 && errno == EINTR) {
    }
    ::close(status_pipe[0]);
    if (got == static_cast<ssize_t>(sizeof err)) {  // exec failed; the child exits 127
      int status = 0;
      ::waitpid(pid, &status, 0);
      children[static_cast<std::size_t>(r)].live = false;
      failed(127, "rank " + std::to_string(r) + ": cannot run " + argv[0] + ": " + std::strerror(err));
      break;
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  auto live_count = [&] {
    return std::count_if(children.begin(), children.end(), [](const Child& c) { return c.live; });
  };
  while (live_count() > 0) {
    int wait_ms = 200;  // a safety net: SIGCHLD wakes the loop at once
    if (stopping && !killed) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::clamp<std::int64_t>(left.count(), 0, wait_ms));
    }
    pollfd pfd{signals.read_fd(), POLLIN, 0};
    ::poll(&pfd, 1, wait_ms);
    unsigned char sigs[64];
    ssize_t n;
    while ((n = ::read(signals.read_fd(), sigs, sizeof sigs)) > 0)
      for (ssize_t i = 0; i < n; ++i)
        if (sigs[i] != SIGCHLD) {
          interrupted = true;
          signal_live(sigs[i]);
        }
    for (std::size_t r = 0; r < children.size(); ++r) {
      auto& c = children[r];
      if (!c.live) continue;
      int status = 0;
      const pid_t done = ::waitpid(c.pid, &status, WNOHANG);
      if (done == 0 || (done < 0 && errno == EINTR)) continue;
      c.live = false;
      if (done < 0) {
        failed(1, "rank " + std::to_string(r) + ": lost track of its process: " + std::strerror(errno));
        continue;
      }
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) continue;
      int code = 1;
      std::string what = how_it_ended(static_cast<int>(r), status, &code);
      failed(code == 0 ? 1 : code, std::move(what));
    }
    if (stopping && !killed && std::chrono::steady_clock::now() >= deadline) {
      killed = true;
      signal_live(SIGKILL);
    }
  }
  return finish();
}

}  // namespace cx::train::dist
