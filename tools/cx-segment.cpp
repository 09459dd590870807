// cx-segment: anatomy segmentation heads on patch tokens (the CXformer protocol: frozen encoder,
// 1x1-conv linear head or a small upsampling decoder, 0.5 CE + 0.5 Dice), and their masks as label
// maps in the stream, PNG folders, CheXmask RLE CSV and overlays.
//   cx-segment train train.cx --val val.cx -o seghead/
//   cx-segment predict seghead/ test.cx > pred.cx && cx-eval dice test.cx pred.cx
// See man/cx-segment.1.
#include <algorithm>
#include <cmath>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/names.hpp"
#include "cx/cli/options.hpp"
#include "cx/cli/progress.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/record_source.hpp"
#include "cx/cli/stream_output.hpp"
#include "cx/model/config.hpp"
#include "cx/model/runtime.hpp"
#include "cx/train/finetune_cli.hpp"
#include "cx/train/segment.hpp"
#include "cx/train/segment_predict.hpp"

namespace {

using cx::cli::Tool;
using cx::log::number;
// The shared options of train and finetune.
constexpr unsigned kTraining = Tool::kOutput | Tool::kSeed | Tool::kThreads | Tool::kDevice | Tool::kProvenance;

// What train and finetune share (each subcommand's loop defaults set where it is declared).
struct SegCli {
  std::vector<std::string> inputs;
  std::string val, feature = "patch", head = "linear", classes;
  std::int64_t hidden = 256;
  int stride = 0;  // 0: the encoder's patch size
  cx::train::LoopCli loop;
};

void add_seg_options(CLI::App* sub, SegCli& c, const std::string& batch_help) {
  sub->add_option("--feature", c.feature, "patch (last block's tokens) or patch4 (the last four blocks', concatenated)")
      ->check(CLI::IsMember({"patch", "patch4"}))
      ->capture_default_str();
  sub->add_option("--head", c.head, "linear (a 1x1 convolution, the linear probe) or conv (a small upsampling decoder)")
      ->check(CLI::IsMember({"linear", "conv"}))
      ->capture_default_str();
  sub->add_option("--hidden", c.hidden, "Width of the conv decoder's first layer (a multiple of 4)")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--classes", c.classes, "Names of label values 1..n (default: the stream's mask classes)")->type_name("A,B");
  sub->add_option("--stride", c.stride, "Target pixels per grid cell (default: the encoder's patch size)")->check(CLI::PositiveNumber);
  cx::train::add_loop_options(sub, c.loop, batch_help, "mean Dice");
}

std::string val_dice(const cx::train::SegHeadInfo& info) {
  if (!info.metrics.contains("val")) return "";
  const auto& m = info.metrics["val"]["mean_dice"];
  return "validation mean Dice " + number(m.is_null() ? std::nan("") : m.get<double>());
}

struct TrainCli : SegCli {
  double lr = 1e-3, dropout = 0.1;
  bool no_standardize = false;
  TrainCli() { loop = {30, 16, 1e-4, 5}; }
};

int run_train(cx::cli::Tool& tool, const TrainCli& c) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = cx::train::head_folder_output(tool.common().output, "train");
  auto inputs = tool.inputs_or_stdin(c.inputs);
  if (c.val == "-" && std::count(inputs.begin(), inputs.end(), "-")) throw cx::UsageError("standard input can feed one stream only");
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = cx::cli::input_name(inputs[0]);
  // The target stride: the encoder's patch size (targets at the input's resolution) unless given.
  int stride = c.stride;
  if (stride <= 0) {
    const auto& h = source->header();
    stride = h.contains("model") && h["model"].is_object() ? h["model"].value("patch_size", 14) : 14;
  }
  const auto classes = cx::cli::parse_list(c.classes, "--classes");
  cx::train::SegSet train = cx::train::load_seg_set(*source, c.feature, stride, classes, where);
  source.reset();
  cx::log::debug("read " + std::to_string(train.rows()) + " records: tokens " + std::to_string(train.x.size(1)) + " x " +
                 std::to_string(train.x.size(2)) + " x " + std::to_string(train.x.size(3)) + ", targets " +
                 std::to_string(train.y.size(1)) + " x " + std::to_string(train.y.size(2)) + ", " +
                 std::to_string(train.classes.size()) + " classes");
  std::unique_ptr<cx::train::SegSet> val;
  if (!c.val.empty()) {
    auto vs = cx::data::RecordSource::open({c.val});
    val = std::make_unique<cx::train::SegSet>(cx::train::load_seg_set(*vs, c.feature, stride, classes, c.val));
  }
  cx::train::SegTrainOptions o;
  cx::train::apply_loop_cli(c.loop, o);
  o.head = cx::train::parse_seg_head_type(c.head);
  o.hidden = c.hidden;
  o.lr = c.lr;
  o.dropout = c.dropout;
  o.standardize = !c.no_standardize;
  o.seed = tool.common().seed;
  o.device = device;
  cx::cli::Progress progress("epochs", c.loop.epochs);
  cx::train::SegHead head = cx::train::train_seg_head(train, val.get(), c.feature, stride, o, [&](const cx::train::SegEpochReport& r) {
    progress.add();
    cx::log::debug("epoch " + std::to_string(r.epoch) + ": train loss " + number(r.train_loss, 5) +
                   (val ? ", val mean Dice " + number(r.val_dice) + (r.best ? " (best)" : "") : ""));
  });
  progress.finish();
  if (!tool.common().no_provenance) head.info.training["provenance"] = tool.provenance_entry();
  cx::cli::write_folder_atomic(out, [&](const std::string& tmp) { cx::train::write_seg_head_files(tmp, head); });
  std::string summary = "trained a " + c.head + " segmentation head on " + std::to_string(train.rows()) + " records, " +
                        std::to_string(head.info.classes.size() - 1) + " class(es), " +
                        std::to_string(head.info.training["epochs_run"].get<int>()) + " epoch(s)";
  if (head.info.metrics.contains("val")) summary += "; best epoch " + head.info.training["best_epoch"].dump() + ", " + val_dice(head.info);
  cx::log::info(summary + " -> " + out);
  return cx::kExitOk;
}

int run_finetune(cx::cli::Tool& tool, const SegCli& c, const cx::train::FinetuneCli& f) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = cx::train::head_folder_output(tool.common().output, "finetune");
  auto inputs = tool.inputs_or_stdin(c.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = cx::cli::input_name(inputs[0]);

  cx::train::FinetuneOptions o;
  cx::train::apply_finetune_cli(f, out, device, o);
  cx::train::apply_loop_cli(c.loop, o);
  o.augment_options.flip_p = 0.0;  // a flip would swap the left and right lung
  o.seed = tool.common().seed;

  const int patch = static_cast<int>(cx::model::read_vit_config(o.encoder_folder + "/config.json").patch_size);
  const int stride = c.stride > 0 ? c.stride : patch;
  const auto classes = cx::cli::parse_list(c.classes, "--classes");
  cx::train::SegImageSet train = cx::train::load_seg_images(*source, o.preprocess, patch, stride, classes, where);
  source.reset();
  std::unique_ptr<cx::train::SegImageSet> val;
  if (!c.val.empty()) {
    auto vs = cx::data::RecordSource::open({c.val});
    val = std::make_unique<cx::train::SegImageSet>(cx::train::load_seg_images(*vs, o.preprocess, patch, stride, classes, c.val));
  }
  auto result = cx::train::finetune_seg(train, val.get(), c.feature, stride, cx::train::parse_seg_head_type(c.head), c.hidden, o,
                                        cx::train::log_finetune_progress("mean Dice"));
  if (!result.finished) {
    cx::train::log_stopped_for_resume(result.steps_done, "--resume " + o.checkpoint_dir);
    return cx::kExitOk;
  }
  if (!tool.common().no_provenance) result.head.info.training["provenance"] = tool.provenance_entry();
  cx::train::write_finetuned_seg_head(out, result, o);
  const std::string dice = val_dice(result.head.info);
  cx::log::info("fine-tuned " + f.model + " with a " + c.head + " segmentation head: " + std::to_string(result.steps_done) + " updates" +
                (dice.empty() ? "" : ", " + dice) + " -> " + out);
  return cx::kExitOk;
}

struct PredictCli {
  std::string head_dir, png_dir, rle, overlay;
  std::vector<std::string> inputs;
  std::int64_t batch = 16;
  int thickness = 2;
  bool ignore_encoder = false, keep_tokens = false;
};

int run_predict(cx::cli::Tool& tool, const PredictCli& c) {
  const std::string& output = tool.common().output;
  if (c.rle == "-" && (output.empty() || output == "-"))
    throw cx::UsageError("--rle - and the stream cannot share standard output: give -o FILE for the stream");
  cx::model::set_threads(tool.threads());
  cx::train::SegPredictOptions o;
  o.device = cx::model::parse_device(tool.common().device);
  o.batch = c.batch;
  o.ignore_encoder = c.ignore_encoder;
  cx::train::SegHead head = cx::train::load_seg_head(c.head_dir);
  head.module->to(o.device);
  auto inputs = tool.inputs_or_stdin(c.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = cx::cli::input_name(inputs[0]);
  const cx::train::HeadEncoder encoder = cx::train::load_head_encoder(c.head_dir, head.info, o.device);

  // The stream goes to -o or standard output, whatever files are asked for beside it.
  cx::cli::StreamOutput out(tool, cx::train::seg_stream_header(source->header(), head.info, c.head_dir, c.keep_tokens));
  std::vector<std::unique_ptr<cx::train::SegSink>> sinks;
  if (!c.png_dir.empty()) sinks.push_back(std::make_unique<cx::train::PngFolderSink>(c.png_dir));
  if (!c.rle.empty()) sinks.push_back(std::make_unique<cx::train::RleCsvSink>(c.rle, head.info.classes));
  if (!c.overlay.empty()) sinks.push_back(std::make_unique<cx::train::OverlaySink>(c.overlay, c.thickness));
  sinks.push_back(std::make_unique<cx::train::SegStreamSink>(out, c.keep_tokens));
  std::vector<cx::train::SegSink*> order;
  for (auto& s : sinks) order.push_back(s.get());

  cx::cli::Progress progress("images");
  const auto stats = cx::train::predict_masks(*source, where, head, encoder, o, order, [&] { progress.add(); });
  progress.finish();
  cx::log::debug(stats.describe());
  return cx::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-segment",
                     "Segmentation heads on patch tokens: train (linear 1x1 conv or a conv decoder, 0.5 CE + 0.5 Dice), "
                     "predict (label maps into the stream, PNG folders, CheXmask RLE, overlays)");
  auto& app = tool.app();
  app.require_subcommand(1, 1);
  app.fallthrough();

  TrainCli t;
  auto* train = app.add_subcommand("train", "Learn a head on an embedding stream with patch tokens and .mask.png label maps");
  train->add_option("inputs", t.inputs, "Embedding streams (cx-embed --emit patch or patch4); - for standard input")->type_name("STREAM");
  train->add_option("--val", t.val, "Validation stream: early stopping on its mean foreground Dice, saved in head.json")->type_name("STREAM");
  add_seg_options(train, t, "Images per mini-batch");
  train->add_option("--lr", t.lr, "AdamW learning rate")->capture_default_str();
  train->add_option("--dropout", t.dropout, "Dropout on the standardised tokens while training (channels; whole tokens for conv)")
      ->check(CLI::Range(0.0, 0.95))
      ->capture_default_str();
  train->add_flag("--no-standardize", t.no_standardize, "Do not standardise the token channels");
  tool.add_shared_options(kTraining, train);

  SegCli ft;  // the loop's defaults for fine-tuning: 10 epochs, batch 8, no weight decay, patience 3
  cx::train::FinetuneCli f;
  f.crop_scale = 0.5;
  auto* finetune = app.add_subcommand("finetune", "Train encoder and head together from images with .mask.png (a stream cx-ingest wrote)");
  finetune->add_option("inputs", ft.inputs, "Image streams with masks; - for standard input")->type_name("STREAM");
  cx::train::add_finetune_options(finetune, f);
  finetune->add_option("--val", ft.val, "Validation stream (images with masks): early stopping on its mean foreground Dice")->type_name("STREAM");
  add_seg_options(finetune, ft, "Images per micro-batch");
  tool.add_shared_options(kTraining, finetune);

  PredictCli p;
  auto* predict = app.add_subcommand("predict", "Masks from a head: .mask.png in the stream, --png-dir, --rle, --overlay");
  predict->add_option("head", p.head_dir, "Head folder (from cx-segment train)")->required()->type_name("HEADDIR");
  predict->add_option("inputs", p.inputs, "Embedding streams (image streams for a fine-tuned head); - for standard input")->type_name("STREAM");
  predict->add_option("--png-dir", p.png_dir, "Also write each label map as DIR/<key>.png")->type_name("DIR");
  predict->add_option("--rle", p.rle, "Also write a CheXmask-format RLE CSV (1-based starts, row-major, a column per class)")->type_name("CSV");
  predict->add_option("--overlay", p.overlay, "Also write DIR/<key>.png: the radiograph with the outlines in colour (needs cx-embed --keep-image)")
      ->type_name("DIR");
  predict->add_option("--thickness", p.thickness, "Outline width of --overlay in pixels")->check(CLI::Range(1, 50))->capture_default_str();
  predict->add_option("--batch", p.batch, "Images per head forward")->check(CLI::PositiveNumber)->capture_default_str();
  predict->add_flag("--keep-tokens", p.keep_tokens, "Keep patch.npy / patch4.npy in the output stream");
  predict->add_flag("--ignore-encoder", p.ignore_encoder, "Predict even when the stream's encoder is not the head's");
  tool.add_shared_options(Tool::kOutput | Tool::kThreads | Tool::kDevice | Tool::kProvenance, predict);

  return tool.run(argc, argv, [&]() -> int {
    if (train->parsed()) return run_train(tool, t);
    if (finetune->parsed()) return run_finetune(tool, ft, f);
    return run_predict(tool, p);
  });
}
