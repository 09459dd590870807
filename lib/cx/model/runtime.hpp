#pragma once
// Process-wide LibTorch settings every torch tool applies from the shared flags: the intra-op
// thread count (--threads; Debian's LibTorch defaults to one) and the device (--device).
#include <string>

#include <torch/torch.h>

namespace cx::model {

// "cpu", "cuda", "cuda:N". CUDA asked of a LibTorch without it (or with no GPU visible) is an
// error that says so, never a silent fall-back to the CPU.
torch::Device parse_device(const std::string& name);
void set_threads(int threads);

// "f32" | "bf16" | "f16": the compute precision. Half precisions autocast on CUDA (matmuls in
// the half type, reductions in f32); on the CPU only f32 is offered (refused by name otherwise).
enum class Precision { f32, bf16, f16 };
Precision parse_precision(const std::string& name, const torch::Device& device);

// Enables CUDA autocast to the precision for its lifetime (no-op for f32 or the CPU).
class AutocastGuard {
 public:
  AutocastGuard(Precision precision, const torch::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_ = false;
  bool previous_ = false;
};

}  // namespace cx::model
