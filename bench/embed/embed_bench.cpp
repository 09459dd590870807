// Whole-encoder timing without the CLI: loads a Hugging Face folder through cx::model::load_hf_vit
// and runs the forward on random pixel values. Built by bench/embed/run.sh.
//   embed_bench --model DIR [--images 16 --batch 4 --threads 2 --size 518 --warmup-batches 1]
//               [--attention automatic|fused|reference]... [--check-dir DIR]
//               [--precision f32|bf16] [--train 1]
// --attention    VitModel::set_attention for a timed run; repeat it to time several kernels in
//                one process (default: automatic, the fused kernel for CPU float32 inference).
// --check-dir    also writes DIR/pixel_values.npy (one image) and DIR/<kernel>.npy (its
//                last_hidden_state) for every kernel, for the comparison with reference.py.
// --images 0     only the --check-dir outputs.
// --precision    bf16: the forward under cx::model::AutocastGuard, as cx-embed --precision bf16.
// --train 1      time forward + backward (a training step without the optimiser: autograd through
//                the reference attention) instead of inference.
// Prints one JSON line per timed mode, with the minor page faults taken during the timed batches
// and the allocator in use (cx::model::allocator_name()).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <ctime>
#include <sys/resource.h>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"
#include "cx/model/attention.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/runtime.hpp"

namespace {
using cx::model::VitModel;

double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

long minor_faults() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_minflt;
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
  std::string folder, check_dir, precision_name = "f32";
  bool train = false;
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
    else if (flag == "--precision") precision_name = value;
    else if (flag == "--train") train = value == "1";
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
    const cx::model::Precision precision = cx::model::parse_precision(precision_name, torch::kCPU);
    cx::model::LoadOptions options;
    options.hash = false;
    auto loaded = cx::model::load_hf_vit(folder, options);
    VitModel& model = *loaded.model;
    const auto& c = loaded.config;
    // As cx-embed runs it: grad mode off (not InferenceMode), autocast for bf16. Training: grad on,
    // a scalar of the output backpropagated into every parameter.
    auto run = [&](const torch::Tensor& x, const std::string& mode) {
      model.set_attention(parse_kernel(mode));
      torch::AutoGradMode grad(train);
      torch::Tensor out;
      {
        cx::model::AutocastGuard autocast(precision, torch::kCPU);
        out = model.forward(x).last_hidden_state;
      }
      if (train) {
        model.zero_grad();
        out.to(torch::kFloat32).square().mean().backward();
        return out.detach();
      }
      return out;
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
      const long f0 = minor_faults();
      for (int b = 0; b < batches; ++b) run(pixels, mode);
      const long faults = minor_faults() - f0;
      const double cpu = cpu_seconds() - c0;
      const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double n = static_cast<double>(batches) * batch;
      std::printf("{\"attention\": \"%s\", \"precision\": \"%s\", \"train\": %s, \"images\": %.0f, "
                  "\"seconds\": %.3f, \"cpu_seconds\": %.3f, \"images_per_s\": %.4f, \"threads\": %d, "
                  "\"minor_faults\": %ld, \"allocator\": \"%s\"}\n",
                  mode.c_str(), precision_name.c_str(), train ? "true" : "false", n, seconds, cpu, n / seconds,
                  at::get_num_threads(), faults, cx::model::allocator_name().c_str());
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "embed_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
