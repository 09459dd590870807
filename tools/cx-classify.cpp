// cx-classify: classification heads on embeddings (the CXformer linear-probe protocol, an MLP head),
// predictions in the table cx-eval reads, and fine-tuning of encoder + head from images.
//   cx-classify train train.cx --val val.cx -o head/
//   cx-classify predict head/ test.cx | cx-eval auroc -
//   cx-classify finetune images.cx --model CXformer-small --val val.cx -o head/
// See man/cx-classify.1.
#include <algorithm>
#include <cmath>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/names.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/record_source.hpp"
#include "cx/model/runtime.hpp"
#include "cx/train/dataset.hpp"
#include "cx/train/finetune.hpp"
#include "cx/train/finetune_cli.hpp"
#include "cx/train/head.hpp"
#include "cx/train/predict.hpp"
#include "cx/train/probe.hpp"

namespace {

using cx::cli::Tool;
using cx::log::number;
// The shared options of train and finetune.
constexpr unsigned kTraining = Tool::kOutput | Tool::kSeed | Tool::kThreads | Tool::kDevice | Tool::kProvenance;

// What train and finetune share: the labels and their policy, the head, the feature, validation,
// and the loop (each subcommand's defaults set where it is declared).
struct HeadCli {
  std::vector<std::string> inputs;
  std::string val;
  std::string feature = "cx5";
  std::string head = "linear";
  std::int64_t hidden = 512;
  std::string task = "multilabel";
  std::string labels, preset;
  std::string uncertain = "ignore", blank = "zeros";
  bool balanced = false;
  cx::train::LoopCli loop;
};

void add_head_options(CLI::App* sub, HeadCli& s, const std::string& batch_help) {
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
  cx::train::add_loop_options(sub, s.loop, batch_help, "macro AUROC");
}

// The label policy of --uncertain and --blank.
cx::data::LabelPolicy policy_of(const HeadCli& s) {
  return {cx::data::parse_uncertain_policy(s.uncertain), cx::data::parse_blank_policy(s.blank)};
}

template <class Options>
void apply_head_cli(const HeadCli& s, Options& o) {
  o.task = cx::train::parse_task(s.task);
  o.head = cx::train::parse_head_type(s.head);
  o.hidden = s.hidden;
  o.policy = policy_of(s);
  o.balanced = s.balanced;
  cx::train::apply_loop_cli(s.loop, o);
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

// The validation macro AUROC of a head, for the summary line ("" when there was no validation).
std::string val_auroc(const cx::train::HeadInfo& info, const std::string& lead) {
  if (!info.metrics.contains("val")) return "";
  const auto& m = info.metrics["val"]["macro_auroc"];
  return lead + "validation macro AUROC " + number(m.is_null() ? std::nan("") : m.get<double>());
}

// ---- train: the linear probe / MLP head on embeddings (options, then the run) -------------------
struct TrainCli : HeadCli {
  double lr = 1e-3;
  bool no_standardize = false;
  std::string solver = "lbfgs";
  std::string l2 = cx::train::kDefaultL2Grid;
  TrainCli() { loop = {50, 256, 1e-4, 5}; }
};

CLI::App* add_train(cx::cli::Tool& tool, TrainCli& t) {
  auto* train = tool.app().add_subcommand("train", "Learn a head on an embedding stream (cls.npy or cx5.npy from cx-embed)");
  train->add_option("inputs", t.inputs, "Embedding streams; - for standard input")->type_name("STREAM");
  add_head_options(train, t, "Records per mini-batch");
  train->add_option("--solver", t.solver,
                    "Linear head: lbfgs (full batch to convergence, L2 chosen by validation AUROC) or adamw; the mlp "
                    "head trains with adamw")
      ->check(CLI::IsMember({"lbfgs", "adamw"}))
      ->capture_default_str();
  train->add_option("--l2", t.l2,
                    "lbfgs: L2 strengths to choose from per label, on --val or else a held-out 20% of the records (then "
                    "refitted on all)")
      ->type_name("GRID")
      ->capture_default_str();
  train->add_option("--lr", t.lr, "AdamW learning rate")->capture_default_str();
  train->add_flag("--no-standardize", t.no_standardize, "Do not standardise the features (mean 0, sd 1, fitted on the training stream)");
  tool.add_shared_options(kTraining, train);
  return train;
}

int run_train(cx::cli::Tool& tool, const TrainCli& t) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = cx::train::head_folder_output(tool.common().output, "train");
  auto inputs = tool.inputs_or_stdin(t.inputs);
  if (t.val == "-" && std::count(inputs.begin(), inputs.end(), "-")) throw cx::UsageError("standard input can feed one stream only");
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = cx::cli::input_name(inputs[0]);
  const auto labels = cx::train::choose_labels(source->header(), t.labels, t.preset, where);
  cx::train::FeatureSet train = cx::train::load_features(*source, t.feature, labels, where);
  source.reset();
  cx::log::debug("read " + std::to_string(train.rows()) + " records x " + std::to_string(train.x.size(1)) + " features from " + where);
  log_labels(labels, train.truth);
  std::unique_ptr<cx::train::FeatureSet> val;
  if (!t.val.empty()) {
    auto vs = cx::data::RecordSource::open({t.val});
    val = std::make_unique<cx::train::FeatureSet>(cx::train::load_features(*vs, t.feature, labels, t.val));
  }

  cx::train::ProbeOptions o;
  apply_head_cli(t, o);
  o.solver = cx::train::parse_solver(t.solver);
  o.l2_grid = cx::train::parse_l2_grid(t.l2);
  o.lr = t.lr;
  o.standardize = !t.no_standardize;
  o.seed = tool.common().seed;
  o.device = device;

  cx::train::Head head = cx::train::train_head(std::move(train), val.get(), labels, t.feature, o, [&](const cx::train::EpochReport& r) {
    if (!std::isnan(r.l2))
      cx::log::debug("l2 " + number(r.l2) + ": train objective " + number(r.train_loss, 5) + ", " +
                     (val ? "validation" : "held-out") + " macro AUROC " + number(r.val_macro_auroc));
    else
      cx::log::debug("epoch " + std::to_string(r.epoch) + ": train loss " + number(r.train_loss, 5) +
                     (val ? ", val macro AUROC " + number(r.val_macro_auroc) + (r.best ? " (best)" : "") : ""));
  });
  if (!tool.common().no_provenance) head.info.training["provenance"] = tool.provenance_entry();
  cx::cli::write_folder_atomic(out, [&](const std::string& tmp) { cx::train::write_head_files(tmp, head); });
  const auto& tr = head.info.training;
  std::string summary = "trained a " + t.head + " head on " + std::to_string(tr["records"].get<std::int64_t>()) + " records, " +
                        std::to_string(labels.size()) + " label(s), " +
                        (tr.contains("epochs_run") ? std::to_string(tr["epochs_run"].get<int>()) + " epoch(s)"
                                                   : "L-BFGS " + std::to_string(tr["evaluations"].get<std::int64_t>()) +
                                                         " evaluations" + (tr["converged"].get<bool>() ? "" : " (not converged)"));
  if (head.info.metrics.contains("val"))
    summary += (tr.contains("best_epoch") ? "; best epoch " + tr["best_epoch"].dump() + "," : ";") + val_auroc(head.info, " ");
  cx::log::info(summary + " -> " + out);
  return cx::kExitOk;
}
// ---- end of train --------------------------------------------------------------------------------

struct PredictCli {
  std::string head_dir;
  std::vector<std::string> inputs;
  bool ignore_encoder = false;
  std::int64_t batch = 4096;
  std::string precision = "f32";
};

int run_predict(cx::cli::Tool& tool, const PredictCli& c) {
  cx::model::set_threads(tool.threads());
  cx::train::PredictOptions o;
  o.device = cx::model::parse_device(tool.common().device);
  o.precision = cx::model::parse_precision(c.precision, o.device);
  o.batch = c.batch;
  o.ignore_encoder = c.ignore_encoder;
  cx::train::Head head = cx::train::load_head(c.head_dir);
  const auto inputs = tool.inputs_or_stdin(c.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = cx::cli::input_name(inputs[0]);
  cx::cli::OutputFile out(tool.common().output, false);
  cx::train::PredictionTable table(head.info.labels, source->header(), [&](const std::string& line) { out.write(line); });
  cx::train::HeadPredictor predictor(std::move(head), c.head_dir, source->header(), where, o);
  const auto stats = cx::train::predict_table(*source, predictor, table, o.batch);
  out.commit();
  cx::log::debug("predicted " + std::to_string(stats.records) + " records with " + c.head_dir + " in " + number(stats.seconds, 3) +
                 " s (head " + number(stats.head_seconds, 3) + " s, encoder " + number(stats.encoder_seconds, 3) + " s)");
  return cx::kExitOk;
}

int run_finetune(cx::cli::Tool& tool, const HeadCli& s, const cx::train::FinetuneCli& f) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = cx::train::head_folder_output(tool.common().output, "finetune");
  auto inputs = tool.inputs_or_stdin(s.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = cx::cli::input_name(inputs[0]);
  const auto labels = cx::train::choose_labels(source->header(), s.labels, s.preset, where);

  cx::train::FinetuneOptions o;
  cx::train::apply_finetune_cli(f, out, device, o);
  apply_head_cli(s, o);
  o.feature = s.feature;
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
    cx::train::log_stopped_for_resume(result.steps_done, "--resume " + o.checkpoint_dir);
    return cx::kExitOk;
  }
  if (!tool.common().no_provenance) result.head.info.training["provenance"] = tool.provenance_entry();
  cx::train::write_finetuned_head(out, result, o);
  cx::log::info("fine-tuned " + f.model + " with a " + s.head + " head: " + std::to_string(result.steps_done) + " updates" +
                val_auroc(result.head.info, ", ") + " -> " + out);
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

  TrainCli t;
  auto* train = add_train(tool, t);

  PredictCli p;
  auto* predict = app.add_subcommand("predict", "Score a stream with a head: TSV key, truth columns, <label>.score");
  predict->add_option("head", p.head_dir, "Head folder (from train or finetune)")->required()->type_name("HEADDIR");
  predict->add_option("inputs", p.inputs, "Embedding streams (or image streams for a fine-tuned head); - for standard input")
      ->type_name("STREAM");
  predict->add_flag("--ignore-encoder", p.ignore_encoder, "Predict even when the stream's encoder is not the head's");
  predict->add_option("--batch", p.batch, "Records per forward pass")->check(CLI::PositiveNumber)->capture_default_str();
  predict->add_option("--precision", p.precision, "Encoder precision for fine-tuned heads on images: f32, or bf16/f16 on CUDA")
      ->check(CLI::IsMember({"f32", "bf16", "f16"}))
      ->capture_default_str();
  tool.add_shared_options(Tool::kOutput | Tool::kThreads | Tool::kDevice, predict);

  HeadCli ft;  // the loop's defaults for fine-tuning: 10 epochs, batch 8, no weight decay, patience 3
  cx::train::FinetuneCli f;
  auto* finetune = app.add_subcommand("finetune", "Train encoder and head together from images (a stream with .png)");
  finetune->add_option("inputs", ft.inputs, "Image streams; - for standard input")->type_name("STREAM");
  cx::train::add_finetune_options(finetune, f);
  add_head_options(finetune, ft, "Images per micro-batch");
  tool.add_shared_options(kTraining, finetune);

  return tool.run(argc, argv, [&]() -> int {
    if (train->parsed()) return run_train(tool, t);
    if (predict->parsed()) return run_predict(tool, p);
    return run_finetune(tool, ft, f);
  });
}
