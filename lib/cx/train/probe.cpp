#include "cx/train/probe.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cx/cli/error.hpp"
#include "cx/metrics/classification.hpp"
#include "cx/train/loss.hpp"
#include "cx/random/rng.hpp"
#include "cx/util/strings.hpp"

namespace cx::train {

namespace {
constexpr std::uint64_t kShufflePurpose = 1;
constexpr std::uint64_t kSplitPurpose = 4;

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

Solver parse_solver(const std::string& name) {
  if (name == "lbfgs") return Solver::lbfgs;
  if (name == "adamw") return Solver::adamw;
  throw UsageError("--solver " + name + ": expected lbfgs or adamw");
}

std::string solver_name(Solver s) { return s == Solver::adamw ? "adamw" : "lbfgs"; }

std::vector<double> default_l2_grid() { return parse_l2_grid(kDefaultL2Grid); }

std::vector<double> parse_l2_grid(const std::string& list) {
  std::vector<double> g;
  for (const auto& item : util::split_list(list, ',')) {
    std::size_t used = 0;
    double v = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || !std::isfinite(v) || v <= 0)
      throw UsageError("--l2 " + list + ": '" + item + "' is not a positive number");
    g.push_back(v);
  }
  if (g.empty()) throw UsageError("--l2 " + list + ": no value given");
  return g;
}

namespace {

// What both solvers share: the standardised training features, targets and masks under the policy,
// the class weights, and the head being trained.
struct ProbeData {
  torch::Tensor X, Y, M, cls, row_mask, pos_weight, class_weight;
};

// Linear weights and bias of a fit.
struct LinearFit {
  torch::Tensor w, b;  // [L, F], [L]
  std::int64_t evaluations = 0;
  double loss = 0, grad_max = 0;
};

// The regularised objective of the header for rows `rows` (all when undefined), its gradient left
// in w.grad() and b.grad().
torch::Tensor linear_objective(const torch::Tensor& w, const torch::Tensor& b, const ProbeData& d, const torch::Tensor& X,
                               const torch::Tensor& Y, const torch::Tensor& M, const torch::Tensor& cls,
                               const torch::Tensor& row_mask, const torch::Tensor& l2, Task task) {
  torch::Tensor z = at::linear(X, w, b);
  torch::Tensor data;
  if (task == Task::multiclass) {
    // masked_softmax_cross_entropy's value, kept in the features' precision.
    torch::Tensor weight = row_mask.to(z.scalar_type());
    if (d.class_weight.defined()) weight = weight * d.class_weight.to(z.scalar_type()).index_select(0, cls);
    data = -(torch::log_softmax(z, 1).gather(1, cls.unsqueeze(1)).squeeze(1) * weight).sum() / weight.sum().clamp_min(1e-12);
  } else {
    torch::Tensor pos = torch::softplus(-z);
    if (d.pos_weight.defined()) pos = pos * d.pos_weight;
    torch::Tensor per = (Y * pos + (1 - Y) * torch::softplus(z)) * M;
    data = (per.sum(0) / M.sum(0).clamp_min(1.0)).sum();
  }
  return data + 0.5 * (l2.unsqueeze(1) * w * w).sum();
}

LinearFit fit_linear(const ProbeData& d, const torch::Tensor& X, const torch::Tensor& Y, const torch::Tensor& M,
                     const torch::Tensor& cls, const torch::Tensor& row_mask, const torch::Tensor& l2, Task task,
                     const LinearFit& start, const ProbeOptions& o) {
  torch::Tensor w = start.w.detach().clone().requires_grad_(true);
  torch::Tensor b = start.b.detach().clone().requires_grad_(true);
  torch::optim::LBFGS opt({w, b}, torch::optim::LBFGSOptions(1.0)
                                      .max_iter(o.max_iter)
                                      .max_eval(o.max_iter * 5 / 4)
                                      .tolerance_grad(o.tolerance)
                                      .tolerance_change(1e-12)
                                      .history_size(20)
                                      .line_search_fn("strong_wolfe"));
  LinearFit fit;
  auto closure = [&]() -> torch::Tensor {
    torch::AutoGradMode grad_mode(true);
    opt.zero_grad();
    torch::Tensor loss = linear_objective(w, b, d, X, Y, M, cls, row_mask, l2, task);
    loss.backward();
    ++fit.evaluations;
    return loss;
  };
  opt.step(closure);
  // The objective and gradient where L-BFGS stopped (its last evaluation may have been a trial point).
  torch::Tensor loss = closure();
  fit.loss = loss.item<double>();
  check_finite_loss(fit.loss, "the L-BFGS fit");
  fit.grad_max = std::max(w.grad().abs().max().item<double>(), b.grad().abs().max().item<double>());
  fit.w = w.detach();
  fit.b = b.detach();
  return fit;
}

// Index of the best value (ties: the first, the strongest l2); -1 when every value is NaN.
int best_index(const std::vector<double>& values) {
  int best = -1;
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!std::isnan(values[i]) && (best < 0 || values[i] > values[static_cast<std::size_t>(best)])) best = static_cast<int>(i);
  return best;
}

// The grid index nearest (in log scale) to 1 / n: scikit-learn's default C = 1.
int default_index(const std::vector<double>& grid, std::int64_t n) {
  const double target = std::log(1.0 / static_cast<double>(std::max<std::int64_t>(n, 1)));
  int best = 0;
  for (std::size_t i = 1; i < grid.size(); ++i)
    if (std::abs(std::log(grid[i]) - target) < std::abs(std::log(grid[static_cast<std::size_t>(best)]) - target))
      best = static_cast<int>(i);
  return best;
}

void train_lbfgs(Head& head, const ProbeData& d, const FeatureSet& train, const FeatureSet* val, const ProbeOptions& o,
                 const std::function<void(const EpochReport&)>& on_epoch) {
  torch::NoGradGuard no_grad;  // the objective's closure turns grad mode on for itself
  const std::int64_t N = d.X.size(0), F = d.X.size(1), L = head.info.shape.out;
  const auto opts = d.X.options();
  std::vector<double> grid = o.l2_grid;
  std::sort(grid.begin(), grid.end(), std::greater<double>());
  grid.erase(std::unique(grid.begin(), grid.end()), grid.end());
  const int G = static_cast<int>(grid.size());

  // Where l2 is chosen: the validation stream, or a held-out part of the training records (left out
  // of the grid's fits through the masks, so that no copy of the features is made).
  torch::Tensor val_x, val_truth, M = d.M, row_mask = d.row_mask;
  bool held_out = false;
  if (val) {
    val_x = head.standardizer.apply(val->x.to(o.device)).to(torch::kFloat64);
    val_truth = val->truth;
  } else if (G > 1) {
    auto perm = random::permutation(N, random::training_rng(o.seed, kSplitPurpose, 0));
    const std::int64_t n_val =
        std::clamp<std::int64_t>(std::llround(o.val_fraction * static_cast<double>(N)), 1, std::max<std::int64_t>(N - 1, 1));
    torch::Tensor p = torch::from_blob(perm.data(), {N}, torch::kInt64).clone();
    torch::Tensor held = std::get<0>(p.narrow(0, 0, n_val).sort());
    torch::Tensor keep = torch::ones({N}, torch::kFloat32);
    keep.index_fill_(0, held, 0.0);
    keep = keep.to(o.device);
    M = d.M * keep.unsqueeze(1);
    if (row_mask.defined()) row_mask = row_mask * keep;
    val_x = d.X.index_select(0, held.to(o.device));
    val_truth = train.truth.index_select(0, held);
    held_out = true;
  }
  const torch::Tensor& X = d.X, Y = d.Y, cls = d.cls;
  const std::int64_t n_fit = held_out ? N - val_x.size(0) : N;
  LinearFit state;
  state.w = torch::zeros({L, F}, opts);
  state.b = torch::zeros({L}, opts);
  std::vector<LinearFit> fits;
  std::vector<std::vector<double>> auroc(static_cast<std::size_t>(L));  // [label][grid]
  std::vector<double> macro;
  std::int64_t evaluations = 0;
  for (int g = 0; g < G; ++g) {
    torch::Tensor l2 = torch::full({L}, grid[static_cast<std::size_t>(g)], opts);
    state = fit_linear(d, X, Y, M, cls, row_mask, l2, o.task, state, o);
    evaluations += state.evaluations;
    fits.push_back(state);
    EpochReport report;
    report.epoch = g + 1;
    report.l2 = grid[static_cast<std::size_t>(g)];
    report.train_loss = state.loss;
    if (val_x.defined()) {
      torch::Tensor z = at::linear(val_x, state.w, state.b);
      Evaluation e = evaluate_auroc(o.task == Task::multiclass ? torch::softmax(z, 1) : torch::sigmoid(z), val_truth);
      for (std::int64_t l = 0; l < L; ++l) auroc[static_cast<std::size_t>(l)].push_back(e.auroc[static_cast<std::size_t>(l)]);
      macro.push_back(e.macro);
      report.val_macro_auroc = e.macro;
    }
    if (on_epoch) on_epoch(report);
  }


  // The chosen l2 per label (one for multiclass).
  std::vector<int> chosen(static_cast<std::size_t>(L));
  if (o.task == Task::multiclass) {
    int g = best_index(macro);
    if (g < 0) g = default_index(grid, n_fit);
    std::fill(chosen.begin(), chosen.end(), g);
  } else {
    for (std::int64_t l = 0; l < L; ++l) {
      int g = best_index(auroc[static_cast<std::size_t>(l)]);
      if (g < 0) g = default_index(grid, n_fit);
      chosen[static_cast<std::size_t>(l)] = g;
    }
  }
  LinearFit best;
  best.w = torch::empty({L, F}, opts);
  best.b = torch::empty({L}, opts);
  std::vector<double> l2_chosen;
  for (std::int64_t l = 0; l < L; ++l) {
    const auto& f = fits[static_cast<std::size_t>(chosen[static_cast<std::size_t>(l)])];
    best.w[l].copy_(f.w[l]);
    best.b[l].copy_(f.b[l]);
    l2_chosen.push_back(grid[static_cast<std::size_t>(chosen[static_cast<std::size_t>(l)])]);
  }
  const bool refit = held_out;
  LinearFit final_fit = best;
  if (refit) {
    torch::Tensor l2 = torch::tensor(l2_chosen, torch::kFloat64).to(opts);
    final_fit = fit_linear(d, d.X, d.Y, d.M, d.cls, d.row_mask, l2, o.task, best, o);
    evaluations += final_fit.evaluations;
  } else {
    final_fit.grad_max = 0;
    for (std::int64_t l = 0; l < L; ++l)
      final_fit.grad_max = std::max(final_fit.grad_max, fits[static_cast<std::size_t>(chosen[static_cast<std::size_t>(l)])].grad_max);
  }
  head.module->parameters()[0].copy_(final_fit.w);
  head.module->parameters()[1].copy_(final_fit.b);

  nlohmann::json l2_json = nlohmann::json::object();
  for (std::int64_t l = 0; l < L; ++l) l2_json[head.info.labels[static_cast<std::size_t>(l)]] = l2_chosen[static_cast<std::size_t>(l)];
  head.info.training = {{"optimizer", "L-BFGS"},
                        {"solver", "lbfgs"},
                        {"line_search", "strong_wolfe"},
                        {"records", N},
                        {"features", F},
                        {"l2_grid", grid},
                        {"l2", l2_json},
                        {"l2_chosen_on", val ? "validation stream" : G > 1 ? "held-out training records" : "single value"},
                        {"val_fraction", val || G == 1 ? nlohmann::json() : nlohmann::json(o.val_fraction)},
                        {"refit_on_all_training_records", refit},
                        {"max_iter", o.max_iter},
                        {"tolerance", o.tolerance},
                        {"evaluations", evaluations},
                        {"grad_max", final_fit.grad_max},
                        {"converged", final_fit.grad_max <= o.tolerance},
                        {"balanced", o.balanced},
                        {"standardize", o.standardize},
                        {"seed", o.seed},
                        {"loss", o.task == Task::multiclass ? "softmax cross-entropy + l2" : "BCE with logits (masked, per label) + l2"}};
}

void train_adamw(Head& head, const ProbeData& d, const FeatureSet* val, const ProbeOptions& o,
                 const std::function<void(const EpochReport&)>& on_epoch) {
  const torch::Tensor& X = d.X;
  const std::int64_t N = X.size(0), F = X.size(1);
  if (o.batch < 1 || o.epochs < 1) throw UsageError("--batch and --epochs must be at least 1");
  head.module->train();
  AdamW opt({param_group(*head.module, o.lr, o.weight_decay)});

  const std::int64_t per_epoch = (N + o.batch - 1) / o.batch;
  const std::int64_t total = per_epoch * o.epochs;
  const LrSchedule lr_schedule = LrSchedule::with_warmup_fraction(o.schedule, total, o.warmup);

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
        loss = masked_softmax_cross_entropy(logits, d.cls.index_select(0, idx), d.row_mask.index_select(0, idx), d.class_weight);
      else
        loss = masked_bce_with_logits(logits, d.Y.index_select(0, idx), d.M.index_select(0, idx), d.pos_weight);
      opt.zero_grad();
      loss.backward();
      opt.step(lr_schedule(epoch * per_epoch + b));
      loss_sum += loss.detach();
    }
    epochs_run = epoch + 1;
    EpochReport report;
    report.epoch = epoch + 1;
    report.train_loss = loss_sum.item<double>() / static_cast<double>(per_epoch);
    check_finite_loss(report.train_loss, "epoch " + std::to_string(epoch + 1));
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
}

}  // namespace

