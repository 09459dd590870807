// cx::train::dist: the launcher's environment, process groups on loopback (ranks are forked
// processes: a rank that dies must really close its connections), and the local rank spawner.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "cx/cli/error.hpp"
#include "cx/train/distributed.hpp"
#include "test_support.hpp"

namespace dist = cx::train::dist;
using namespace std::chrono_literals;

namespace {

using Vars = std::map<std::string, std::string>;

// The launcher variables as a test sets them; every other one of them unset; restored afterwards.
class ScopedEnv {
 public:
  explicit ScopedEnv(const std::map<std::string, std::string>& vars) {
    for (const char* name : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID",
                             "SLURM_NTASKS", "SLURM_LOCALID"}) {
      const char* old = std::getenv(name);
      saved_[name] = old ? std::optional<std::string>(old) : std::nullopt;
      ::unsetenv(name);
    }
    for (const auto& [k, v] : vars) ::setenv(k.c_str(), v.c_str(), 1);
  }
  ~ScopedEnv() {
    for (const auto& [k, v] : saved_) {
      if (v) ::setenv(k.c_str(), v->c_str(), 1);
      else ::unsetenv(k.c_str());
    }
  }

 private:
  std::map<std::string, std::optional<std::string>> saved_;
};

std::string env_error(const std::map<std::string, std::string>& vars) {
  ScopedEnv env(vars);
  try {
    dist::read_env();
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "(no error)";
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

struct RankEnd {
  int status = 0;    // waitpid's
  std::string text;  // what the rank's body returned, or the message of what it threw
};

// Runs body(rank, env) in `n` forked processes that meet on a free loopback port; returns how each
// ended. A rank's body returns its report (the test checks it) or throws; it may _exit to play a
// rank that dies. An alarm ends a rank that hangs, so a hang fails the test instead of stalling it.
std::vector<RankEnd> fork_ranks(int n, const std::function<std::string(const dist::Env&)>& body) {
  const int port = dist::free_local_port();
  std::vector<pid_t> pids;
  std::vector<int> pipes;
  for (int r = 0; r < n; ++r) {
    int p[2];
    if (::pipe(p) != 0) throw std::runtime_error("pipe");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(p[0]);
      ::alarm(30);
      dist::Env env;
      env.rank = r, env.world_size = n, env.local_rank = r, env.master_addr = "127.0.0.1", env.master_port = port;
      std::string text;
      int code = 0;
      try {
        text = body(env);
      } catch (const std::exception& e) {
        text = e.what();
        code = 1;
      }
      (void)!::write(p[1], text.data(), text.size());
      ::_exit(code);
    }
    ::close(p[1]);
    pids.push_back(pid);
    pipes.push_back(p[0]);
  }
  std::vector<RankEnd> ends(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) {
    char buf[4096];
    ssize_t got;
    while ((got = ::read(pipes[r], buf, sizeof buf)) > 0) ends[r].text.append(buf, static_cast<std::size_t>(got));
    ::close(pipes[r]);
    ::waitpid(pids[r], &ends[r].status, 0);
  }
  return ends;
}

bool exited_with(int status, int code) { return WIFEXITED(status) && WEXITSTATUS(status) == code; }

std::string describe(int status) {
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "exited with status " + std::to_string(WEXITSTATUS(status));
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

// A rank's report of a failed collective: how long the call took, and the error.
std::string timed_error(std::chrono::steady_clock::time_point t0, const cx::Error& e) {
  return std::to_string(seconds_since(t0)) + "\n" + e.what();
}
struct TimedError {
  double seconds = -1;
  std::string message;
};
TimedError parse_timed(const std::string& text) {
  const auto nl = text.find('\n');
  if (nl == std::string::npos) return {-1, text};
  return {std::stod(text.substr(0, nl)), text.substr(nl + 1)};
}

}  // namespace

// --- the environment ---

TEST(DistEnv, NoLauncherIsOneProcess) {
  ScopedEnv env(Vars{{"MASTER_ADDR", "node0"}});  // alone it says nothing
  const dist::Env e = dist::read_env();
  EXPECT_EQ(e.rank, 0);
  EXPECT_EQ(e.world_size, 1);
  EXPECT_EQ(e.local_rank, 0);
  EXPECT_FALSE(e.from_env);
}

TEST(DistEnv, Torchrun) {
  ScopedEnv env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node0"},
                 {"MASTER_PORT", "29500"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}});
  const dist::Env e = dist::read_env();  // torchrun's variables win over SLURM's
  EXPECT_EQ(e.rank, 5);
  EXPECT_EQ(e.world_size, 8);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "node0");
  EXPECT_EQ(e.master_port, 29500);
  EXPECT_TRUE(e.from_env);
}

