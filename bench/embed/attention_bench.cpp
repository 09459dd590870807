// Times one attention layer of ViT-S/14 at 518 (B = 4, N = 1374, H = 6, d = 64 by default): the
// reference kernel (matmul + softmax + matmul, then the heads merged for the output projection)
// against the fused kernel writing merged heads directly, and the fused kernel's tile sizes.
// Built by bench/embed/run.sh (`run.sh BUILD attention`); prints one line per measurement.
//   attention_bench [--threads 2] [--batch 4] [--tokens 1374] [--heads 6] [--dim 64] [--repeats 7]
//                   [--tiles 16,32,64,96,128,192,256]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cx/model/attention.hpp"

namespace {

struct Timing {
  double wall_ms, cpu_ms;
};

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// The median of `repeats` runs after one warm-up: robust to a neighbour's burst on a shared machine.
Timing time_it(int repeats, const std::function<void()>& fn) {
  fn();
  std::vector<double> wall, cpu;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    fn();
    cpu.push_back((cpu_seconds() - c0) * 1e3);
    wall.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  return {wall[wall.size() / 2], cpu[cpu.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, repeats = 7;
  std::int64_t B = 4, N = 1374, H = 6, d = 64;
  std::vector<std::int64_t> tiles = {16, 32, 64, 96, 128, 192, 256};
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--threads") threads = std::stoi(value);
    else if (flag == "--batch") B = std::stoll(value);
    else if (flag == "--tokens") N = std::stoll(value);
    else if (flag == "--heads") H = std::stoll(value);
    else if (flag == "--dim") d = std::stoll(value);
    else if (flag == "--repeats") repeats = std::stoi(value);
    else if (flag == "--tiles") {
      tiles.clear();
      std::stringstream ss(value);
      for (std::string t; std::getline(ss, t, ',');) tiles.push_back(std::stoll(t));
    } else {
      std::fprintf(stderr, "attention_bench: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  at::set_num_threads(threads);
  torch::NoGradGuard no_grad;
  torch::manual_seed(0);
  // q, k, v as the ViT makes them: views of one [B, N, 3 * H * d] projection.
  torch::Tensor qkv = torch::randn({B, N, 3 * H * d}).view({B, N, 3, H, d}).permute({2, 0, 3, 1, 4});
  const torch::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const double gflop = 4.0 * static_cast<double>(B * H) * static_cast<double>(N) * static_cast<double>(N) *
                       static_cast<double>(d) / 1e9;
  auto report = [&](const std::string& name, const Timing& t) {
    std::printf("%-28s %8.2f ms/layer  (cpu %8.2f ms)  %6.1f GFLOP/s\n", name.c_str(), t.wall_ms, t.cpu_ms,
                gflop / (t.wall_ms / 1e3));
    std::fflush(stdout);
  };
  std::printf("attention B=%lld N=%lld H=%lld d=%lld, %d threads, %.2f GFLOP per layer, isa %s, blas sgemm_ %s\n",
              static_cast<long long>(B), static_cast<long long>(N), static_cast<long long>(H),
              static_cast<long long>(d), threads, gflop,
              cx::model::detail::best_isa() == cx::model::detail::Isa::avx512 ? "avx512"
              : cx::model::detail::best_isa() == cx::model::detail::Isa::avx2 ? "avx2"
                                                                               : "scalar",
              cx::model::detail::blas_sgemm_available() ? "found" : "absent (at::addmm)");
  const Timing ref = time_it(repeats, [&] {
    cx::model::attention_merged_heads(q, k, v, scale, cx::model::AttentionKernel::reference);
  });
  report("reference (+ merge heads)", ref);
  const Timing fused = time_it(repeats, [&] {
    cx::model::attention_merged_heads(q, k, v, scale, cx::model::AttentionKernel::fused);
  });
  report("fused (default tile)", fused);
  std::printf("speed-up %.2fx (wall), %.2fx (cpu)\n", ref.wall_ms / fused.wall_ms, ref.cpu_ms / fused.cpu_ms);
  for (std::int64_t tile : tiles) {
    cx::model::detail::FusedOptions options;
    options.tile_rows = tile;
    report("fused tile " + std::to_string(tile),
           time_it(repeats, [&] { cx::model::detail::fused_attention(q, k, v, scale, true, options); }));
  }
  cx::model::detail::FusedOptions via_torch;
  via_torch.use_blas = false;
  report("fused, tiles via at::addmm",
         time_it(repeats, [&] { cx::model::detail::fused_attention(q, k, v, scale, true, via_torch); }));
  return 0;
}
