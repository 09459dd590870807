// cx-classify: classification heads on embeddings (the CXformer linear-probe protocol, an MLP head),
// predictions in the table cx-eval reads, and fine-tuning of encoder + head from images.
//   cx-classify train train.cx --val val.cx -o head/
//   cx-classify predict head/ test.cx | cx-eval auroc -
//   cx-classify finetune images.cx --model CXformer-small --val val.cx -o head/
// See man/cx-classify.1.
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/record_source.hpp"
#include "cx/io/npy.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/model_dir.hpp"
#include "cx/model/runtime.hpp"
#include "cx/train/dataset.hpp"
#include "cx/train/finetune.hpp"
#include "cx/train/finetune_cli.hpp"
#include "cx/train/head.hpp"
#include "cx/train/probe.hpp"

namespace {

using cx::train::Head;

struct Shared {
  std::vector<std::string> inputs;
  std::string val;
  std::string feature = "cx5";
  std::string head = "linear";
  std::int64_t hidden = 512;
  std::string task = "multilabel";
  std::string labels, preset;
  std::string uncertain = "ignore", blank = "zeros";
  int epochs = 0;
  double wd = -1;
  std::int64_t batch = 0;
  int patience = -1;
  bool balanced = false;
  std::string schedule = "cosine";
  double warmup = 0.05;
};

using cx::log::number;

void add_label_options(CLI::App* sub, Shared& s) {
  sub->add_option("--labels", s.labels, "Labels to learn, comma-separated (default: every label the stream header declares)")->type_name("A,B");
  sub->add_option("--preset", s.preset, "A label set by name: chexpert5, chexpert14, nih14, nih8, vindr7, vindr, rsna")->type_name("NAME");
  sub->add_option("--uncertain", s.uncertain, "Uncertain (-1) labels: ignore (masked, U-Ignore), ones (U-Ones), zeros (U-Zeros)")
      ->check(CLI::IsMember({"ignore", "ones", "zeros"}))
      ->capture_default_str();
  sub->add_option("--blank", s.blank, "Blank (unmentioned) labels: zeros (negative) or ignore (masked)")
      ->check(CLI::IsMember({"ignore", "zeros"}))
      ->capture_default_str();
  sub->add_option("--task", s.task, "multilabel (a sigmoid per label), binary (one label), multiclass (softmax; one positive per record)")
      ->check(CLI::IsMember({"multilabel", "binary", "multiclass"}))
      ->capture_default_str();
  sub->add_option("--head", s.head, "linear (the linear probe) or mlp (one hidden layer, GELU)")
      ->check(CLI::IsMember({"linear", "mlp"}))
      ->capture_default_str();
  sub->add_option("--hidden", s.hidden, "Hidden width of the mlp head")->check(CLI::PositiveNumber)->capture_default_str();
  sub->add_option("--feature", s.feature, "cx5 (CLS of the last 4 blocks + mean patch token, 5D) or cls")
      ->check(CLI::IsMember({"cx5", "cls"}))
      ->capture_default_str();
  sub->add_option("--val", s.val, "Validation stream: early stopping on its macro AUROC, metrics saved in head.json")->type_name("STREAM");
  sub->add_flag("--balanced", s.balanced, "Class-balanced loss (BCE pos_weight = negatives / positives per label)");
  sub->add_option("--schedule", s.schedule, "Learning-rate schedule after warm-up: cosine or constant")
      ->check(CLI::IsMember({"cosine", "constant"}))
      ->capture_default_str();
  sub->add_option("--warmup", s.warmup, "Fraction of the updates spent in linear warm-up")->check(CLI::Range(0.0, 1.0))->capture_default_str();
}

cx::data::LabelPolicy policy_of(const Shared& s) {
  return {cx::data::parse_uncertain_policy(s.uncertain), cx::data::parse_blank_policy(s.blank)};
}

std::string require_folder_output(const cx::cli::Tool& tool, const char* sub) {
  std::string out = tool.common().output;
  if (out.empty() || out == "-") throw cx::UsageError(std::string(sub) + " writes a head folder: give -o HEADDIR");
  while (out.size() > 1 && out.back() == '/') out.pop_back();  // "head/" names the folder "head"
  return out;
}

void log_labels(const std::vector<std::string>& labels, const torch::Tensor& truth) {
  for (std::size_t l = 0; l < labels.size(); ++l) {
    torch::Tensor col = truth.select(1, static_cast<std::int64_t>(l));
    cx::log::debug(labels[l] + ": " + std::to_string((col == 1).sum().item<std::int64_t>()) + " positive, " +
                   std::to_string((col == 0).sum().item<std::int64_t>()) + " negative, " +
                   std::to_string((col == -1).sum().item<std::int64_t>()) + " uncertain, " +
                   std::to_string((col == cx::data::kBlankCode).sum().item<std::int64_t>()) + " blank");
  }
}

int run_train(cx::cli::Tool& tool, Shared& s, double lr, bool no_standardize, const std::string& solver, const std::string& l2) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = require_folder_output(tool, "train");
  auto inputs = tool.inputs_or_stdin(s.inputs);
  if (s.val == "-" && std::count(inputs.begin(), inputs.end(), "-")) throw cx::UsageError("standard input can feed one stream only");
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = inputs.size() == 1 ? (inputs[0] == "-" ? "standard input" : inputs[0]) : inputs[0];
  const auto labels = cx::train::choose_labels(source->header(), s.labels, s.preset, where);
  cx::train::FeatureSet train = cx::train::load_features(*source, s.feature, labels, where);
  source.reset();
  cx::log::debug("read " + std::to_string(train.rows()) + " records x " + std::to_string(train.x.size(1)) + " features from " + where);
  log_labels(labels, train.truth);
  std::unique_ptr<cx::train::FeatureSet> val;
  if (!s.val.empty()) {
    auto vs = cx::data::RecordSource::open({s.val});
    val = std::make_unique<cx::train::FeatureSet>(cx::train::load_features(*vs, s.feature, labels, s.val));
  }

