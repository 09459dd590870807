#pragma once
// AdamW (decoupled weight decay, Loshchilov & Hutter) with parameter groups, written out so that its
// whole state (step count, first and second moments) can be saved and restored bit for bit. The
// update is torch.optim.AdamW's (amsgrad off):
//   p *= 1 - lr * wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// Schedules (lr multipliers and DINOv2's CosineScheduler) are in schedule.hpp.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/model/hf_loader.hpp"
#include "cx/train/schedule.hpp"

namespace cx::train {

struct ParamGroup {
  std::vector<std::string> names;  // unique across groups: the keys of the saved state
  std::vector<torch::Tensor> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

class AdamW {
 public:
  explicit AdamW(std::vector<ParamGroup> groups, double beta1 = 0.9, double beta2 = 0.999, double eps = 1e-8);
  // One update with every group's lr multiplied by lr_scale; parameters without a gradient are skipped.
  void step(double lr_scale = 1.0);
  // Zeroes every gradient in place, or with set_to_none leaves them undefined (torch's
  // set_to_none=True): the next backward then hands each parameter its gradient instead of adding it
  // to zeros, a pass less over every gradient, same values. A parameter the backward does not reach
  // then has no gradient and step() skips it.
  void zero_grad(bool set_to_none = false);
  std::int64_t steps() const { return steps_; }
  const std::vector<ParamGroup>& groups() const { return groups_; }
  // Sets one group's lr and weight decay (schedules applied per update, as DINOv2 sets them).
  void set_group(std::size_t group, double lr, double weight_decay) {
    groups_.at(group).lr = lr;
    groups_.at(group).weight_decay = weight_decay;
  }

  // "<name>.exp_avg", "<name>.exp_avg_sq" for every parameter, "__step__" (int64 [1]: updates), and
  // "<name>.step" for a parameter updated fewer times (skipped while it had no gradient).
  model::NamedTensors state() const;
  // Throws cx::Error naming `where` when a tensor is missing or of the wrong shape.
  void load_state(const model::NamedTensors& state, const std::string& where);

 private:
  std::vector<ParamGroup> groups_;
  double beta1_, beta2_, eps_;
  std::int64_t steps_ = 0;
  std::vector<std::vector<torch::Tensor>> exp_avg_, exp_avg_sq_;
  std::vector<std::vector<std::int64_t>> param_steps_;
};

// One parameter group of every parameter of `module`, named as named_parameters() names them.
ParamGroup param_group(torch::nn::Module& module, double lr, double weight_decay, const std::string& prefix = "");

// The values of parameters, copied (the best epoch's weights while early stopping), and written back.
std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& params);
void restore(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& saved);

// Early stopping on a validation metric, higher is better: after each validation, update() keeps a
// copy of the parameters (and the validation's report) when the metric is the best so far (NaN
// counts for nothing; the first defined metric is always a best); should_stop() once `patience`
// validations in a row brought no improvement (patience 0: never); restore_best() writes the best
// copy back (when there is one). A resumable trainer saves state() and best() in its checkpoint and
// gives them back with load_state() and set_best().
class EarlyStopping {
 public:
  explicit EarlyStopping(int patience) : patience_(patience) {}
  // Counts a validation; true when `metric` is a new best (the parameters were copied).
  bool update(double metric, int epoch, const std::vector<torch::Tensor>& params,
              const nlohmann::json& report = nlohmann::json());
  bool should_stop() const { return have_best_ && patience_ > 0 && bad_ >= patience_; }
  bool have_best() const { return have_best_; }
  int best_epoch() const { return best_epoch_; }
  double best_metric() const { return best_; }
  int validations() const { return validations_; }
  const nlohmann::json& best_report() const { return report_; }
  const std::vector<torch::Tensor>& best() const { return saved_; }  // empty without a best
  void restore_best(const std::vector<torch::Tensor>& params) const;

  // {"best_metric" (null without a best), "best_epoch", "bad", "epochs_validated", "best_eval"}.
  nlohmann::json state() const;
  // The counters and best metric of state(); throws cx::Error naming `where` on a malformed object.
  void load_state(const nlohmann::json& state, const std::string& where);
  void set_best(std::vector<torch::Tensor> saved);

 private:
  int patience_;
  double best_ = 0;
  int best_epoch_ = 0, bad_ = 0, validations_ = 0;
  bool have_best_ = false;
  nlohmann::json report_;
  std::vector<torch::Tensor> saved_;
};

}  // namespace cx::train
