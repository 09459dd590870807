#include "cx/train/probe.hpp"

#include <cmath>

#include "cx/cli/error.hpp"
#include "cx/metrics/classification.hpp"
#include "cx/train/loss.hpp"
#include "cx/random/rng.hpp"

namespace cx::train {

namespace {
constexpr std::uint64_t kShufflePurpose = 1;

std::string sha_of(const nlohmann::json& header) {
  if (!header.contains("model") || !header["model"].is_object()) return "";
  return header["model"].value("sha256", "");
}
}  // namespace

Evaluation evaluate_auroc(const torch::Tensor& probabilities, const torch::Tensor& truth) {
  torch::Tensor p = probabilities.to(torch::kCPU, torch::kFloat64).contiguous();
  torch::Tensor t = truth.to(torch::kCPU).contiguous();
  const std::int64_t N = p.size(0), L = p.size(1);
  const double* ps = p.data_ptr<double>();
  const std::int8_t* ts = t.data_ptr<std::int8_t>();
  Evaluation e;
  double sum = 0;
  int defined = 0;
  for (std::int64_t l = 0; l < L; ++l) {
    std::vector<double> scores;
    std::vector<std::uint8_t> y;
    for (std::int64_t i = 0; i < N; ++i) {
      const std::int8_t c = ts[i * L + l];
      if (c != 0 && c != 1) continue;
      scores.push_back(ps[i * L + l]);
      y.push_back(static_cast<std::uint8_t>(c));
    }
    const double a = metrics::auroc(scores, y);
    e.auroc.push_back(a);
    e.n.push_back(static_cast<std::int64_t>(y.size()));
    if (!std::isnan(a)) {
      sum += a;
      ++defined;
    }
  }
  if (defined > 0) e.macro = sum / defined;
  return e;
}

nlohmann::json evaluation_json(const Evaluation& e, const std::vector<std::string>& labels, std::int64_t records) {
  nlohmann::json auroc = nlohmann::json::object(), n = nlohmann::json::object();
  for (std::size_t l = 0; l < labels.size(); ++l) {
    auroc[labels[l]] = std::isnan(e.auroc[l]) ? nlohmann::json() : nlohmann::json(e.auroc[l]);
    n[labels[l]] = e.n[l];
  }
  return {{"records", records},
          {"macro_auroc", std::isnan(e.macro) ? nlohmann::json() : nlohmann::json(e.macro)},
          {"auroc", auroc},
          {"n", n}};
}

Head train_head(FeatureSet train, const FeatureSet* val, const std::vector<std::string>& labels,
                const std::string& feature, const ProbeOptions& o,
                const std::function<void(const EpochReport&)>& on_epoch) {
  const std::int64_t N = train.rows(), F = train.x.size(1), L = static_cast<std::int64_t>(labels.size());
  if (o.task == Task::binary && L != 1)
    throw UsageError("--task binary takes one label, " + std::to_string(L) + " given (use multilabel)");
  if (o.task == Task::multiclass && L < 2) throw UsageError("--task multiclass needs at least two labels");
  if (o.batch < 1 || o.epochs < 1) throw UsageError("--batch and --epochs must be at least 1");
  if (val) {
    if (val->x.size(1) != F)
      throw Error("validation features have " + std::to_string(val->x.size(1)) + " values per record, training " +
                  std::to_string(F));
    const std::string a = sha_of(train.header), b = sha_of(val->header);
    if (!a.empty() && !b.empty() && a != b)
      throw Error("the validation stream was embedded with another encoder (sha256 " + b.substr(0, 12) +
                  ") than the training stream (" + a.substr(0, 12) + ")");
  }

  Head head;
  head.info.task = o.task;
  head.info.labels = labels;
  head.info.feature = feature;
  head.info.policy = o.policy;
  head.info.shape = {o.head, F, o.head == HeadType::mlp ? o.hidden : 0, L};
  if (train.header.contains("model") && train.header["model"].is_object()) head.info.encoder = train.header["model"];

  if (o.standardize) {
    // In place when the caller moved the features in; a tensor still shared with the caller is
    // copied first, so that its data never changes under it.
    if (train.x.use_count() > 1) train.x = train.x.clone();
    head.standardizer = Standardizer::fit(train.x);
    train.x.sub_(head.standardizer.mean).div_(head.standardizer.std);  // same arithmetic as Standardizer::apply
  }
  const torch::Tensor X = train.x.to(o.device);

  torch::Tensor Y, M, cls, row_mask, pos_weight, class_weight;
  make_targets(train.truth, o.policy, Y, M);
  Y = Y.to(o.device);
  M = M.to(o.device);
  if (o.task == Task::multiclass) {
    std::tie(cls, row_mask) = multiclass_targets(Y, M);
    if (row_mask.sum().item<double>() == 0)
      throw Error("no training record has exactly one positive label among " + std::to_string(L) + " (multiclass)");
    if (o.balanced) class_weight = balanced_class_weight(cls.cpu(), row_mask.cpu(), L).to(o.device);
  } else {
    if (M.sum().item<double>() == 0) throw Error("no usable label cell in the training data under this label policy");
    if (o.balanced) pos_weight = balanced_pos_weight(Y, M);
  }

  head.module = std::make_shared<HeadModule>(head.info.shape);
  head.module->init(o.seed);
  head.module->to(o.device);
  head.module->train();
  AdamW opt({param_group(*head.module, o.lr, o.weight_decay)});

  const std::int64_t per_epoch = (N + o.batch - 1) / o.batch;
  const std::int64_t total = per_epoch * o.epochs;
  const auto warmup = static_cast<std::int64_t>(std::llround(o.warmup * static_cast<double>(total)));

  // The rows of a batch are gathered into one reused buffer: no allocation (and no first-touch page
  // faults) per step. Autograd keeps it only until the step's backward, before the next gather.
  torch::Tensor batch_buffer = torch::empty({std::min(o.batch, N), F}, X.options());
  EarlyStopping stopping(o.patience);
  int epochs_run = 0;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    auto perm_v = random::permutation(N, random::training_rng(o.seed, kShufflePurpose, static_cast<std::uint64_t>(epoch)));
    torch::Tensor perm = torch::from_blob(perm_v.data(), {N}, torch::kInt64).to(o.device);
    torch::Tensor loss_sum = torch::zeros({}, torch::kFloat64);
    for (std::int64_t b = 0; b < per_epoch; ++b) {
      const std::int64_t begin = b * o.batch, count = std::min(o.batch, N - begin);
      torch::Tensor idx = perm.narrow(0, begin, count);
      torch::Tensor xb = batch_buffer.narrow(0, 0, count);
      at::index_select_out(xb, X, 0, idx);
      torch::Tensor logits = head.module->forward(xb);
      torch::Tensor loss;
      if (o.task == Task::multiclass)
        loss = masked_softmax_cross_entropy(logits, cls.index_select(0, idx), row_mask.index_select(0, idx), class_weight);
      else
        loss = masked_bce_with_logits(logits, Y.index_select(0, idx), M.index_select(0, idx), pos_weight);
      opt.zero_grad();
      loss.backward();
      opt.step(lr_scale(o.schedule, epoch * per_epoch + b, total, warmup));
      loss_sum += loss.detach();
    }
    epochs_run = epoch + 1;
    EpochReport report;
    report.epoch = epoch + 1;
    report.train_loss = loss_sum.item<double>() / static_cast<double>(per_epoch);
    if (val) {
      head.module->eval();
      Evaluation e = evaluate_auroc(head.probabilities(val->x), val->truth);
      head.module->train();
      report.val_macro_auroc = e.macro;
      report.best = stopping.update(e.macro, epoch + 1, head.module->parameters());
    }
    if (on_epoch) on_epoch(report);
    if (stopping.should_stop()) break;
  }
  stopping.restore_best(head.module->parameters());
  head.module->eval();
  head.module->to(torch::kCPU);

  head.info.training = {{"optimizer", "AdamW"},
                        {"records", N},
                        {"features", F},
                        {"epochs", o.epochs},
                        {"epochs_run", epochs_run},
                        {"best_epoch", stopping.have_best() ? nlohmann::json(stopping.best_epoch()) : nlohmann::json()},
                        {"batch", o.batch},
                        {"lr", o.lr},
                        {"weight_decay", o.weight_decay},
                        {"schedule", schedule_name(o.schedule)},
                        {"warmup", o.warmup},
                        {"patience", o.patience},
                        {"balanced", o.balanced},
                        {"standardize", o.standardize},
                        {"seed", o.seed},
                        {"loss", o.task == Task::multiclass ? "softmax cross-entropy" : "BCE with logits (masked)"}};
  if (val) {
    Evaluation e = evaluate_auroc(head.probabilities(val->x), val->truth);
    head.info.metrics["val"] = evaluation_json(e, labels, val->rows());
  }
  return head;
}

}  // namespace cx::train
