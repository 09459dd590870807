#include "cx/model/runtime.hpp"

#include <sched.h>

#include <cpuid.h>
#include <dlfcn.h>
#include <malloc.h>

#include <cstdlib>

#include <ATen/autocast_mode.h>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"

namespace cx::model {

namespace {

// tcmalloc, linked or preloaded, exports tc_malloc; otherwise glibc is tuned (runtime.hpp).
std::string tune_allocator() {
  if (dlsym(RTLD_DEFAULT, "tc_malloc") != nullptr) return "tcmalloc";
  const char* keep = std::getenv("CX_GLIBC_MALLOC");
  if (keep && std::string(keep) == "default") return "glibc malloc (defaults, CX_GLIBC_MALLOC=default)";
  const bool ok = mallopt(M_MMAP_MAX, 0) == 1 && mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1;
  return ok ? "glibc malloc (no mmap, trim above 1 GiB)" : "glibc malloc (defaults: tuning refused)";
}

// At start-up, before the first tensor: any process that links this file (every torch tool and
// torch test, through parse_device / set_threads) gets the allocator settled before main.
const std::string kAllocator = tune_allocator();

bool os_saves_avx512_state() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return false;
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (lo & 0xE6) == 0xE6;  // SSE, AVX, opmask, ZMM_Hi256, Hi16_ZMM
}

CpuBf16 detect_cpu_bf16() {
  CpuBf16 r;
  unsigned a = 0, b = 0, c = 0, d = 0;
  bool avx512_core = false, avx512_bf16 = false, amx_bf16 = false;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
    avx512_core = (b & bit_AVX512F) && (b & bit_AVX512BW) && (b & bit_AVX512VL) && (b & bit_AVX512DQ);
    amx_bf16 = (d >> 22) & 1;
    if (a >= 1) {
      unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
      __cpuid_count(7, 1, a1, b1, c1, d1);
      avx512_bf16 = (a1 >> 5) & 1;
    }
  }
  if (!avx512_core || !os_saves_avx512_state()) {
    r.why = "this CPU has no AVX-512 (its bf16 units need AVX512_BF16 or AMX-BF16)";
    return r;
  }
  if (!avx512_bf16 && !amx_bf16) {
    r.why = "this CPU has no bf16 units (AVX512_BF16 or AMX-BF16)";
    return r;
  }
  if (!at::hasMKLDNN()) {
    r.why = "this LibTorch was built without oneDNN, which computes bf16 on the CPU";
    return r;
  }
  r.available = true;
  r.units = amx_bf16 ? (avx512_bf16 ? "amx_bf16, avx512_bf16" : "amx_bf16") : "avx512_bf16";
  return r;
}

}  // namespace

std::string allocator_name() { return kAllocator; }

const CpuBf16& cpu_bf16() {
  static const CpuBf16 info = detect_cpu_bf16();
  return info;
}

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
  // More compute threads than CPUs only makes OpenMP's workers wait on each other (at 1024 on 2
  // cores a forward took minutes); use the CPUs this process may run on.
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int cpus = CPU_COUNT(&set);
    if (cpus > 0 && threads > cpus) {
      log::warn("--threads " + std::to_string(threads) + " is more than the " + std::to_string(cpus) +
                " CPU(s) available; computing on " + std::to_string(cpus));
      threads = cpus;
    }
  }
  at::set_num_threads(threads);
}

Precision parse_precision(const std::string& name, const torch::Device& device) {
  Precision p;
  if (name == "f32" || name == "float32") p = Precision::f32;
  else if (name == "bf16" || name == "bfloat16") p = Precision::bf16;
  else if (name == "f16" || name == "float16") p = Precision::f16;
  else throw UsageError("--precision " + name + ": expected f32, bf16 or f16");
  if (device.is_cuda() || p == Precision::f32) return p;
  if (p == Precision::f16)
    throw UsageError("--precision " + name + ": f16 is offered on CUDA only; on the CPU give f32, or bf16 where the CPU has bf16 units");
  if (!cpu_bf16().available)
    throw UsageError("--precision " + name + ": " + cpu_bf16().why + "; the CPU path computes in f32 here");
  return p;
}

std::string precision_name(Precision precision) {
  switch (precision) {
    case Precision::bf16: return "bf16";
    case Precision::f16: return "f16";
    case Precision::f32: break;
  }
  return "f32";
}

std::string precision_path(Precision precision, const torch::Device& device) {
  if (device.is_cuda())
    return device.str() + " " + precision_name(precision) + (precision == Precision::f32 ? "" : " autocast");
  if (precision == Precision::bf16) return "cpu bf16 (" + cpu_bf16().units + ", oneDNN)";
  return "cpu " + precision_name(precision);
}

AutocastGuard::AutocastGuard(Precision precision, const torch::Device& device) {
  if (precision == Precision::f32) return;
  if (device.is_cuda()) {
    previous_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(precision == Precision::bf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::set_enabled(true);
    kind_ = Kind::cuda;
  } else if (precision == Precision::bf16) {
    previous_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
    kind_ = Kind::cpu;
  }
}

AutocastGuard::~AutocastGuard() {
  if (kind_ == Kind::cuda) {
    at::autocast::set_enabled(previous_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else if (kind_ == Kind::cpu) {
    at::autocast::set_cpu_enabled(previous_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  } else {
    return;
  }
  at::autocast::clear_cache();
}

}  // namespace cx::model