TEST(DistEnv, Slurm) {
  ScopedEnv env({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}, {"SLURM_LOCALID", "1"}, {"MASTER_ADDR", "10.0.0.7"},
                 {"MASTER_PORT", "1234"}});
  const dist::Env e = dist::read_env();
  EXPECT_EQ(e.rank, 3);
  EXPECT_EQ(e.world_size, 4);
  EXPECT_EQ(e.local_rank, 1);
  EXPECT_EQ(e.master_addr, "10.0.0.7");
  EXPECT_EQ(e.master_port, 1234);
  EXPECT_TRUE(e.from_env);
}

TEST(DistEnv, OneRankNeedsNoMaster) {
  ScopedEnv env({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}, {"SLURM_LOCALID", "0"}});
  const dist::Env e = dist::read_env();
  EXPECT_EQ(e.world_size, 1);
  EXPECT_TRUE(e.from_env);
  EXPECT_EQ(e.master_addr, "");
}

// `--device cuda` on a launcher's rank is the rank's own GPU; explicit indices, the CPU and one
// process keep what was asked; a local rank past the GPUs this machine shows is named.
TEST(DistEnv, RankDeviceIsTheLocalRanksGpu) {
  dist::Env e;
  e.from_env = true;
  e.world_size = 8;
  e.rank = 5;
  e.local_rank = 1;
  const torch::Device cuda(torch::kCUDA), cpu(torch::kCPU);
  EXPECT_EQ(dist::rank_device(cuda, e, 4), torch::Device(torch::kCUDA, 1));
  EXPECT_EQ(dist::rank_device(torch::Device(torch::kCUDA, 3), e, 4), torch::Device(torch::kCUDA, 3));
  EXPECT_EQ(dist::rank_device(cpu, e, 4), cpu);
  dist::Env alone;  // no launcher: whatever cuda means to LibTorch (device 0)
  EXPECT_EQ(dist::rank_device(cuda, alone, 4), cuda);
  dist::Env single = e;  // a launcher with one rank: nothing to spread
  single.world_size = 1;
  single.rank = single.local_rank = 0;
  EXPECT_EQ(dist::rank_device(cuda, single, 1), cuda);
  e.local_rank = 2;
  try {
    dist::rank_device(cuda, e, 2);
    FAIL() << "a local rank without a GPU was accepted";
  } catch (const cx::Error& err) {
    EXPECT_STREQ(err.what(), "LOCAL_RANK 2 has no GPU: this machine shows 2 CUDA devices (start one rank per GPU, or give --device cuda:N)");
  }
  EXPECT_EQ(dist::rank_device(cpu, e, 0), cpu);  // CPU ranks need no GPU
}

