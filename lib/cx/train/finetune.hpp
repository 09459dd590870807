#pragma once
// Fine-tuning an encoder and a head together from images (CXformer's protocol): AdamW with one
// learning rate for the backbone and another for the head (defaults 5e-7 / 5e-5), the training
// augmentations of augment.hpp (or none), gradient accumulation, warm-up + cosine (or constant)
// schedule, bf16/f16 autocast on CUDA, early stopping on a validation set by macro AUROC after each
// epoch (validation images go through the deterministic preprocessing cx-embed uses).
//
// Steps: an epoch is ceil(N / batch) micro-batches over a per-epoch permutation of the records; one
// optimizer update takes `accum` micro-batches (the loss of each divided by accum); the run is
// `steps` updates, or ceil(epochs * micro-batches per epoch / accum) when steps is 0.
//
// Checkpoints (every `checkpoint_every` updates, and when `stop_after` ends a session) are
// checkpoint.hpp folders of format "cx-finetune-checkpoint", written atomically: state.json (step,
// settings signature, early-stopping state, seed), encoder/ (Hugging Face folder), head.safetensors,
// optimizer.safetensors, best.safetensors (the best weights so far, when validating). All randomness
// is counter-based (random::training_rng), so a run resumed from a checkpoint produces the same
// weights, bit for bit, as one that was never interrupted (same thread count).
// The training images are held in memory in their encoded form (PNG/JPEG bytes) and decoded per step.
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/record_source.hpp"
#include "cx/image/preprocess.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/runtime.hpp"
#include "cx/train/augment.hpp"
#include "cx/train/head.hpp"
#include "cx/train/optim.hpp"

