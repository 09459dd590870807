#pragma once
// The command-line options of training, declared once for cx-classify and cx-segment: the loop
// options their train and finetune subcommands share (each with its own defaults, which --help
// prints), and fine-tuning's own: the encoder, learning rates, steps and accumulation,
// preprocessing, precision, augmentation, checkpoints.
#include <cstdint>
#include <functional>
#include <string>

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include "cx/train/finetune.hpp"
#include "cx/train/optim.hpp"

namespace cx::train {

// The training loop's options. A subcommand sets its defaults in the struct before adding them.
struct LoopCli {
  int epochs = 10;
  std::int64_t batch = 8;
  double weight_decay = 0.0;
  int patience = 3;
  std::string schedule = "cosine";
  double warmup = 0.05;
};

// --epochs, --batch, --wd, --schedule, --warmup, --patience, their defaults shown. `batch_help`
// says what a batch holds ("Records per mini-batch"); `metric` names what early stopping watches
// ("macro AUROC", "mean Dice").
void add_loop_options(CLI::App* sub, LoopCli& loop, const std::string& batch_help, const std::string& metric);

// Into any options struct with these fields (ProbeOptions, SegTrainOptions, FinetuneOptions).
template <class Options>
void apply_loop_cli(const LoopCli& loop, Options& o) {
  o.epochs = loop.epochs;
  o.batch = loop.batch;
  o.weight_decay = loop.weight_decay;
  o.schedule = parse_schedule(loop.schedule);
  o.warmup = loop.warmup;
  o.patience = loop.patience;
}

// Where train and finetune write their head folder: -o without trailing slashes ("head/" names the
// folder "head"). No -o, or "-", is a usage error ("train writes a head folder: give -o HEADDIR").
std::string head_folder_output(std::string output, const std::string& subcommand);

struct FinetuneCli {
  std::string model, preprocess = "hf", precision = "f32", checkpoint, resume;
  bool equalize = false;
  double lr_backbone = 5e-7, lr_head = 5e-5;
  std::int64_t steps = 0, accum = 1, checkpoint_every = 0, stop_after = 0;
  bool no_augment = false;
  double crop_scale = 0.08;  // set before add_finetune_options to change the default
};

// -m/--model, --steps, --accum, --lr-backbone, --lr-head, --preprocess, --equalize, --precision,
// --no-augment, --crop-scale, --checkpoint, --checkpoint-every, --resume, --stop-after.
void add_finetune_options(CLI::App* sub, FinetuneCli& f);

// Fills the options' encoder folder (resolved by name), steps, accumulation, learning rates,
// preprocessing (the encoder's preprocessor_config.json, or CXformer's pipeline) and how the head
// records it, precision, augmentation (on unless --no-augment; the crop's smallest area), and
// checkpoints (default folder HEADDIR.checkpoint when they are written). --equalize without
// --preprocess cxformer is a usage error.
void apply_finetune_cli(const FinetuneCli& f, const std::string& head_dir, const torch::Device& device, FinetuneOptions& o);

// The -v line of each update: "step 3/10: loss 0.12345, epoch 1 val <metric> 0.8123 (best)".
std::function<void(const FinetuneProgress&)> log_finetune_progress(const std::string& metric);

// After a resumable trainer stopped early (--stop-after or a signal; its checkpoint written):
// "stopped after N updates; continue with RESUME" on stderr. `resume` is the tool's own spelling of
// the way on ("--resume DIR" for cx-classify and cx-segment, "--resume --checkpoint DIR" for cx-report).
void log_stopped_for_resume(std::int64_t updates, const std::string& resume);

}  // namespace cx::train
