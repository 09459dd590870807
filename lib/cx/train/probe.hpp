#pragma once
// Training a head on features held in memory. Two solvers:
//
// lbfgs (the default for the linear head): regularised logistic regression fitted to convergence,
//   as scikit-learn's LogisticRegression and DINOv2's linear evaluation do. Per label (multilabel,
//   binary) the objective is
//     (1 / n_l) sum_i m_il [ pw_l y_il softplus(-z_il) + (1 - y_il) softplus(z_il) ] + l2_l / 2 |w_l|^2
//   (m: the label policy's mask, n_l its count, pw: --balanced pos_weight, bias not penalised;
//   scikit-learn's C is 1 / (l2 n_l)); multiclass is one softmax regression with one l2. Full-batch
//   L-BFGS (torch::optim::LBFGS, strong Wolfe line search) from zero weights, warm-started along the
//   grid from the strongest l2 to the weakest. l2 is chosen per label (one for multiclass) from
//   `l2_grid` by validation AUROC: on the validation stream when one is given (the best fit on the
//   training stream is kept), else on a held-out `val_fraction` of the training records chosen by
//   the seed (the head is then refitted on every training record with the chosen l2).
// adamw (always for the mlp head): AdamW, warm-up + cosine (or constant) schedule, mini-batches of
//   rows picked by index from one [N, F] tensor in a per-epoch permutation from the seed, early
//   stopping on a validation set by macro AUROC (cx::metrics::auroc, the function cx-eval uses):
//   after each epoch the validation AUROC is computed, the best epoch's weights are kept, and
//   training stops after `patience` epochs without improvement. Without validation data the last
//   epoch is kept.
// Both: optional class balancing; deterministic: the same data, options and thread count give the
// same weights, bit for bit.
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

enum class Solver { lbfgs, adamw };
Solver parse_solver(const std::string& name);  // "lbfgs" | "adamw"; else UsageError
std::string solver_name(Solver s);

// The default l2 grid: 1e-6 ... 1 in decades (7 values).
inline constexpr const char* kDefaultL2Grid = "1e-6,1e-5,1e-4,1e-3,0.01,0.1,1";
std::vector<double> default_l2_grid();
// "1e-4,1e-3" -> values (positive, finite, at least one); else UsageError naming --l2.
std::vector<double> parse_l2_grid(const std::string& list);

struct ProbeOptions {
  Task task = Task::multilabel;
  Solver solver = Solver::lbfgs;  // for the linear head; the mlp head always trains with AdamW
  // lbfgs:
  std::vector<double> l2_grid = default_l2_grid();
  double val_fraction = 0.2;   // held out of the training records to choose l2 when no validation stream is given
  int max_iter = 1000;         // L-BFGS iterations per fit at most (near-separable labels under a weak l2 need several hundred)
  double tolerance = 1e-4;     // converged when every |gradient| entry is at most this (scikit-learn's lbfgs tol)
  // adamw:
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

// One report per AdamW epoch, or per l2 of the L-BFGS grid (epoch: its 1-based position, l2 set).
struct EpochReport {
  int epoch = 0;              // 1-based
  double l2 = std::nan("");   // lbfgs: the grid value fitted
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
