#pragma once
// LLaVA-1.5's recipe (Liu et al. 2023, "Improved baselines with visual instruction tuning") on a cx
// encoder, as CXformer used it for report generation: a 2-layer MLP projector (Linear, GELU, Linear:
// LLaVA's "mlp2x_gelu") maps a record's patch tokens into a Llama-architecture language model's
// embedding space, where they stand in the prompt template in place of "<image>". Stage 1 trains the
// projector alone; stage 2 adds LoRA adapters (rank, alpha, target projections) or tunes the whole
// language model. The loss is the language model's cross-entropy on the report's tokens and the
// closing EOS only (the template and the image slots are context, as LLaVA masks them).
//
// Tokens: the prompt is tokenised in segments, [BOS] + text before the image, the image slots, then
// the text after it (no BOS, HF LlamaTokenizer rules); the report is tokenised alone (no BOS) and
// followed by EOS. Generation feeds exactly the training prompt, so training and generation agree
// token for token (LLaVA tokenises the whole conversation at once, which can merge a piece across
// the boundary of the answer; per-segment tokenisation never does).
//
// The trained folder holds llava.json (format "cx-report-llava": the base language model's folder
// and the SHA-256 of its weights, the tokenizer's SHA-256, the encoder the projector was trained
// on, template, shapes, tuning), projector.safetensors (LLaVA's names "model.mm_projector.{0,2}.*"),
// adapter_model.safetensors (LoRA, PEFT's names) or language_model.safetensors (full tuning). Loading
// recomputes the base weights' SHA-256 and refuses another model: a run never silently pairs with
// other weights.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/record_source.hpp"
#include "cx/model/generate.hpp"
#include "cx/model/llama.hpp"
#include "cx/train/report_decoder.hpp"
#include "cx/text/tokenizer.hpp"

namespace cx::train {

// The conversation around the image. "vicuna_v1" (LLaVA-1.5's): SYSTEM + " USER: " + <image> + "\n" +
// QUESTION + " ASSISTANT:" then the report; "plain" (LLaVA's stage-1 pretraining): <image> then the report.
struct LlavaTemplate {
  std::string name = "vicuna_v1";
  std::string system =
      "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and "
      "polite answers to the human's questions.";
  std::string question = "Write the findings section of the radiology report for this chest X-ray.";

  std::string before_image() const;  // the text before the image slots
  std::string after_image() const;   // the text after them, up to where the report begins
  nlohmann::json to_json() const;
  static LlavaTemplate from_json(const nlohmann::json& j, const std::string& where);
};
LlavaTemplate llava_template(const std::string& name);  // "vicuna_v1" | "plain"; else UsageError

// The ids around the image slots, as described above.
struct LlavaPromptIds {
  std::vector<std::int64_t> before, after;
};
LlavaPromptIds llava_prompt_ids(const LlavaTemplate& t, const text::Tokenizer& tokenizer);

class LlavaProjector : public torch::nn::Module {
 public:
  LlavaProjector(std::int64_t in, std::int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);  // [..., in] -> [..., hidden]
  void init(std::uint64_t seed);                  // torch.nn.Linear's default (Kaiming uniform, a = sqrt(5))
  std::int64_t in() const { return in_; }
  std::int64_t hidden() const { return hidden_; }
  model::NamedTensors named() const;  // "model.mm_projector.0.weight" ...
  void load(const model::NamedTensors& t, const std::string& where);

 private:
  std::int64_t in_, hidden_;
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};

// Training data: cx-report's ReportSet (report_decoder.hpp) with patch tokens only
// (MemoryOptions{registers = false}: LLaVA projects the patch grid) and ids filled (no BOS/EOS).

struct LlavaOptions {
  int stage = 1;                 // 1: projector only; 2: projector + LoRA (or the whole model with full)
  bool full = false;             // stage 2: tune every language-model weight instead of LoRA
  model::LoraSpec lora;
  int epochs = 1;
  std::int64_t batch = 4;
  double lr = 1e-3;              // LLaVA: 1e-3 stage 1, 2e-4 LoRA, 2e-5 full
  double projector_lr = 0;       // 0: lr (LLaVA's LoRA script uses 2e-5 for the projector)
  double warmup = 0.03;          // fraction of the updates, then cosine to 0
  double weight_decay = 0.0;
  double clip = 1.0;
  std::int64_t max_target_tokens = 256;
  std::uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  std::string checkpoint_dir;    // "": none
  std::int64_t checkpoint_every = 0;
  bool resume = false;
  std::int64_t stop_after = 0;   // end this session after this many updates (0: run to the end)
};

struct LlavaModel {
  std::shared_ptr<model::LlamaModel> language;
  std::shared_ptr<LlavaProjector> projector;
  std::shared_ptr<const text::Tokenizer> tokenizer;
  LlavaTemplate prompt;
  nlohmann::json info;  // llava.json
};

// A fresh model for training: the base language model and tokenizer from `lm_folder`, a projector
// from D to its hidden size (initialised from the seed), or the projector (and adapters) of an
// earlier stage's folder `init` (whose base must be the same weights).
LlavaModel new_llava(const std::string& lm_folder, const std::string& tokenizer_path, std::int64_t memory_dim,
                     const LlavaTemplate& prompt, const std::string& init, const torch::Device& device, std::uint64_t seed);

struct LlavaEpoch {
  int epoch = 0;
  std::int64_t step = 0, total = 0;
  double train_loss = 0;
  double val_loss = std::nan("");
};

struct LlavaTrainResult {
  bool finished = false;
  std::int64_t steps_done = 0;
  std::vector<LlavaEpoch> epochs;
};

// Trains in place. `val` may be null. Deterministic for a seed and thread count; checkpoints every
// checkpoint_every updates and when stop_after ends the session; resume continues bit for bit.
LlavaTrainResult train_llava(LlavaModel& m, const ReportSet& train, const ReportSet* val, const LlavaOptions& options,
                             const std::function<void(const LlavaEpoch&)>& on_epoch = {});

// Mean token cross-entropy of a set (no grad).
double llava_loss(LlavaModel& m, const ReportSet& set, std::int64_t batch);

void write_llava(const std::string& folder, const LlavaModel& m);  // into an existing (temporary) folder
LlavaModel load_llava(const std::string& folder, const torch::Device& device);

// Reports for a batch of patch-token memories [B, P, D] (any float dtype): prompt -> projected image ->
// generate() (greedy or beam) -> decoded text.
std::vector<std::string> llava_generate(LlavaModel& m, const torch::Tensor& patches, const model::SearchOptions& search);

}  // namespace cx::train