TEST(DistEnv, PartialOrInvalidValuesNameTheVariable) {
  const std::map<std::string, std::string> ok = {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"},
                                                 {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "29500"}};
  auto with = [&](const std::map<std::string, std::string>& change, const std::vector<std::string>& drop = {}) {
    auto vars = ok;
    for (const auto& [k, v] : change) vars[k] = v;
    for (const auto& k : drop) vars.erase(k);
    return env_error(vars);
  };
  EXPECT_EQ(with({{"RANK", "abc"}}), "environment: RANK=abc: expected a whole number >= 0");
  EXPECT_EQ(with({{"RANK", "-1"}}), "environment: RANK=-1: expected a whole number >= 0");
  EXPECT_EQ(with({{"RANK", "1 "}}), "environment: RANK=1 : expected a whole number >= 0");
  EXPECT_EQ(with({{"WORLD_SIZE", "0"}}), "environment: WORLD_SIZE=0: expected a whole number >= 1");
  EXPECT_EQ(with({{"LOCAL_RANK", ""}}), "environment: LOCAL_RANK=: expected a whole number >= 0");
  EXPECT_EQ(with({{"RANK", "2"}}), "environment: RANK=2 is not below WORLD_SIZE=2");
  EXPECT_EQ(with({{"LOCAL_RANK", "9"}}), "environment: LOCAL_RANK=9 is not below WORLD_SIZE=2");
  EXPECT_EQ(with({}, {"WORLD_SIZE"}), "environment: RANK=1 is set but WORLD_SIZE is not");
  EXPECT_EQ(with({}, {"LOCAL_RANK"}), "environment: RANK=1 is set but LOCAL_RANK is not");
  EXPECT_EQ(with({}, {"RANK"}), "environment: WORLD_SIZE=2 is set but RANK is not");
  EXPECT_EQ(with({}, {"MASTER_ADDR"}), "environment: WORLD_SIZE=2 is set but MASTER_ADDR is not");
  EXPECT_EQ(with({}, {"MASTER_PORT"}), "environment: WORLD_SIZE=2 is set but MASTER_PORT is not");
  EXPECT_EQ(with({{"MASTER_PORT", "70000"}}), "environment: MASTER_PORT=70000: expected a port number (1-65535)");
  EXPECT_EQ(with({{"MASTER_PORT", "http"}}), "environment: MASTER_PORT=http: expected a port number (1-65535)");
  EXPECT_EQ(with({{"MASTER_ADDR", ""}}), "environment: MASTER_ADDR=: expected a host name or address");
  EXPECT_EQ(env_error({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}}),
            "environment: SLURM_PROCID=0 is set but SLURM_LOCALID is not");
  EXPECT_EQ(env_error({{"SLURM_PROCID", "x1"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}}),
            "environment: SLURM_PROCID=x1: expected a whole number >= 0");
  EXPECT_EQ(env_error({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_LOCALID", "0"}, {"MASTER_PORT", "1"}}),
            "environment: SLURM_NTASKS=2 is set but MASTER_ADDR is not");
}

// --- groups ---

TEST(DistGroup, OneRankIsANoOp) {
  auto g = dist::Group::create(dist::Env{}, torch::kCPU);
  EXPECT_EQ(g->rank(), 0);
  EXPECT_EQ(g->size(), 1);
  torch::Tensor t = torch::arange(4, torch::kFloat);
  g->all_reduce_sum(t);
  std::vector<torch::Tensor> ts{t, torch::ones({2}, torch::kDouble)};
  g->all_reduce_sum(ts);
  g->broadcast(t);
  g->barrier();
  EXPECT_TRUE(torch::equal(t, torch::arange(4, torch::kFloat)));
  EXPECT_TRUE(torch::equal(ts[1], torch::ones({2}, torch::kDouble)));
  EXPECT_THROW(g->broadcast(t, 1), cx::Error);
}

TEST(DistGroup, TwoRanksSumAndBroadcast) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  const auto ends = fork_ranks(2, [](const dist::Env& env) -> std::string {
    auto g = dist::Group::create(env, torch::kCPU, 20s);
    const double r = env.rank;
    std::string report;
    auto expect = [&](const char* what, const torch::Tensor& got, const torch::Tensor& want) {
      if (!torch::equal(got, want)) {
        std::ostringstream o;
        o << what << ": got " << got << " want " << want << "\n";
        report += o.str();
      }
    };
    torch::Tensor a = torch::full({3}, r + 1);
    g->all_reduce_sum(a);
    expect("tensor", a, torch::full({3}, 3.0));
    torch::Tensor base = torch::arange(6, torch::kFloat).reshape({2, 3}) * (r + 1);
    torch::Tensor b = base.t();  // not contiguous: reduced through a copy, written back
    g->all_reduce_sum(b);
    expect("transposed", base, torch::arange(6, torch::kFloat).reshape({2, 3}) * 3);
    std::vector<torch::Tensor> ts{torch::full({2, 2}, r + 1), torch::full({3}, 10 * (r + 1), torch::kDouble),
                                  torch::Tensor(), torch::full({5}, r), torch::full({2}, r + 7, torch::kLong),
                                  torch::full({3}, 0.5 * (r + 1), torch::kBFloat16)};
    g->all_reduce_sum(ts);
    expect("float [2,2]", ts[0], torch::full({2, 2}, 3.0));
    expect("double", ts[1], torch::full({3}, 30.0, torch::kDouble));
    expect("float [5]", ts[3], torch::full({5}, 1.0));
    expect("int64", ts[4], torch::full({2}, 15, torch::kLong));
    expect("bfloat16", ts[5], torch::full({3}, 1.5, torch::kBFloat16));  // exact in bfloat16
    if (ts[2].defined()) report += "the undefined tensor got defined\n";
    torch::Tensor c = torch::full({4}, env.rank == 1 ? 42.0 : -1.0);
    g->broadcast(c, 1);
    expect("broadcast", c, torch::full({4}, 42.0));
    torch::Tensor h = env.rank == 0 ? torch::tensor({1.0, -2.5, 3.0e-3}, torch::kBFloat16) : torch::zeros({3}, torch::kBFloat16);
    torch::Tensor flags = torch::tensor({env.rank == 0, true});
    g->broadcast(h);
    g->broadcast(flags);
    expect("broadcast bfloat16", h, torch::tensor({1.0, -2.5, 3.0e-3}, torch::kBFloat16));
    expect("broadcast bool", flags, torch::tensor({true, true}));
    torch::Tensor bad = torch::zeros({2}, torch::kBool);
    try {
      g->all_reduce_sum(bad);
      report += "summed bool tensors\n";
    } catch (const cx::Error& e) {
      if (std::string(e.what()) != "rank " + std::to_string(env.rank) + " of 2: all-reduce of Bool tensors: sums are taken "
                                   "of floating-point and 8-, 32- or 64-bit integer tensors only")
        report += std::string("bool: ") + e.what() + "\n";
    }
    g->barrier();
    return report.empty() ? "ok" : report;
  });
  for (int r = 0; r < 2; ++r) {
    EXPECT_TRUE(exited_with(ends[r].status, 0)) << "rank " << r << ": " << ends[r].text;
    EXPECT_EQ(ends[r].text, "ok") << "rank " << r;
  }
}