  cx::train::ProbeOptions o;
  o.task = cx::train::parse_task(s.task);
  o.head = cx::train::parse_head_type(s.head);
  o.hidden = s.hidden;
  o.policy = policy_of(s);
  o.solver = cx::train::parse_solver(solver);
  o.l2_grid = cx::train::parse_l2_grid(l2);
  o.epochs = s.epochs > 0 ? s.epochs : 50;
  o.batch = s.batch > 0 ? s.batch : 256;
  o.lr = lr;
  o.weight_decay = s.wd >= 0 ? s.wd : 1e-4;
  o.schedule = cx::train::parse_schedule(s.schedule);
  o.warmup = s.warmup;
  o.patience = s.patience >= 0 ? s.patience : 5;
  o.balanced = s.balanced;
  o.standardize = !no_standardize;
  o.seed = tool.common().seed;
  o.device = device;

  Head head = cx::train::train_head(std::move(train), val.get(), labels, s.feature, o, [&](const cx::train::EpochReport& r) {
    if (!std::isnan(r.l2))
      cx::log::debug("l2 " + number(r.l2) + ": train objective " + number(r.train_loss, 5) + ", " +
                     (val ? "validation" : "held-out") + " macro AUROC " + number(r.val_macro_auroc));
    else
      cx::log::debug("epoch " + std::to_string(r.epoch) + ": train loss " + number(r.train_loss, 5) +
                     (val ? ", val macro AUROC " + number(r.val_macro_auroc) + (r.best ? " (best)" : "") : ""));
  });
  if (!tool.common().no_provenance) head.info.training["provenance"] = tool.provenance_entry();
  cx::train::write_folder_atomic(out, [&](const std::string& tmp) { cx::train::write_head_files(tmp, head); });
  const auto& t = head.info.training;
  std::string summary = "trained a " + s.head + " head on " + std::to_string(t["records"].get<std::int64_t>()) + " records, " +
                        std::to_string(labels.size()) + " label(s), " +
                        (t.contains("epochs_run") ? std::to_string(t["epochs_run"].get<int>()) + " epoch(s)"
                                                  : "L-BFGS " + std::to_string(t["evaluations"].get<std::int64_t>()) + " evaluations" +
                                                        (t["converged"].get<bool>() ? "" : " (not converged)"));
  if (head.info.metrics.contains("val")) {
    const auto& m = head.info.metrics["val"]["macro_auroc"];
    summary += std::string(t.contains("best_epoch") ? "; best epoch " + t["best_epoch"].dump() + "," : ";") +
               " validation macro AUROC " + number(m.is_null() ? std::nan("") : m.get<double>());
  }
  cx::log::info(summary + " -> " + out);
  return cx::kExitOk;
}

