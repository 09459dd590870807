#pragma once
// Process-wide LibTorch settings every torch tool applies from the shared flags: the intra-op
// thread count (--threads; Debian's LibTorch defaults to one), the device (--device) and the
// compute precision (--precision), plus the allocator every LibTorch process runs on.
#include <string>

#include <torch/torch.h>

namespace cx::model {

// "cpu", "cuda", "cuda:N". CUDA asked of a LibTorch without it (or with no GPU visible) is an
// error that says so, never a silent fall-back to the CPU.
torch::Device parse_device(const std::string& name);
void set_threads(int threads);

// "f32" | "bf16" | "f16": the compute precision. Half precisions autocast (matmuls and convolutions
// in the half type; LayerNorm, softmax statistics and the residual stream in f32):
//   CUDA  bf16 and f16.
//   CPU   bf16 where the CPU has bf16 units (AVX512_BF16 or AMX-BF16, with AVX-512) and LibTorch
//         reaches them through oneDNN; elsewhere refused by name (UsageError). f16: refused.
enum class Precision { f32, bf16, f16 };
Precision parse_precision(const std::string& name, const torch::Device& device);
std::string precision_name(Precision precision);

// Whether this CPU and this LibTorch compute bf16 in hardware: `units` names them
// ("avx512_bf16", "amx_bf16"); when !available, `why` says what is missing.
struct CpuBf16 {
  bool available = false;
  std::string units;
  std::string why;
};
const CpuBf16& cpu_bf16();

// The path a forward runs for -v, e.g. "cpu f32", "cpu bf16 (avx512_bf16, oneDNN)", "cuda:0 bf16 autocast".
std::string precision_path(Precision precision, const torch::Device& device);

// Enables autocast to the precision on the device for its lifetime (CUDA, or the CPU with bf16);
// a no-op for f32. Training and inference enter half precision only through this guard.
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, const torch::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  enum class Kind { none, cuda, cpu };
  Kind kind_ = Kind::none;
  bool previous_ = false;
  at::ScalarType previous_dtype_ = at::kBFloat16;
};

// The allocator LibTorch's CPU tensors come from. glibc's malloc maps and unmaps every block above
// its mmap threshold (at most 32 MiB), so each large activation page-faults afresh on every forward
// (about half an encoder's time). The torch tools link tcmalloc (CMakeLists.txt: libtcmalloc_minimal),
// which keeps freed spans; where it is not linked (nor preloaded), this library tunes glibc at start-up
// instead: no mmap for the main arena (M_MMAP_MAX 0) and no trimming below 1 GiB of free top memory,
// so freed blocks are reused without new page faults (CX_GLIBC_MALLOC=default skips that, for
// comparison). Returns what is in use, for -v and benchmarks.
std::string allocator_name();

}  // namespace cx::model