// A rank that exits mid-loop: the other's next all-reduce fails at once (its connection closes) and
// the heartbeat probe (1.5 s) names the rank. 20 s leaves room for a loaded CI machine.
TEST(DistGroup, LostRankEndsTheOtherQuickly) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  const auto ends = fork_ranks(2, [](const dist::Env& env) -> std::string {
    auto g = dist::Group::create(env, torch::kCPU, 60s);
    for (int step = 0; step < 20; ++step) {
      if (env.rank == 1 && step == 3) ::_exit(3);
      torch::Tensor t = torch::ones({1000});
      const auto t0 = std::chrono::steady_clock::now();
      try {
        g->all_reduce_sum(t);
      } catch (const cx::Error& e) {
        try {
          g->all_reduce_sum(t);  // a broken group refuses at once
        } catch (const cx::Error& again) {
          if (std::string(again.what()) != "rank 0 of 2: the group failed in an earlier collective")
            return std::string("again: ") + again.what();
        }
        return timed_error(t0, e);
      }
    }
    return "no error";
  });
  EXPECT_TRUE(exited_with(ends[1].status, 3));
  ASSERT_TRUE(exited_with(ends[0].status, 0)) << ends[0].text;
  const TimedError got = parse_timed(ends[0].text);
  EXPECT_GE(got.seconds, 0.0) << got.message;
  EXPECT_LT(got.seconds, 20.0);
  EXPECT_TRUE(starts_with(got.message, "rank 0 of 2: lost rank 1 during all-reduce (")) << got.message;
}

