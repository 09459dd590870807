#pragma once
// cx-pretrain: DINOv2's self-supervised recipe with CXformer's changes (dinov2/train/ssl_meta_arch.py,
// train.py; m42-health/CXformer), on cx's encoder, heads, objectives, augmentations, schedules and
// checkpoints. One update ("step"):
//   data      a batch of B images per rank, each as 2 global crops and n local crops (train/ssl_data)
//   masks     iBOT block masks on a share of the global crops (train/masking)
//   teacher   global crops -> CLS (the two crops swapped) through the DINO head, masked patch tokens
//             through the iBOT head (the DINO head when ibot.separate_head is false); centred by
//             softmax centering (EMA of the batch mean, momentum 0.9) or Sinkhorn-Knopp (3 iterations),
//             at the teacher temperature of the step
//   student   the same global crops with the masks, and the local crops, drop path in each block
//   loss      dino.loss_weight * (DINO loss of the local crops against both global crops + 2x that of
//             the global crops against the other, over the number of pairs) + koleo weight * KoLeo of
//             each global crop's CLS + ibot.loss_weight * iBOT masked-patch loss
//   update    gradients averaged over ranks; the prototypes of both heads frozen (no gradient, lr 0) for
//             optim.freeze_last_layer_epochs; each module's gradient clipped to optim.clip_grad; AdamW
//             with lr (cosine, warm-up, DINOv2's scaling rule), weight decay (cosine; none on biases,
//             norms and layer scales), layer-wise lr decay and the patch embedding's lr multiplier;
//             then the teacher <- EMA of the student at the momentum of the step.
// Every draw (augmentations, shuffling, masks, drop path) comes from counter-based generators keyed by
// (seed, step, rank, record), so a run resumed from a checkpoint equals one that was never interrupted,
// bit for bit on the CPU with the same thread count.
//
// A run folder holds recipe.yaml (the resolved recipe), log.tsv (one row per step) and checkpoints/
// (the latest train.keep_checkpoints, each written atomically: student, teacher, heads, optimizer,
// centers, data position, the encoder's config). Only rank 0 writes.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/model/config.hpp"
#include "cx/train/recipe.hpp"

namespace cx::train {

inline constexpr const char* kPretrainCheckpointFormat = "cx-pretrain-checkpoint";

struct PretrainOptions {
  Recipe recipe;                     // resolved and validated (ignored with resume: the run's own is used)
  std::string run = "run";           // the run folder
  std::string init;                  // a Hugging Face encoder folder to start from ("" = random)
  std::string init_heads;            // safetensors of dino_head.* / ibot_head.* ("" = INIT/ssl_heads.safetensors when present)
  std::int64_t max_steps = -1;       // end this invocation after this step (-1: the recipe's end)
  bool resume = false;
  std::vector<std::string> inputs;   // streams
  torch::Device device = torch::kCPU;
  int threads = 1;                   // data workers when train.num_workers is 0
  bool progress = true;              // a progress line on a terminal
};

struct PretrainResult {
  std::int64_t step = 0;        // updates done
  std::int64_t total = 0;       // the recipe's
  std::string checkpoint;       // the last one written
  int stop_signal = 0;          // a signal stopped the run (after a checkpoint)
  bool data_ended = false;      // a stream that cannot be read again ran out
};

PretrainResult pretrain(const PretrainOptions& options);

// The encoder a recipe builds: DINOv2's arch table (vit_tiny 192/12/3, vit_small 384/12/6, vit_base
// 768/12/12, vit_large 1024/24/16, vit_giant2 1536/40/24) with student.embed_dim/depth/num_heads over
// it, patch size, registers (model_type dinov2_with_registers; dinov2 without registers), MLP or
// SwiGLU, layer scale; image_size = the global crop size.
model::VitConfig recipe_vit_config(const Recipe& recipe);

// DINOv2's lr: optim.lr when set, else base_lr * sqrt(batch_size_per_gpu * world_size / 1024) under
// sqrt_wrt_1024, base_lr under none.
double resolved_lr(const Recipe& recipe, int world_size);

// `cx-pretrain export`: the teacher's (or the student's) encoder of the run's latest checkpoint (or of
// `run_or_checkpoint` when it is a checkpoint folder) as a Hugging Face folder: config.json,
// model.safetensors, preprocessor_config.json, and ssl_heads.safetensors (the heads, for --init-heads).
// Returns the checkpoint used.
std::string export_run(const std::string& run_or_checkpoint, const std::string& out_folder, bool student);

// `cx-pretrain info`: the resolved recipe (YAML), the derived values and the run's progress.
std::string run_info(const std::string& run);

// A run's latest checkpoint folder ("" when none).
std::string latest_run_checkpoint(const std::string& run);

}  // namespace cx::train
