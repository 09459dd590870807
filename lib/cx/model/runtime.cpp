#include "cx/model/runtime.hpp"

#include <ATen/autocast_mode.h>

#include "cx/cli/error.hpp"

namespace cx::model {

torch::Device parse_device(const std::string& name) {
  std::string n = name.empty() ? "cpu" : name;
  if (n == "cpu") return torch::kCPU;
  if (n == "cuda" || n.rfind("cuda:", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("--device " + n + ": CUDA is not available (this LibTorch has no CUDA, or no GPU is visible)");
    if (n == "cuda") return torch::Device(torch::kCUDA, 0);
    int index = -1;
    try {
      index = std::stoi(n.substr(5));
    } catch (const std::exception&) {
      throw UsageError("--device " + n + ": expected cpu, cuda or cuda:N");
    }
    if (index < 0 || index >= static_cast<int>(torch::cuda::device_count()))
      throw Error("--device " + n + ": no such GPU (" + std::to_string(torch::cuda::device_count()) + " visible)");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw UsageError("--device " + n + ": expected cpu, cuda or cuda:N");
}

void set_threads(int threads) {
  if (threads < 1) threads = 1;
  at::set_num_threads(threads);
}

Precision parse_precision(const std::string& name, const torch::Device& device) {
  Precision p;
  if (name == "f32" || name == "float32") p = Precision::f32;
  else if (name == "bf16" || name == "bfloat16") p = Precision::bf16;
  else if (name == "f16" || name == "float16") p = Precision::f16;
  else throw UsageError("--precision " + name + ": expected f32, bf16 or f16");
  if (p != Precision::f32 && !device.is_cuda())
    throw UsageError("--precision " + name + ": half precision is offered on CUDA only; the CPU path computes in f32");
  return p;
}

AutocastGuard::AutocastGuard(Precision precision, const torch::Device& device) {
  if (precision == Precision::f32 || !device.is_cuda()) return;
  previous_ = at::autocast::is_enabled();
  at::autocast::set_autocast_gpu_dtype(precision == Precision::bf16 ? at::kBFloat16 : at::kHalf);
  at::autocast::set_enabled(true);
  enabled_ = true;
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  at::autocast::set_enabled(previous_);
  at::autocast::clear_cache();
}

}  // namespace cx::model