namespace cx::train {

// Records with an image (png, jpg or jpeg field) and their labels.
struct ImageSet {
  std::vector<std::string> keys;
  std::vector<std::string> images;       // encoded bytes
  std::vector<std::string> image_names;  // "<key>.<field>", for errors
  torch::Tensor truth;                   // [N, L] int8 (dataset.hpp codes)
  nlohmann::json header;
  std::int64_t rows() const { return static_cast<std::int64_t>(keys.size()); }
};
// A record without an image throws cx::Error naming it; an empty stream too.
ImageSet load_images(data::RecordSource& source, const std::vector<std::string>& labels, const std::string& where);

// An image field's bytes -> 8-bit gray, as cx-embed feeds the encoder (16-bit scaled to 8 bits;
// RGB through Pillow's convert("L")); equalised when asked (CXformer's pipeline).
Image decode_gray8(const std::string& bytes, const std::string& where, bool equalize);

struct FinetuneOptions {
  std::string encoder_folder;
  Task task = Task::multilabel;
  HeadType head = HeadType::linear;
  std::int64_t hidden = 512;
  std::string feature = "cx5";  // cx5 | cls: what the head reads from the encoder
  LabelPolicy policy;
  int epochs = 10;
  std::int64_t steps = 0;  // 0: from epochs
  std::int64_t batch = 8;
  std::int64_t accum = 1;
  double lr_backbone = 5e-7;
  double lr_head = 5e-5;
  double weight_decay = 0.0;
  Schedule schedule = Schedule::cosine;
  double warmup = 0.05;  // fraction of the updates
  int patience = 3;      // validations without improvement before stopping; 0: never
  bool balanced = false;
  bool augment = true;
  AugmentOptions augment_options;            // height/width/mean/std are set from `preprocess`
  image::PreprocessConfig preprocess;        // validation / prediction preprocessing
  nlohmann::json preprocess_record;          // how the head folder names it ({"pipeline": ...})
  torch::Device device = torch::kCPU;
  model::Precision precision = model::Precision::f32;
  std::uint64_t seed = 0;
  std::string checkpoint_dir;                // "" : no checkpoints
  std::int64_t checkpoint_every = 0;         // updates; 0: only when stop_after ends the session
  std::string resume;                        // a checkpoint folder to continue from
  std::int64_t stop_after = 0;               // end this session after this many updates in all (0: run to the end)
};

struct FinetuneProgress {
  std::int64_t step = 0, total = 0;  // updates done / planned
  double loss = 0;                   // this update's loss (sum over its micro-batches)
  int epoch = 0;                     // 1-based epoch of the validation, 0 when none ran
  double val_metric = std::nan("");  // the task's validation metric (macro AUROC, mean Dice)
  bool best = false;
};

// What a fine-tuning run trains besides the encoder: the head, the input and loss of a micro-batch,
// and the validation metric (higher is better). finetune_loop() owns the rest: AdamW with the
// backbone and head learning rates, schedule, gradient accumulation, checkpoints, resume and early
// stopping, as described above.
class FinetuneTask {
 public:
  virtual ~FinetuneTask() = default;
  virtual torch::nn::Module& head() = 0;
  virtual std::int64_t records() const = 0;
  // Settings a resumed run must share with the checkpoint (merged into its signature).
  virtual nlohmann::json signature() const = 0;
  // The training input [3, H, W] of record r in an epoch (called from several threads at once), and
  // its target when the task's targets move with the input (augmented masks), else undefined.
  struct Sample {
    torch::Tensor pixels, target;
  };
  virtual Sample input(std::int64_t r, std::int64_t epoch) const = 0;
  // The loss of a micro-batch: pixels [B, 3, H, W] on the device, the records' indices, and the
  // samples' targets stacked (undefined when input() gives none).
  virtual torch::Tensor loss(model::VitModel& encoder, const torch::Tensor& pixels, const std::vector<std::int64_t>& records,
                             const torch::Tensor& targets) = 0;
  // The validation metric (NaN when undefined) and its report for head.json; only when validates().
  virtual std::int64_t validation_records() const = 0;  // 0: no validation
  virtual double validate(model::VitModel& encoder, nlohmann::json& report) = 0;
};

struct FinetuneLoopResult {
  bool finished = false;
  std::int64_t steps_done = 0;
  bool stopped_early = false;
  bool have_best = false;  // a validation metric was defined: the best weights were restored
  int best_epoch = 0;
  nlohmann::json best_report;  // the task's validation report of the best epoch
  nlohmann::json training;     // signature + how the run went, for head.json
};

// The encoder `encoder` (loaded from options.encoder_folder, described by base_info {"id", "sha256"})
// and the task's head trained together; both are left in eval mode on the device.
FinetuneLoopResult finetune_loop(model::VitModel& encoder, const nlohmann::json& base_info, FinetuneTask& task,
                                 const FinetuneOptions& options, const std::function<void(const FinetuneProgress&)>& on_progress = {});

// The augmentation options of a run: the model input's size and normalisation from the preprocessing.
AugmentOptions augment_options_for(const FinetuneOptions& options);

// Preprocessed pixel values [B, 3, H, W] of encoded images (decoded in parallel), as cx-embed feeds them.
torch::Tensor preprocess_images(const std::vector<const std::string*>& images, const std::vector<std::string>& where,
                                const image::PreprocessConfig& config);

// The encoder a fine-tuned head carries (HEADDIR/<encoder_folder>, in eval mode on `device`, not
// hashed) and the preprocessing the head recorded for it ({"pipeline": "hf" | "cxformer",
// "equalize"}). A head without an encoder folder gives an empty model.
struct HeadEncoder {
  std::shared_ptr<model::VitModel> model;
  image::PreprocessConfig preprocess;
};
HeadEncoder load_head_encoder(const std::string& head_dir, const HeadRecord& head, const torch::Device& device);

// Writes an encoder (with the original folder's preprocessor_config.json when there is one) as a
// Hugging Face folder and returns the "encoder" description cx-embed will record for it.
nlohmann::json save_finetuned_encoder(const std::string& folder, model::VitModel& encoder, const FinetuneOptions& options);

struct FinetuneResult {
  Head head;
  std::shared_ptr<model::VitModel> encoder;  // on CPU, float32
  bool finished = false;  // false: stopped by stop_after (a checkpoint holds the state)
  std::int64_t steps_done = 0;
};

FinetuneResult finetune(const ImageSet& train, const ImageSet* val, const std::vector<std::string>& labels,
                        const FinetuneOptions& options, const std::function<void(const FinetuneProgress&)>& on_progress = {});

// Writes the head folder with the encoder inside (encoder/, plus the preprocessor_config.json of the
// original encoder when the head uses the "hf" pipeline), atomically. The head's "encoder" is the
// saved encoder's id and sha256, as cx-embed --model HEADDIR/encoder will record them.
void write_finetuned_head(const std::string& folder, FinetuneResult& result, const FinetuneOptions& options);

// Features of preprocessed pixel batches [B, 3, H, W] through the encoder: cx5 or the pooler (cls).
torch::Tensor encoder_features(model::VitModel& encoder, const torch::Tensor& pixels, const std::string& feature);

// Probabilities of a fine-tuned head (with its encoder) for images, preprocessed as the head says.
torch::Tensor predict_images(const Head& head, model::VitModel& encoder, const image::PreprocessConfig& preprocess,
                             const std::vector<const std::string*>& images,
                             const std::vector<std::string>& where, const torch::Device& device,
                             model::Precision precision, std::int64_t batch);

}  // namespace cx::train
