#pragma once
// The command-line options of fine-tuning, shared by cx-classify finetune and cx-segment finetune:
// the encoder, learning rates, steps and accumulation, preprocessing, precision, checkpoints.
#include <cstdint>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "cx/train/finetune.hpp"

namespace cx::train {

struct FinetuneCli {
  std::string model, preprocess = "hf", precision = "f32", checkpoint, resume;
  bool equalize = false;
  double lr_backbone = 5e-7, lr_head = 5e-5;
  std::int64_t steps = 0, accum = 1, checkpoint_every = 0, stop_after = 0;
};

// -m/--model, --steps, --accum, --lr-backbone, --lr-head, --preprocess, --equalize, --precision,
// --checkpoint, --checkpoint-every, --resume, --stop-after.
void add_finetune_options(CLI::App* sub, FinetuneCli& f);

// Fills the options' encoder folder (resolved by name), steps, accumulation, learning rates,
// preprocessing (the encoder's preprocessor_config.json, or CXformer's pipeline) and how the head
// records it, precision, and checkpoints (default folder HEADDIR.checkpoint when they are written).
// --equalize without --preprocess cxformer is a usage error.
void apply_finetune_cli(const FinetuneCli& f, const std::string& head_dir, const torch::Device& device, FinetuneOptions& o);

// The -v line of each update: "step 3/10: loss 0.12345, epoch 1 val <metric> 0.8123 (best)".
std::function<void(const FinetuneProgress&)> log_finetune_progress(const std::string& metric);

}  // namespace cx::train
