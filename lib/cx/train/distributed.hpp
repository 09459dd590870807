#pragma once
// Training on several processes (ranks), on one machine or many, through LibTorch's c10d: Gloo for
// CPU tensors, NCCL for CUDA tensors when this LibTorch is a CUDA build that has it. Ranks meet at a
// TCPStore that rank 0 hosts on MASTER_ADDR:MASTER_PORT; every rank must call the collectives in the
// same order with tensors of the same shapes and dtypes. A rank that dies ends the others' next (or
// current) collective with a cx::Error that names it: on Gloo within seconds when its connections
// close (a process that exits or is killed), at the timeout otherwise (a machine that vanishes, a rank
// that hangs; NCCL notices nothing sooner). Only rank 0 should write files; that is the caller's rule,
// not enforced here. A Group is used from one thread.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace cx::train::dist {

// How long a collective (or joining the group) waits for its peers before it fails.
inline constexpr std::chrono::milliseconds kDefaultTimeout{300'000};

struct Env {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr;
  int master_port = 0;
  bool from_env = false;  // the values came from a launcher's variables (torchrun or SLURM)
};

// This process's place in the job, from the launcher's environment:
// - torchrun's RANK, WORLD_SIZE, LOCAL_RANK (all three, or none), MASTER_ADDR, MASTER_PORT;
// - when none of those three is set, SLURM's SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (all three),
//   with MASTER_ADDR, MASTER_PORT (SLURM has no such pair: the job script exports them);
// - none set: one process (rank 0 of 1).
// MASTER_ADDR and MASTER_PORT are required only when the world has more than one rank. A partial set
// or an invalid value throws cx::Error naming the variable and its value, e.g.
//   "environment: RANK=abc: expected a whole number >= 0"
//   "environment: RANK=2 is not below WORLD_SIZE=2"
//   "environment: RANK=1 is set but WORLD_SIZE is not"
//   "environment: MASTER_PORT=70000: expected a port number (1-65535)"
Env read_env();

// The device this rank computes on. `--device cuda` (no index) on a launcher's rank means the rank's
// own GPU, cuda:LOCAL_RANK (torchrun and SLURM start one process per GPU, as DINOv2's launchers do);
// an explicit cuda:N, the CPU, or one process without a launcher keep what was asked. cuda_devices is
// the number of GPUs this process sees (torch::cuda::device_count()). Throws cx::Error when the
// local rank has no GPU:
//   "LOCAL_RANK 2 has no GPU: this machine shows 2 CUDA devices (start one rank per GPU, or give --device cuda:N)"
torch::Device rank_device(torch::Device requested, const Env& env, std::int64_t cuda_devices);

// Whether groups of more than one rank can be built for tensors on `type` in this build (CPU: Gloo;
// CUDA: NCCL). A group of one rank needs neither.
bool available(torch::DeviceType type);

class Group {
 public:
  // Joins the group: rank 0 hosts the TCPStore on master_addr:master_port, the others connect to it
  // (retrying until `timeout`, so ranks may start in any order), then the process group for `device`
  // is built (Gloo for CPU; NCCL for CUDA when built with it, with NCCL_BLOCKING_WAIT=1 unless set, so
  // that a failed collective throws instead of aborting). Gloo binds to the interface named by
  // GLOO_SOCKET_IFNAME when set, to 127.0.0.1 when MASTER_ADDR is a loopback address, else to the
  // address this host's name resolves to. `join_timeout` bounds joining (until every rank is there),
  // `timeout` every collective. world_size 1: no network; every collective is a no-op. Failures throw
  // cx::Error ("rank 1 of 2: cannot join the group at node0:29500 (...)").
  static std::shared_ptr<Group> create(const Env& env, torch::Device device,
                                       std::chrono::milliseconds timeout = kDefaultTimeout,
                                       std::chrono::milliseconds join_timeout = kDefaultTimeout);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  bool is_root() const { return rank_ == 0; }

  // Sums `t` over the ranks, in place (a non-contiguous tensor is reduced through a copy). Dtypes:
  // float, double, half, bfloat16 (on CPU summed in float, rounded back once), int8, uint8, int32,
  // int64; others (bool, int16, complex) throw cx::Error on CPU before anything is sent.
  void all_reduce_sum(torch::Tensor& t);
  // Sums every tensor of `ts` over the ranks: the tensors of one dtype travel as one flattened buffer
  // (one collective per dtype, dtypes in order of first appearance), and the sums are written back
  // into the tensors. Undefined tensors (a parameter without a gradient) are skipped: they must be
  // undefined on every rank alike.
  void all_reduce_sum(std::vector<torch::Tensor>& ts);
  // Replaces `t` on every rank by root's `t`, bit for bit (sent as bytes: any dtype).
  void broadcast(torch::Tensor& t, int root = 0);
  void barrier();

  // A collective that fails throws cx::Error, and the group is closed at once (its connections too, so
  // that peers waiting on this rank fail as well); later calls throw "rank R of N: the group failed in
  // an earlier collective". Messages:
  //   "rank 0 of 2: lost rank 1 during all-reduce (Connection reset by peer ...)"
  //   "rank 0 of 4: lost ranks 2, 3 during broadcast (...)"
  //   "rank 0 of 2: all-reduce timed out after 300 s; no rank was lost: one is stuck or slow (...)"
  // The lost ranks are those whose heartbeat (a counter each rank bumps in the store 4 times a second
  // from a thread of its own) stopped, leaving out ranks that stopped on a failure they reported
  // themselves (the dead rank's neighbours, which fail first); when the store itself is unreachable,
  // its host, rank 0, is lost. Finding them takes a probe of 1.5 s after the collective fails; after a
  // failure, rank 0's ~Group keeps the store up (at most 2.5 s) until the other ranks are gone, so let
  // the Group be destroyed (unwinding does it) rather than calling exit() with it alive.

 private:
  struct Impl;  // c10d's objects stay out of this header
  Group(int rank, int size);
  int rank_, size_;
  std::unique_ptr<Impl> impl_;  // null for a group of one
};

struct LocalRunOptions {
  // Between SIGTERM and SIGKILL when the other ranks are stopped after one failed.
  std::chrono::milliseconds grace{10'000};
  // Where the one-line failure message goes; null: to stderr through cx::log::error.
  std::string* message = nullptr;
};

// `--nproc N` on one machine: runs N copies of `argv` (argv[0] searched on PATH when it holds no '/';
// the caller passes this program with its arguments, --nproc removed) in a process group of their own,
// each with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE set (rank, N, rank, N) and MASTER_ADDR
// 127.0.0.1, MASTER_PORT a free port; stdin, stdout and stderr are shared with this process. SIGINT,
// SIGTERM and SIGHUP sent to this process are forwarded to every rank (and it then waits for them all,
// however they end); if this process dies, the ranks get SIGTERM. When a rank exits non-zero or by a
// signal, the others get SIGTERM, then SIGKILL after `grace`; the result is that rank's failure: its
// exit status, or 128 + the signal's number, with a message such as
//   "rank 1 exited with status 3"   or   "rank 0 was killed by signal 9 (Killed)"
//   "rank 1: cannot run cx-pretrain: No such file or directory" (exit 127).
// Returns 0 when every rank exits 0. nproc < 1 or an empty argv throws cx::UsageError. One call at a
// time per process (its signal handlers are process-wide); /proc/self/exe as argv[0] runs this binary.
int run_local_ranks(int nproc, const std::vector<std::string>& argv, const LocalRunOptions& options = {});

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0).
int free_local_port();

}  // namespace cx::train::dist