// The feature of one record for a head, or an empty tensor when the record has no such field.
torch::Tensor record_feature(const cx::io::Record& r, const std::string& feature, std::int64_t width) {
  const cx::io::Field* f = r.find(feature + ".npy");
  if (!f) return {};
  cx::io::NdArray a = cx::io::read_npy(f->data, r.key + "." + feature + ".npy");
  if (a.shape.size() != 1 || a.shape[0] != width)
    throw cx::Error(cx::at(r.key + "." + feature + ".npy", "expected " + std::to_string(width) + " values for this head"));
  std::vector<float> v = a.to_floats();
  return torch::from_blob(v.data(), {width}, torch::kFloat32).clone();
}

int run_predict(cx::cli::Tool& tool, const std::string& head_dir, std::vector<std::string> inputs, bool ignore_encoder,
                std::int64_t batch, const std::string& precision_name) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const auto precision = cx::model::parse_precision(precision_name, device);
  Head head = cx::train::load_head(head_dir);
  const auto& info = head.info;
  inputs = tool.inputs_or_stdin(inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = inputs[0] == "-" ? "standard input" : inputs[0];
  const nlohmann::json& header = source->header();

  // A fine-tuned head can embed images itself with its own encoder.
  std::shared_ptr<cx::model::VitModel> encoder;
  cx::image::PreprocessConfig preprocess;
  auto ensure_encoder = [&] {
    if (encoder || info.encoder_folder.empty()) return;
    cx::train::HeadEncoder e = cx::train::load_head_encoder(head_dir, info, device);
    encoder = e.model;
    preprocess = e.preprocess;
  };

  const auto L = static_cast<std::int64_t>(info.labels.size());
  const std::int64_t F = info.shape.in;
  bool checked = false;
  std::vector<bool> truth_column(static_cast<std::size_t>(L), false);
  std::vector<std::string> declared;
  if (header.contains("labels") && header["labels"].is_array())
    for (const auto& l : header["labels"])
      if (l.is_string()) declared.push_back(l.get<std::string>());

  cx::cli::OutputFile out(tool.common().output, false);
  bool header_written = false;
  std::vector<cx::io::Record> pending;
  auto flush = [&] {
    if (pending.empty()) return;
    // Features from the records, or (fine-tuned heads, records with images) from the encoder.
    std::vector<torch::Tensor> feats;
    std::vector<std::size_t> need_image;
    for (std::size_t i = 0; i < pending.size(); ++i) {
      torch::Tensor f = record_feature(pending[i], info.feature, F);
      if (!f.defined()) {
        if (info.encoder_folder.empty())
          throw cx::Error(cx::at(pending[i].key, "no " + info.feature + ".npy field (embed the stream with cx-embed --emit " +
                                                     info.feature + ")"));
        need_image.push_back(i);
      }
      feats.push_back(f);
    }
    // Features from a stream are checked against the head's encoder once (images are embedded by
    // the head's own encoder and need no check).
    if (need_image.size() < pending.size() && !checked && !ignore_encoder) {
      cx::train::check_encoder(info, header, where);
      checked = true;
    }
    torch::Tensor probs = torch::empty({static_cast<std::int64_t>(pending.size()), L}, torch::kFloat32);
    if (need_image.size() < pending.size()) {
      std::vector<torch::Tensor> rows;
      std::vector<std::int64_t> positions;
      for (std::size_t i = 0; i < pending.size(); ++i)
        if (feats[i].defined()) {
          rows.push_back(feats[i]);
          positions.push_back(static_cast<std::int64_t>(i));
        }
      torch::Tensor p = head.probabilities(torch::stack(rows)).cpu();
      probs.index_copy_(0, torch::tensor(positions, torch::kInt64), p);
    }
    if (!need_image.empty()) {
      ensure_encoder();
      std::vector<const std::string*> images;
      std::vector<std::string> names;
      std::vector<std::int64_t> positions;
      for (std::size_t i : need_image) {
        const cx::io::Field* img = pending[i].image();
        if (!img) throw cx::Error(cx::at(pending[i].key, "no " + info.feature + ".npy field and no image to embed"));
        images.push_back(&img->data);
        names.push_back(pending[i].key + "." + img->name);
        positions.push_back(static_cast<std::int64_t>(i));
      }
      torch::Tensor p = cx::train::predict_images(head, *encoder, preprocess, images, names, device, precision, 32);
      probs.index_copy_(0, torch::tensor(positions, torch::kInt64), p);
    }

    if (!header_written) {
      // Truth columns for the labels the stream declares, or that its first record carries.
      auto first = cx::train::record_labels(pending.front(), info.labels);
      std::string line = "key";
      for (std::int64_t l = 0; l < L; ++l) {
        const std::string& name = info.labels[static_cast<std::size_t>(l)];
        truth_column[static_cast<std::size_t>(l)] =
            std::find(declared.begin(), declared.end(), name) != declared.end() ||
            first[static_cast<std::size_t>(l)] != cx::data::LabelValue::blank;
        if (truth_column[static_cast<std::size_t>(l)]) line += "\t" + name;
      }
      for (const auto& name : info.labels) line += "\t" + name + ".score";
      out.write(line + "\n");
      header_written = true;
    }
    const float* p = probs.data_ptr<float>();
    for (std::size_t i = 0; i < pending.size(); ++i) {
      auto values = cx::train::record_labels(pending[i], info.labels);
      std::string line = pending[i].key;
      for (std::int64_t l = 0; l < L; ++l) {
        if (!truth_column[static_cast<std::size_t>(l)]) continue;
        auto v = values[static_cast<std::size_t>(l)];
        line += "\t";
        line += cx::data::label_cell_text(v);
      }
      char buf[32];
      for (std::int64_t l = 0; l < L; ++l) {
        std::snprintf(buf, sizeof buf, "\t%.9g", static_cast<double>(p[static_cast<std::int64_t>(i) * L + l]));
        line += buf;
      }
      out.write(line + "\n");
    }
    pending.clear();
  };
  cx::io::Record record;
  std::int64_t n = 0;
  while (source->next(record)) {
    pending.push_back(std::move(record));
    ++n;
    if (static_cast<std::int64_t>(pending.size()) >= batch) flush();
  }
  flush();
  if (!header_written) {
    std::string line = "key";
    for (const auto& name : info.labels) line += "\t" + name + ".score";
    out.write(line + "\n");
  }
  out.commit();
  cx::log::debug("predicted " + std::to_string(n) + " records with " + head_dir);
  return cx::kExitOk;
}