Head train_head(FeatureSet train, const FeatureSet* val, const std::vector<std::string>& labels,
                const std::string& feature, const ProbeOptions& o,
                const std::function<void(const EpochReport&)>& on_epoch) {
  const std::int64_t F = train.x.size(1), L = static_cast<std::int64_t>(labels.size());
  if (o.task == Task::binary && L != 1)
    throw UsageError("--task binary takes one label, " + std::to_string(L) + " given (use multilabel)");
  if (o.task == Task::multiclass && L < 2) throw UsageError("--task multiclass needs at least two labels");
  const bool lbfgs = o.head == HeadType::linear && o.solver == Solver::lbfgs;
  if (!lbfgs && (o.batch < 1 || o.epochs < 1)) throw UsageError("--batch and --epochs must be at least 1");
  if (lbfgs && (o.l2_grid.empty() || o.max_iter < 1 || !(o.val_fraction > 0 && o.val_fraction < 1)))
    throw UsageError("the L-BFGS probe needs an l2 grid, max_iter >= 1 and a validation fraction in (0, 1)");
  if (val) {
    if (val->x.size(1) != F)
      throw Error("validation features have " + std::to_string(val->x.size(1)) + " values per record, training " +
                  std::to_string(F));
    check_same_encoder(train.header, val->header);
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
  ProbeData d;
  if (lbfgs) {
    // L-BFGS in float64, as scikit-learn: float32 objectives stall its line search short of convergence.
    d.X = train.x.to(o.device, torch::kFloat64);
    train.x = torch::Tensor();
  } else {
    d.X = train.x.to(o.device);
  }

  make_targets(train.truth, o.policy, d.Y, d.M);
  d.Y = d.Y.to(o.device, d.X.scalar_type());
  d.M = d.M.to(o.device, d.X.scalar_type());
  if (o.task == Task::multiclass) {
    std::tie(d.cls, d.row_mask) = multiclass_targets(d.Y, d.M);
    if (d.row_mask.sum().item<double>() == 0)
      throw Error("no training record has exactly one positive label among " + std::to_string(L) + " (multiclass)");
    if (o.balanced) d.class_weight = balanced_class_weight(d.cls.cpu(), d.row_mask.cpu(), L).to(o.device);
  } else {
    if (d.M.sum().item<double>() == 0) throw Error("no usable label cell in the training data under this label policy");
    if (o.balanced) d.pos_weight = balanced_pos_weight(d.Y, d.M);
  }

  head.module = std::make_shared<HeadModule>(head.info.shape);
  head.module->init(o.seed);
  head.module->to(o.device);
  if (lbfgs)
    train_lbfgs(head, d, train, val, o, on_epoch);
  else
    train_adamw(head, d, val, o, on_epoch);
  head.module->eval();
  head.module->to(torch::kCPU);

  if (val) {
    Evaluation e = evaluate_auroc(head.probabilities(val->x), val->truth);
    head.info.metrics["val"] = evaluation_json(e, labels, val->rows());
  }
  return head;
}

}  // namespace cx::train
