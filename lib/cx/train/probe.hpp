#pragma once
// Training a head on features held in memory (the CXformer linear-probe protocol and an MLP head):
// AdamW, warm-up + cosine (or constant) schedule, mini-batches of rows picked by index from one
// [N, F] tensor in a per-epoch permutation from the seed, optional class balancing, early stopping
// on a validation set by macro AUROC (cx::metrics::auroc, the function cx-eval uses): after each
// epoch the validation AUROC is computed, the best epoch's weights are kept, and training stops
// after `patience` epochs without improvement. Without validation data the last epoch is kept.
// Deterministic: the same data, options and thread count give the same weights, bit for bit.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/train/dataset.hpp"
#include "cx/train/head.hpp"
#include "cx/train/optim.hpp"

namespace cx::train {

struct ProbeOptions {
  Task task = Task::multilabel;
  HeadType head = HeadType::linear;
  std::int64_t hidden = 512;  // mlp width
  LabelPolicy policy;
  int epochs = 50;
  std::int64_t batch = 256;
  double lr = 1e-3;
  double weight_decay = 1e-4;
  Schedule schedule = Schedule::cosine;
  double warmup = 0.05;  // fraction of all updates spent warming up
  int patience = 5;      // epochs without a better validation macro AUROC before stopping; 0: never stop early
  bool balanced = false; // BCE pos_weight = negatives / positives per label (softmax: balanced class weights)
  bool standardize = true;
  std::uint64_t seed = 0;
  torch::Device device = torch::kCPU;  // where the features and the head live while training
};

// Validation AUROC per label over the cells coded 1 or 0 (uncertain and blank left out, as cx-eval's
// default), and their mean over the labels where it is defined (both classes present).
struct Evaluation {
  std::vector<double> auroc;       // NaN where undefined
  std::vector<std::int64_t> n;     // cells scored per label
  double macro = std::nan("");     // NaN when no label is defined
};
Evaluation evaluate_auroc(const torch::Tensor& probabilities, const torch::Tensor& truth);
nlohmann::json evaluation_json(const Evaluation& e, const std::vector<std::string>& labels, std::int64_t records);

struct EpochReport {
  int epoch = 0;              // 1-based
  double train_loss = 0;      // mean over the epoch's batches
  double val_macro_auroc = std::nan("");
  bool best = false;
};

// Trains a head on `train` (its x is standardised in place when options.standardize and nothing
// else holds the tensor: pass it by std::move to avoid a copy). `val` may be null. The result's info holds the labels, feature, policy, encoder (the
// train stream's "model"), training settings and validation metrics. Throws cx::Error when val's
// feature width or encoder differs from train's, when no cell is usable under the policy, and
// cx::UsageError for a binary task with more than one label.
Head train_head(FeatureSet train, const FeatureSet* val, const std::vector<std::string>& labels,
                const std::string& feature, const ProbeOptions& options,
                const std::function<void(const EpochReport&)>& on_epoch = {});

}  // namespace cx::train