int run_finetune(cx::cli::Tool& tool, Shared& s, const cx::train::FinetuneCli& f, bool no_augment, double crop_scale) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = require_folder_output(tool, "finetune");
  auto inputs = tool.inputs_or_stdin(s.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = inputs[0] == "-" ? "standard input" : inputs[0];
  const auto labels = cx::train::choose_labels(source->header(), s.labels, s.preset, where);

  cx::train::FinetuneOptions o;
  cx::train::apply_finetune_cli(f, out, device, o);
  o.task = cx::train::parse_task(s.task);
  o.head = cx::train::parse_head_type(s.head);
  o.hidden = s.hidden;
  o.feature = s.feature;
  o.policy = policy_of(s);
  o.epochs = s.epochs > 0 ? s.epochs : 10;
  o.batch = s.batch > 0 ? s.batch : 8;
  o.weight_decay = s.wd >= 0 ? s.wd : 0.0;
  o.schedule = cx::train::parse_schedule(s.schedule);
  o.warmup = s.warmup;
  o.patience = s.patience >= 0 ? s.patience : 3;
  o.balanced = s.balanced;
  o.augment = !no_augment;
  o.augment_options.scale_min = crop_scale;
  o.seed = tool.common().seed;

  cx::train::ImageSet train = cx::train::load_images(*source, labels, where);
  source.reset();
  log_labels(labels, train.truth);
  std::unique_ptr<cx::train::ImageSet> val;
  if (!s.val.empty()) {
    auto vs = cx::data::RecordSource::open({s.val});
    val = std::make_unique<cx::train::ImageSet>(cx::train::load_images(*vs, labels, s.val));
  }
  auto result = cx::train::finetune(train, val.get(), labels, o, cx::train::log_finetune_progress("macro AUROC"));
  if (!result.finished) {
    cx::log::info("stopped after " + std::to_string(result.steps_done) + " updates; continue with --resume " + o.checkpoint_dir);
    return cx::kExitOk;
  }
  if (!tool.common().no_provenance) result.head.info.training["provenance"] = tool.provenance_entry();
  cx::train::write_finetuned_head(out, result, o);
  std::string summary = "fine-tuned " + f.model + " with a " + s.head + " head: " + std::to_string(result.steps_done) + " updates";
  if (result.head.info.metrics.contains("val")) {
    const auto& m = result.head.info.metrics["val"]["macro_auroc"];
    summary += ", validation macro AUROC " + number(m.is_null() ? std::nan("") : m.get<double>());
  }
  cx::log::info(summary + " -> " + out);
  return cx::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-classify",
                     "Classification heads on chest X-ray embeddings: train (linear probe or MLP), predict (TSV for "
                     "cx-eval), finetune (encoder + head from images)");
  auto& app = tool.app();
  app.require_subcommand(1, 1);
  app.fallthrough();

  Shared s;
  double lr = 1e-3;
  bool no_standardize = false;
  std::string solver = "lbfgs", l2 = cx::train::kDefaultL2Grid;
  auto* train = app.add_subcommand("train", "Learn a head on an embedding stream (cls.npy or cx5.npy from cx-embed)");
  train->add_option("inputs", s.inputs, "Embedding streams; - for standard input")->type_name("STREAM");
  add_label_options(train, s);
  train->add_option("--solver", solver, "Linear head: lbfgs (full batch to convergence, L2 chosen by validation AUROC) or adamw; the mlp head trains with adamw")
      ->check(CLI::IsMember({"lbfgs", "adamw"}))
      ->capture_default_str();
  train->add_option("--l2", l2, "lbfgs: L2 strengths to choose from per label, on --val or else a held-out 20% of the records (then refitted on all)")
      ->type_name("GRID")
      ->capture_default_str();
  train->add_option("--epochs", s.epochs, "Epochs at most (default 50)")->check(CLI::PositiveNumber);
  train->add_option("--lr", lr, "AdamW learning rate")->capture_default_str();
  train->add_option("--wd", s.wd, "AdamW weight decay (default 1e-4)");
  train->add_option("--batch", s.batch, "Records per mini-batch (default 256)")->check(CLI::PositiveNumber);
  train->add_option("--patience", s.patience, "Stop after N epochs without a better validation macro AUROC; 0 never (default 5)")
      ->check(CLI::NonNegativeNumber);
  train->add_flag("--no-standardize", no_standardize, "Do not standardise the features (mean 0, sd 1, fitted on the training stream)");
  tool.add_output_option(train);
  tool.add_seed_option(0, train);
  tool.add_threads_option(train);
  tool.add_device_option(train);
  tool.add_provenance_option(train);

  std::string head_dir;
  std::vector<std::string> predict_inputs;
  bool ignore_encoder = false;
  std::int64_t predict_batch = 4096;
  std::string predict_precision = "f32";
  auto* predict = app.add_subcommand("predict", "Score a stream with a head: TSV key, truth columns, <label>.score");
  predict->add_option("head", head_dir, "Head folder (from train or finetune)")->required()->type_name("HEADDIR");
  predict->add_option("inputs", predict_inputs, "Embedding streams (or image streams for a fine-tuned head); - for standard input")
      ->type_name("STREAM");
  predict->add_flag("--ignore-encoder", ignore_encoder, "Predict even when the stream's encoder is not the head's");
  predict->add_option("--batch", predict_batch, "Records per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  predict->add_option("--precision", predict_precision, "Encoder precision for fine-tuned heads on images: f32, or bf16/f16 on CUDA")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  tool.add_output_option(predict);
  tool.add_threads_option(predict);
  tool.add_device_option(predict);

  cx::train::FinetuneCli f;
  bool no_augment = false;
  double crop_scale = 0.08;
  auto* finetune = app.add_subcommand("finetune", "Train encoder and head together from images (a stream with .png)");
  finetune->add_option("inputs", s.inputs, "Image streams; - for standard input")->type_name("STREAM");
  cx::train::add_finetune_options(finetune, f);
  add_label_options(finetune, s);
  finetune->add_option("--epochs", s.epochs, "Epochs (default 10)")->check(CLI::PositiveNumber);
  finetune->add_option("--batch", s.batch, "Images per micro-batch (default 8)")->check(CLI::PositiveNumber);
  finetune->add_option("--wd", s.wd, "AdamW weight decay (default 0)");
  finetune->add_option("--patience", s.patience, "Stop after N epochs without a better validation macro AUROC; 0 never (default 3)")
      ->check(CLI::NonNegativeNumber);
  finetune->add_flag("--no-augment", no_augment, "Train on the deterministic preprocessing instead of the augmentations");
  finetune->add_option("--crop-scale", crop_scale, "Smallest area fraction of the random resized crop")->check(CLI::Range(0.01, 1.0))->capture_default_str();
  tool.add_output_option(finetune);
  tool.add_seed_option(0, finetune);
  tool.add_threads_option(finetune);
  tool.add_device_option(finetune);
  tool.add_provenance_option(finetune);

  return tool.run(argc, argv, [&]() -> int {
    if (train->parsed()) return run_train(tool, s, lr, no_standardize, solver, l2);
    if (predict->parsed()) return run_predict(tool, head_dir, predict_inputs, ignore_encoder, predict_batch, predict_precision);
    return run_finetune(tool, s, f, no_augment, crop_scale);
  });
}
