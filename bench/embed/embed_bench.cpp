// Whole-encoder timing without the CLI: loads a Hugging Face folder through cx::model::load_hf_vit
// and runs the forward on random pixel values. Built by bench/embed/run.sh.
//   embed_bench --model DIR [--images 16 --batch 4 --threads 2 --size 518 --warmup-batches 1]
//               [--attention automatic|fused|reference]... [--check-dir DIR]
// --attention    VitModel::set_attention for a timed run; repeat it to time several kernels in
//                one process (default: automatic, the fused kernel for CPU float32 inference).
// --check-dir    also writes DIR/pixel_values.npy (one image) and DIR/<kernel>.npy (its
//                last_hidden_state) for every kernel, for the comparison with reference.py.
// --images 0     only the --check-dir outputs.
// Prints one JSON line per timed mode.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"
#include "cx/model/attention.hpp"
#include "cx/model/hf_loader.hpp"

namespace {
using cx::model::VitModel;

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

cx::model::AttentionKernel parse_kernel(const std::string& name) {
  if (name == "automatic") return cx::model::AttentionKernel::automatic;
  if (name == "fused") return cx::model::AttentionKernel::fused;
  if (name == "reference") return cx::model::AttentionKernel::reference;
  throw std::runtime_error("unknown --attention " + name + " (automatic, fused or reference)");
}

void save_npy(const std::string& path, const torch::Tensor& t) {
  torch::Tensor c = t.contiguous().to(torch::kFloat32);
  cx::io::NdArray a = cx::io::NdArray::zeros(cx::io::DType::f32, c.sizes().vec());
  std::memcpy(a.data.data(), c.data_ptr<float>(), a.data.size());
  std::ofstream(path, std::ios::binary) << cx::io::write_npy(a);
}

}  // namespace

int main(int argc, char** argv) {
  std::string folder, check_dir;
  std::vector<std::string> modes;
  int images = 16, batch = 4, threads = 2, warmup = 1;
  std::int64_t size = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") folder = value;
    else if (flag == "--images") images = std::stoi(value);
    else if (flag == "--batch") batch = std::stoi(value);
    else if (flag == "--threads") threads = std::stoi(value);
    else if (flag == "--size") size = std::stoll(value);
    else if (flag == "--warmup-batches") warmup = std::stoi(value);
    else if (flag == "--attention") modes.push_back(value);
    else if (flag == "--check-dir") check_dir = value;
    else {
      std::fprintf(stderr, "embed_bench: unknown option %s\n", flag.c_str());
      return 2;
    }
  }
  if (folder.empty()) {
    std::fprintf(stderr, "usage: embed_bench --model DIR [--images N --batch B --threads T --attention MODE]\n");
    return 2;
  }
  if (modes.empty()) modes = {"automatic"};
  try {
    at::set_num_threads(threads);
    torch::InferenceMode inference;
    cx::model::LoadOptions options;
    options.hash = false;
    auto loaded = cx::model::load_hf_vit(folder, options);
    VitModel& model = *loaded.model;
    const auto& c = loaded.config;
    auto run = [&](const torch::Tensor& x, const std::string& mode) {
      model.set_attention(parse_kernel(mode));
      return model.forward(x).last_hidden_state;
    };
    if (size == 0) size = c.image_size;
    // One random batch fed images / batch times: the speed does not depend on the pixel values, and
    // memory stays flat however many images are timed.
    torch::manual_seed(0);
    const torch::Tensor pixels = torch::randn({batch, c.num_channels, size, size});
    const int batches = images / batch;  // 0: only the --check-dir outputs

    if (!check_dir.empty()) {
      torch::Tensor one = pixels.narrow(0, 0, 1);
      save_npy(check_dir + "/pixel_values.npy", one);
      for (const auto& mode : modes) save_npy(check_dir + "/" + mode + ".npy", run(one, mode));
    }
    for (const auto& mode : modes) {
      if (batches == 0) break;
      for (int w = 0; w < warmup; ++w) run(pixels, mode);
      const auto t0 = std::chrono::steady_clock::now();
      const double c0 = cpu_seconds();
      for (int b = 0; b < batches; ++b) run(pixels, mode);
      const double cpu = cpu_seconds() - c0;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double n = static_cast<double>(batches) * batch;
      std::printf("{\"attention\": \"%s\", \"images\": %.0f, \"seconds\": %.3f, \"cpu_seconds\": %.3f, "
                  "\"images_per_s\": %.4f, \"threads\": %d}\n",
                  mode.c_str(), n, seconds, cpu, n / seconds, at::get_num_threads());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
