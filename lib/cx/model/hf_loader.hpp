#pragma once
// Hugging Face model folders for the encoder: config.json + model.safetensors, or shards listed in
// model.safetensors.index.json ("weight_map": key -> file in the same folder). Weights may be
// F32, F16 or BF16 (F64 too); they are converted to the requested dtype on load. The key check is
// strict: one error line lists the missing and the unexpected keys. Keys of the
// *ForImageClassification checkpoints ("dinov2_with_registers." / "dinov2." prefixes) are accepted,
// their "classifier.*" head ignored. Pickled pytorch_model.bin files are never read.
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "cx/model/config.hpp"
#include "cx/model/vit.hpp"

namespace cx::io {
struct TensorView;
}

namespace cx::model {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

struct LoadOptions {
  torch::Device device = torch::kCPU;
  torch::Dtype dtype = torch::kFloat32;  // parameters' dtype after loading
  bool hash = true;                      // SHA-256 of the weight files, for provenance
};

struct WeightFile {
  std::string path;
  std::string sha256;  // empty when not hashed
};

struct LoadedVit {
  VitConfig config;
  std::shared_ptr<VitModel> model;  // eval mode, on options.device
  std::string folder;
  // "_name_or_path" when it names a hub model (not a local path), else the folder's base name.
  std::string model_id;
  // One file: its SHA-256 (what `sha256sum model.safetensors` prints). Shards: the SHA-256 of the
  // `sha256sum`-style manifest "<hex>  <file name>\n" of the shards sorted by name.
  std::string weights_sha256;
  std::vector<WeightFile> weight_files;
};

LoadedVit load_hf_vit(const std::string& folder, const LoadOptions& options = {});

// The folder's weight tensors on CPU in their stored dtype, under the base model's keys (prefix
// stripped, classifier dropped). No check against a config.
NamedTensors read_hf_weights(const std::string& folder);

// Copies `weights` into the model after the strict key and shape check; `where` names the source.
void load_weights(VitModel& model, const NamedTensors& weights, const std::string& where);

// Throws cx::Error naming `where` and `key` when `t` holds a NaN or an infinity (every weight read
// from outside is checked: a damaged checkpoint must not give NaN embeddings with exit 0).
void check_finite_weight(const torch::Tensor& t, const std::string& key, const std::string& where);

// Writes config.json and model.safetensors (keys exactly as HF names them, metadata format=pt,
// tensors in `dtype`), each to a temporary name then renamed; creates the folder if needed.
// The weights are checked against the config like a load would.
void save_hf_folder(const std::string& folder, const VitConfig& config, const NamedTensors& weights,
                    torch::Dtype dtype = torch::kFloat32);
void save_hf_folder(const std::string& folder, const VitModel& model, torch::Dtype dtype = torch::kFloat32);

// Deterministic random weights for a config (see VitModel::init_random), float32 on CPU.
NamedTensors random_vit_weights(const VitConfig& config, std::uint64_t seed);

// A safetensors tensor as an owning CPU tensor of the same dtype (F32/F16/BF16/F64).
torch::Tensor tensor_from_view(const io::TensorView& view, const std::string& where);

}  // namespace cx::model