// Four ranks, rank 2 dies: whichever survivors fail first (its neighbours) and whichever fail only
// when those exit, each names rank 2 alone.
TEST(DistGroup, CascadeNamesTheRankThatDied) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  const auto t0 = std::chrono::steady_clock::now();
  const auto ends = fork_ranks(4, [](const dist::Env& env) -> std::string {
    auto g = dist::Group::create(env, torch::kCPU, 60s);
    for (int step = 0; step < 20; ++step) {
      if (env.rank == 2 && step == 2) ::_exit(3);
      torch::Tensor t = torch::ones({1000});
      try {
        g->all_reduce_sum(t);
      } catch (const cx::Error& e) {
        return e.what();
      }
    }
    return "no error";
  });
  EXPECT_TRUE(exited_with(ends[2].status, 3));
  for (int r : {0, 1, 3}) {
    EXPECT_TRUE(exited_with(ends[r].status, 0)) << describe(ends[r].status) << " " << ends[r].text;
    EXPECT_TRUE(starts_with(ends[r].text, "rank " + std::to_string(r) + " of 4: lost rank 2 during all-reduce ("))
        << ends[r].text;
  }
  EXPECT_LT(seconds_since(t0), 20.0);
}

// Three ranks, rank 1 dies; rank 2 reaches the failed all-reduce 1 s after rank 0 and so still probes
// when rank 0 is done: rank 0's store must stay up for it, or rank 2 would blame rank 0.
TEST(DistGroup, StoreOutlivesTheOthersProbes) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  const auto ends = fork_ranks(3, [](const dist::Env& env) -> std::string {
    auto g = dist::Group::create(env, torch::kCPU, 60s);
    for (int step = 0; step < 20; ++step) {
      if (env.rank == 1 && step == 2) ::_exit(3);
      if (env.rank == 2 && step == 2) std::this_thread::sleep_for(1s);
      torch::Tensor t = torch::ones({100});
      try {
        g->all_reduce_sum(t);
      } catch (const cx::Error& e) {
        return e.what();
      }
    }
    return "no error";
  });
  EXPECT_TRUE(exited_with(ends[1].status, 3));
  for (int r : {0, 2}) {
    EXPECT_TRUE(exited_with(ends[r].status, 0)) << describe(ends[r].status) << " " << ends[r].text;
    EXPECT_TRUE(starts_with(ends[r].text, "rank " + std::to_string(r) + " of 3: lost rank 1 during all-reduce ("))
        << ends[r].text;
  }
}

// Rank 0 hosts the store: when it dies, the others cannot reach the store and name rank 0 at once.
TEST(DistGroup, LostStoreHostIsNamed) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  const auto ends = fork_ranks(2, [](const dist::Env& env) -> std::string {
    auto g = dist::Group::create(env, torch::kCPU, 60s);
    for (int step = 0; step < 20; ++step) {
      if (env.rank == 0 && step == 2) ::_exit(4);
      torch::Tensor t = torch::ones({10});
      const auto t0 = std::chrono::steady_clock::now();
      try {
        g->broadcast(t);
      } catch (const cx::Error& e) {
        return timed_error(t0, e);
      }
    }
    return "no error";
  });
  EXPECT_TRUE(exited_with(ends[0].status, 4));
  ASSERT_TRUE(exited_with(ends[1].status, 0)) << ends[1].text;
  const TimedError got = parse_timed(ends[1].text);
  EXPECT_GE(got.seconds, 0.0) << got.message;
  EXPECT_LT(got.seconds, 20.0);
  EXPECT_TRUE(starts_with(got.message, "rank 1 of 2: lost rank 0 during broadcast (")) << got.message;
}

