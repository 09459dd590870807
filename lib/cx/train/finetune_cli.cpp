#include "cx/train/finetune_cli.hpp"

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/model/model_dir.hpp"
#include "cx/model/runtime.hpp"

namespace cx::train {

void add_loop_options(CLI::App* sub, LoopCli& loop, const std::string& batch_help, const std::string& metric) {
  sub->add_option("--epochs", loop.epochs, "Epochs at most")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--batch", loop.batch, batch_help)->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--wd", loop.weight_decay, "AdamW weight decay")->check(CLI::NonNegativeNumber)->capture_default_str();
  sub->add_option("--schedule", loop.schedule, "Learning-rate schedule after warm-up: cosine or constant")
      ->check(CLI::IsMember({"cosine", "constant"}))
      ->capture_default_str();
  sub->add_option("--warmup", loop.warmup, "Fraction of the updates spent in linear warm-up")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  sub->add_option("--patience", loop.patience, "Stop after N epochs without a better validation " + metric + "; 0 never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
}

std::string head_folder_output(std::string out, const std::string& subcommand) {
  if (out.empty() || out == "-") throw UsageError(subcommand + " writes a head folder: give -o HEADDIR");
  while (out.size() > 1 && out.back() == '/') out.pop_back();  // "head/" names the folder "head"
  return out;
}

void add_finetune_options(CLI::App* sub, FinetuneCli& f) {
  sub->add_option("-m,--model", f.model, "Encoder folder, or a name looked up in $CX_MODEL_PATH and the Hugging Face cache")
      ->required()
      ->envname("CX_MODEL");
  sub->add_option("--steps", f.steps, "Optimizer updates in all (overrides --epochs)")->check(CLI::PositiveNumber);
  sub->add_option("--accum", f.accum, "Micro-batches per optimizer update (gradient accumulation)")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--lr-backbone", f.lr_backbone, "Encoder learning rate")->capture_default_str();
  sub->add_option("--lr-head", f.lr_head, "Head learning rate")->capture_default_str();
  sub->add_option("--preprocess", f.preprocess, "Preprocessing and normalisation: hf (the model's preprocessor_config.json) or cxformer")
      ->check(CLI::IsMember({"hf", "cxformer"}))
      ->capture_default_str();
  sub->add_flag("--equalize", f.equalize, "Histogram-equalise images (with --preprocess cxformer)");
  sub->add_option("--precision", f.precision, "f32, or bf16/f16 autocast on CUDA")->check(CLI::IsMember({"f32", "bf16", "f16"}))->capture_default_str();
  sub->add_flag("--no-augment", f.no_augment, "Train on the deterministic preprocessing instead of the augmentations");
  sub->add_option("--crop-scale", f.crop_scale, "Smallest area fraction of the random resized crop")->check(CLI::Range(0.01, 1.0))->capture_default_str();
  sub->add_option("--checkpoint", f.checkpoint, "Checkpoint folder (default HEADDIR.checkpoint when checkpoints are written)")->type_name("DIR");
  sub->add_option("--checkpoint-every", f.checkpoint_every, "Write a checkpoint every K updates")->check(CLI::NonNegativeNumber)->type_name("K");
  sub->add_option("--resume", f.resume, "Continue from a checkpoint folder (same data and settings)")->type_name("DIR");
  sub->add_option("--stop-after", f.stop_after, "End this session after N updates in all, writing a checkpoint")->check(CLI::PositiveNumber)->type_name("N");
}

void apply_finetune_cli(const FinetuneCli& f, const std::string& head_dir, const torch::Device& device, FinetuneOptions& o) {
  o.encoder_folder = model::resolve_model_dir(f.model);
  o.steps = f.steps;
  o.accum = f.accum;
  o.lr_backbone = f.lr_backbone;
  o.lr_head = f.lr_head;
  if (f.preprocess == "cxformer") {
    o.preprocess = image::PreprocessConfig::cxformer(f.equalize);
    o.preprocess_record = {{"pipeline", "cxformer"}, {"equalize", f.equalize}};
  } else {
    if (f.equalize) throw UsageError("--equalize belongs to --preprocess cxformer");
    o.preprocess = image::PreprocessConfig::from_file(o.encoder_folder + "/preprocessor_config.json");
    o.preprocess_record = {{"pipeline", "hf"}};
  }
  o.device = device;
  o.precision = model::parse_precision(f.precision, device);
  o.augment = !f.no_augment;
  o.augment_options.scale_min = f.crop_scale;
  o.checkpoint_dir = f.checkpoint.empty() && (f.checkpoint_every > 0 || f.stop_after > 0) ? head_dir + ".checkpoint" : f.checkpoint;
  o.checkpoint_every = f.checkpoint_every;
  o.resume = f.resume;
  o.stop_after = f.stop_after;
}

std::function<void(const FinetuneProgress&)> log_finetune_progress(const std::string& metric) {
  return [metric](const FinetuneProgress& p) {
    std::string line = "step " + std::to_string(p.step) + "/" + std::to_string(p.total) + ": loss " + log::number(p.loss, 5);
    if (p.epoch > 0)
      line += ", epoch " + std::to_string(p.epoch) + " val " + metric + " " + log::number(p.val_metric) + (p.best ? " (best)" : "");
    log::debug(line);
  };
}

void log_stopped_for_resume(std::int64_t updates, const std::string& resume) {
  log::info("stopped after " + std::to_string(updates) + " updates; continue with " + resume);
}

}  // namespace cx::train
