// bench/report's cx side: batched greedy generation with the KV cache through the library's
// LlamaDecoder and generate(), on a Hugging Face Llama folder. The prompt batch is reference.py's
// (row r: 32 - 2r tokens, left-padded with id 0). Prints one JSON line: tokens/s (best of
// --repeat, after a short warm-up) and row 0's first ids.
//   report_bench --model DIR [--batch 4] [--prompt 32] [--new 128] [--threads 2] [--repeat 3]
//                [--device cpu|cuda] [--dtype f32|bf16]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "cx/model/generate.hpp"
#include "cx/model/llama.hpp"
#include "cx/model/runtime.hpp"

int main(int argc, char** argv) {
  std::string model_dir, device = "cpu", dtype = "f32";
  int batch = 4, prompt = 32, fresh = 128, threads = 2, repeat = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model_dir = v;
    else if (k == "--batch") batch = std::atoi(v.c_str());
    else if (k == "--prompt") prompt = std::atoi(v.c_str());
    else if (k == "--new") fresh = std::atoi(v.c_str());
    else if (k == "--threads") threads = std::atoi(v.c_str());
    else if (k == "--repeat") repeat = std::atoi(v.c_str());
    else if (k == "--device") device = v;
    else if (k == "--dtype") dtype = v;
    else {
      std::fprintf(stderr, "report_bench: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "report_bench: --model DIR is required\n");
    return 2;
  }
  try {
    cx::model::set_threads(threads);
    torch::NoGradGuard no_grad;
    const torch::Device dev = cx::model::parse_device(device);
    auto model = cx::model::load_llama(model_dir, dev, dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32);
    const std::int64_t vocab = model->config().vocab_size;
    torch::Tensor ids = torch::zeros({batch, prompt}, torch::kLong), mask = torch::zeros({batch, prompt}, torch::kLong);
    for (int r = 0; r < batch; ++r) {
      const int n = std::max(1, prompt - 2 * r);
      for (int i = 0; i < n; ++i) ids[r][prompt - n + i] = (r * 131 + i * 17 + 3) % vocab;
      mask[r].narrow(0, prompt - n, n).fill_(1);
    }
    cx::model::SearchOptions o;
    o.eos_id = -1;  // every row runs all --new tokens, as the reference does
    auto once = [&](int tokens) {
      o.max_new_tokens = tokens;
      cx::model::LlamaDecoder decoder(*model);
      const torch::Tensor first = decoder.prefill(model->embed(ids), mask);
      return cx::model::generate(decoder, first, o);
    };
    once(4);  // warm-up
    double best = 1e30;
    std::vector<std::vector<std::int64_t>> out;
    for (int i = 0; i < repeat; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      out = once(fresh);
      if (dev.is_cuda()) torch::cuda::synchronize();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::string row0;
    for (std::size_t i = 0; i < out[0].size() && i < 16; ++i) row0 += (i ? ", " : "") + std::to_string(out[0][i]);
    std::printf("{\"tokens_per_s\": %.3f, \"seconds\": %.4f, \"row0\": [%s], \"threads\": %d}\n",
                static_cast<double>(batch) * fresh / best, best, row0.c_str(), torch::get_num_threads());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "report_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