// A rank that lives but never joins the collective: the timeout ends it, and the probe finds nobody lost.
TEST(DistGroup, StuckRankTimesOut) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  const auto ends = fork_ranks(2, [](const dist::Env& env) -> std::string {
    auto g = dist::Group::create(env, torch::kCPU, 1s, 20s);
    if (env.rank == 1) {
      std::this_thread::sleep_for(3s);
      return "slept";
    }
    torch::Tensor t = torch::ones({10});
    const auto t0 = std::chrono::steady_clock::now();
    try {
      g->all_reduce_sum(t);
    } catch (const cx::Error& e) {
      return timed_error(t0, e);
    }
    return "no error";
  });
  ASSERT_TRUE(exited_with(ends[0].status, 0)) << ends[0].text;
  const TimedError got = parse_timed(ends[0].text);
  EXPECT_GE(got.seconds, 0.0) << got.message;
  EXPECT_LT(got.seconds, 3.0);  // 1 s timeout, then the probe sees rank 1 beat (while it sleeps 3 s)
  EXPECT_TRUE(starts_with(got.message, "rank 0 of 2: all-reduce timed out after 1 s; no rank was lost: "
                                       "one is stuck or slow (")) << got.message;
}

TEST(DistGroup, NobodyToJoinTimesOut) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  dist::Env env;
  env.rank = 1, env.world_size = 2, env.master_addr = "127.0.0.1", env.master_port = dist::free_local_port();
  const auto t0 = std::chrono::steady_clock::now();
  try {
    dist::Group::create(env, torch::kCPU, 20s, 1s);
    FAIL() << "joined a group without rank 0";
  } catch (const cx::Error& e) {
    const std::string where = "127.0.0.1:" + std::to_string(env.master_port);
    EXPECT_TRUE(starts_with(e.what(), "rank 1 of 2: cannot join the group at " + where + " (")) << e.what();
  }
  EXPECT_LT(seconds_since(t0), 5.0);
}

// --- local ranks ---

TEST(DistLocal, AllSucceed) {
  cx_test::TempDir dir("cx_dist");
  ScopedEnv env({{"RANK", "7"}, {"WORLD_SIZE", "9"}});  // ours must not leak into the ranks
  const std::string script =
      "test \"$WORLD_SIZE\" = 3 && test \"$LOCAL_RANK\" = \"$RANK\" && test \"$LOCAL_WORLD_SIZE\" = 3 && "
      "test \"$MASTER_ADDR\" = 127.0.0.1 && test \"$MASTER_PORT\" -gt 0 && echo \"$RANK $MASTER_PORT\" > \"$0/$RANK\"";
  std::string message;
  dist::LocalRunOptions opts;
  opts.message = &message;
  EXPECT_EQ(dist::run_local_ranks(3, {"sh", "-c", script, dir.path()}, opts), 0);
  EXPECT_EQ(message, "");
  std::string port;
  for (int r = 0; r < 3; ++r) {
    std::ifstream in(dir / std::to_string(r));
    int rank = -1;
    std::string p;
    ASSERT_TRUE(in >> rank >> p) << "rank " << r << " wrote nothing";
    EXPECT_EQ(rank, r);
    if (r > 0) {
      EXPECT_EQ(p, port) << "one port for all";
    }
    port = p;
  }
}

TEST(DistLocal, OneFailsTheOthersAreStopped) {
  std::string message;
  dist::LocalRunOptions opts;
  opts.message = &message;
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(dist::run_local_ranks(3, {"/bin/sh", "-c", "if [ \"$RANK\" = 1 ]; then exit 3; fi; exec sleep 30"}, opts), 3);
  EXPECT_EQ(message, "rank 1 exited with status 3");
  EXPECT_LT(seconds_since(t0), 10.0);  // the sleepers got SIGTERM
}

TEST(DistLocal, KilledBySignalAndKillAfterGrace) {
  std::string message;
  dist::LocalRunOptions opts;
  opts.message = &message;
  opts.grace = 300ms;
  const auto t0 = std::chrono::steady_clock::now();
  // Rank 1 ignores SIGTERM (sleep inherits the ignored signal), so only SIGKILL after the grace ends it.
  EXPECT_EQ(dist::run_local_ranks(2, {"/bin/sh", "-c", "if [ \"$RANK\" = 0 ]; then sleep 0.2; kill -9 $$; fi; "
                                                       "trap '' TERM; exec sleep 30"}, opts),
            128 + SIGKILL);
  EXPECT_EQ(message, "rank 0 was killed by signal 9 (Killed)");
  EXPECT_LT(seconds_since(t0), 10.0);
}

