#pragma once
// Classification heads on encoder features, and their folder on disk:
//   linear  logits = W x + b                         (the CXformer / DINOv2 linear probe)
//   mlp     logits = W2 gelu(W1 x + b1) + b2         (one hidden layer)
// Inputs are standardised first when the head carries statistics ((x - mean) / std, fitted on the
// training features). Tasks: multilabel (one sigmoid per label), binary (one label, sigmoid),
// multiclass (softmax over the labels).
//
// A head folder (written to a temporary folder beside it, then renamed into place):
//   head.json         format "cx-head" 1.0; task, labels, feature, head type and shape, label policy,
//                     standardise flag, the encoder (id, sha256, ...), training settings, validation
//                     metrics, and for fine-tuned heads "encoder_folder" and "preprocess"
//   head.safetensors  linear.weight [L, F], linear.bias [L] | fc1.*, fc2.*; standardize.mean/.std [F]
//   encoder/          (fine-tuned heads) the encoder as a Hugging Face folder
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/cli/output.hpp"

#include "cx/model/hf_loader.hpp"
#include "cx/train/dataset.hpp"

namespace cx::train {

enum class HeadType { linear, mlp };
enum class Task { multilabel, binary, multiclass };

HeadType parse_head_type(const std::string& name);  // "linear" | "mlp"; else UsageError
Task parse_task(const std::string& name);           // "multilabel" | "binary" | "multiclass"
std::string head_type_name(HeadType t);
std::string task_name(Task t);

struct HeadShape {
  HeadType type = HeadType::linear;
  std::int64_t in = 0;
  std::int64_t hidden = 0;  // mlp only
  std::int64_t out = 0;
};

class HeadModule : public torch::nn::Module {
 public:
  explicit HeadModule(HeadShape shape);
  const HeadShape& shape() const { return shape_; }
  torch::Tensor forward(const torch::Tensor& x);  // [B, in] -> logits [B, out]
  // Deterministic from the seed: linear weights N(0, 0.01) and zero bias (CXformer's
  // LinearClassifier); the mlp's first layer N(0, sqrt(2 / in)) (He), zero biases.
  void init(std::uint64_t seed);

 private:
  HeadShape shape_;
  torch::Tensor w1_, b1_, w2_, b2_;
};

// Feature standardisation: (x - mean) / std, std floored at 1e-6 of the largest std so that constant
// features do not blow up.
struct Standardizer {
  torch::Tensor mean, std;  // [F] float32; undefined: identity
  bool defined() const { return mean.defined(); }
  static Standardizer fit(const torch::Tensor& x);
  torch::Tensor apply(const torch::Tensor& x) const;
};

// What every head folder's head.json records beside the head itself (cx-head and cx-seghead alike).
struct HeadRecord {
  nlohmann::json encoder = nlohmann::json::object();  // {"id", "sha256", ...} of the features' encoder
  nlohmann::json training = nlohmann::json::object();
  nlohmann::json metrics = nlohmann::json::object();
  std::string encoder_folder;                          // "encoder" for fine-tuned heads, else empty
  nlohmann::json preprocess = nlohmann::json();        // fine-tuned heads: the preprocessing used

  void write_to(nlohmann::json& head_json) const;
  void read_from(const nlohmann::json& head_json);  // throws nlohmann::json exceptions on bad types
};

struct HeadInfo : HeadRecord {
  Task task = Task::multilabel;
  std::vector<std::string> labels;
  std::string feature = "cx5";  // the stream field the head reads (cx5 | cls)
  HeadShape shape;
  LabelPolicy policy;
};

struct Head {
  HeadInfo info;
  std::shared_ptr<HeadModule> module;
  Standardizer standardizer;

  // Logits and probabilities (sigmoid, or softmax for multiclass) for features [B, F], no grad.
  torch::Tensor logits(const torch::Tensor& features) const;
  torch::Tensor probabilities(const torch::Tensor& features) const;
};

nlohmann::json head_json(const Head& head);
// Writes head.json and head.safetensors into an existing folder (not atomic by itself).
void write_head_files(const std::string& folder, const Head& head);
// Reads a head folder; errors name the folder and the problem (missing file, unknown format or
// newer major version, tensor shapes that disagree with head.json).
Head load_head(const std::string& folder);

// A head folder's head.json, checked: the folder and file exist and parse, "format" is `format`
// ("cx-head" or "cx-seghead"; the other one is refused naming the tool it belongs to) and its major
// version is at most `major_version`. Errors name the folder or file and the problem.
nlohmann::json read_head_json(const std::string& folder, const std::string& format, int major_version);
// The tensor `name` of a head's safetensors as float32, checked against `shape` (errors name `file`).
torch::Tensor head_tensor(const model::NamedTensors& tensors, const std::string& name, torch::IntArrayRef shape,
                          const std::string& file);

// Moved to cx/cli/output.hpp (generic plumbing); kept visible here for the head writers.
using cli::write_folder_atomic;

// Refuses (cx::Error naming `where`) features from an encoder other than the head's: the stream
// header's "model" id and sha256 must equal the head's encoder. A stream without "model" cannot
// be checked and is refused too.
// `what` names the trained thing in the message ("head", "decoder").
void check_encoder(const HeadRecord& head, const nlohmann::json& stream_header, const std::string& where,
                   const std::string& what = "head");
// Training and validation streams must come from one encoder: both headers' weight hashes, where
// both name one, are equal; otherwise cx::Error naming both hashes.
void check_same_encoder(const nlohmann::json& train_header, const nlohmann::json& val_header);

}  // namespace cx::train