TEST(DistLocal, SignalsAreForwarded) {
  std::string message;
  dist::LocalRunOptions opts;
  opts.message = &message;
  const auto t0 = std::chrono::steady_clock::now();
  // Rank 0 sends SIGTERM to the spawner, which forwards it to both ranks.
  const int rc = dist::run_local_ranks(2, {"/bin/sh", "-c", "if [ \"$RANK\" = 0 ]; then kill -TERM $PPID; fi; exec sleep 30"}, opts);
  EXPECT_EQ(rc, 128 + SIGTERM);
  EXPECT_TRUE(message == "rank 0 was killed by signal 15 (Terminated)" || message == "rank 1 was killed by signal 15 (Terminated)")
      << message;
  EXPECT_LT(seconds_since(t0), 10.0);
}

// Under nohup (SIGHUP ignored) the ranks ignore SIGHUP too.
TEST(DistLocal, IgnoredSignalsStayIgnored) {
  std::string message;
  dist::LocalRunOptions opts;
  opts.message = &message;
  struct sigaction ign {}, old {};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGHUP, &ign, &old);
  const int rc = dist::run_local_ranks(1, {"/bin/sh", "-c", "kill -HUP $$; exit 0"}, opts);
  ::sigaction(SIGHUP, &old, nullptr);
  EXPECT_EQ(rc, 0) << message;
}

TEST(DistLocal, ProgramThatCannotRun) {
  std::string message;
  dist::LocalRunOptions opts;
  opts.message = &message;
  EXPECT_EQ(dist::run_local_ranks(2, {"/nonexistent/cx-nothing"}, opts), 127);
  EXPECT_EQ(message, "rank 0: cannot run /nonexistent/cx-nothing: No such file or directory");
  EXPECT_EQ(dist::run_local_ranks(2, {"cx-surely-not-on-path"}, opts), 127);
  EXPECT_EQ(message, "rank 0: cannot run cx-surely-not-on-path: not found on PATH");
  EXPECT_THROW(dist::run_local_ranks(0, {"true"}, opts), cx::UsageError);
}

// The pieces together, as cx-pretrain --nproc uses them: this test binary runs as 2 ranks
// (DistWorker below), which read their place from the environment, sum, and then rank 1 dies.
TEST(DistLocal, RanksOfThisProgram) {
  if (!dist::available(torch::kCPU)) GTEST_SKIP() << "built without c10d's Gloo process group";
  ::setenv("CX_DIST_TEST_WORKER", "1", 1);
  std::string message;
  dist::LocalRunOptions opts;
  opts.message = &message;
  const int rc = dist::run_local_ranks(2, {"/proc/self/exe", "--gtest_filter=DistWorker.*"}, opts);
  ::unsetenv("CX_DIST_TEST_WORKER");
  EXPECT_EQ(rc, 3);
  EXPECT_EQ(message, "rank 1 exited with status 3");
}

TEST(DistWorker, SumThenRankOneDies) {
  if (!std::getenv("CX_DIST_TEST_WORKER")) GTEST_SKIP() << "a rank of DistLocal.RanksOfThisProgram";
  const dist::Env env = dist::read_env();
  ASSERT_EQ(env.world_size, 2);
  auto g = dist::Group::create(env, torch::kCPU, 20s);
  torch::Tensor t = torch::full({8}, env.rank + 1.0);
  g->all_reduce_sum(t);
  ASSERT_TRUE(torch::equal(t, torch::full({8}, 3.0)));
  if (env.rank == 1) ::_exit(3);
  std::this_thread::sleep_for(20s);  // the spawner stops this rank once rank 1 has failed
}
