#include "cx/train/optim.hpp"

#include <cmath>

#include "cx/cli/error.hpp"

namespace cx::train {

AdamW::AdamW(std::vector<ParamGroup> groups, double beta1, double beta2, double eps)
    : groups_(std::move(groups)), beta1_(beta1), beta2_(beta2), eps_(eps) {
  torch::NoGradGuard no_grad;
  for (const auto& g : groups_) {
    if (g.names.size() != g.params.size()) throw Error("AdamW: a group's names and parameters differ in number");
    std::vector<torch::Tensor> m, v;
    for (const auto& p : g.params) {
      m.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
      v.push_back(torch::zeros_like(p, torch::MemoryFormat::Contiguous));
    }
    exp_avg_.push_back(std::move(m));
    exp_avg_sq_.push_back(std::move(v));
    param_steps_.push_back(std::vector<std::int64_t>(g.params.size(), 0));
  }
}

void AdamW::step(double lr_scale) {
  torch::NoGradGuard no_grad;
  ++steps_;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi) {
    auto& g = groups_[gi];
    const double lr = g.lr * lr_scale;
    for (std::size_t i = 0; i < g.params.size(); ++i) {
      torch::Tensor& p = g.params[i];
      const torch::Tensor& grad = p.grad();
      if (!grad.defined()) continue;
      // Bias correction by this parameter's own update count, as torch counts it (a parameter
      // without gradients, e.g. a frozen layer, is not counted).
      const double t = static_cast<double>(++param_steps_[gi][i]);
      const double bc1 = 1.0 - std::pow(beta1_, t);
      const double bc2_sqrt = std::sqrt(1.0 - std::pow(beta2_, t));
      if (g.weight_decay != 0.0) p.mul_(1.0 - lr * g.weight_decay);
      torch::Tensor& m = exp_avg_[gi][i];
      torch::Tensor& v = exp_avg_sq_[gi][i];
      m.mul_(beta1_).add_(grad, 1.0 - beta1_);
      v.mul_(beta2_).addcmul_(grad, grad, 1.0 - beta2_);
      torch::Tensor denom = (v.sqrt() / bc2_sqrt).add_(eps_);
      p.addcdiv_(m, denom, -lr / bc1);
    }
  }
}

void AdamW::zero_grad(bool set_to_none) {
  for (auto& g : groups_)
    for (auto& p : g.params)
      if (set_to_none) {
        p.mutable_grad() = torch::Tensor();
      } else if (p.grad().defined()) {
        p.mutable_grad().detach_();
        p.mutable_grad().zero_();
      }
}

model::NamedTensors AdamW::state() const {
  model::NamedTensors s;
  for (std::size_t gi = 0; gi < groups_.size(); ++gi)
    for (std::size_t i = 0; i < groups_[gi].names.size(); ++i) {
      s.emplace_back(groups_[gi].names[i] + ".exp_avg", exp_avg_[gi][i]);
      s.emplace_back(groups_[gi].names[i] + ".exp_avg_sq", exp_avg_sq_[gi][i]);
      if (param_steps_[gi][i] != steps_)
        s.emplace_back(groups_[gi].names[i] + ".step", torch::full({1}, param_steps_[gi][i], torch::kInt64));
    }
  s.emplace_back("__step__", torch::full({1}, steps_, torch::kInt64));
  return s;
}

void AdamW::load_state(const model::NamedTensors& state, const std::string& where) {
  torch::NoGradGuard no_grad;
  auto find = [&](const std::string& name) -> const torch::Tensor& {
    for (const auto& [k, t] : state)
      if (k == name) return t;
    throw Error(at(where, "optimizer state has no tensor " + name));
  };
  steps_ = find("__step__").item<std::int64_t>();
  for (std::size_t gi = 0; gi < groups_.size(); ++gi)
    for (std::size_t i = 0; i < groups_[gi].names.size(); ++i) {
      const std::string& n = groups_[gi].names[i];
      const torch::Tensor& m = find(n + ".exp_avg");
      const torch::Tensor& v = find(n + ".exp_avg_sq");
      if (!m.sizes().equals(exp_avg_[gi][i].sizes()) || !v.sizes().equals(exp_avg_sq_[gi][i].sizes()))
        throw Error(at(where, "optimizer state of " + n + " has the wrong shape"));
      exp_avg_[gi][i].copy_(m);
      exp_avg_sq_[gi][i].copy_(v);
      // "<name>.step" only where it differs from the optimizer's count (older states have none).
      param_steps_[gi][i] = steps_;
      for (const auto& [k, t] : state)
        if (k == n + ".step") param_steps_[gi][i] = t.item<std::int64_t>();
    }
}

ParamGroup param_group(torch::nn::Module& module, double lr, double weight_decay, const std::string& prefix) {
  ParamGroup g;
  for (const auto& p : module.named_parameters(true)) {
    g.names.push_back(prefix + p.key());
    g.params.push_back(p.value());
  }
  g.lr = lr;
  g.weight_decay = weight_decay;
  return g;
}

std::vector<torch::Tensor> snapshot(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  out.reserve(params.size());
  for (const auto& t : params) out.push_back(t.detach().clone());
  return out;
}

void restore(const std::vector<torch::Tensor>& params, const std::vector<torch::Tensor>& saved) {
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < params.size(); ++i) params[i].copy_(saved[i]);
}

bool EarlyStopping::update(double metric, int epoch, const std::vector<torch::Tensor>& params,
                           const nlohmann::json& report) {
  ++validations_;
  if (std::isnan(metric)) return false;
  if (have_best_ && !(metric > best_)) {
    ++bad_;
    return false;
  }
  best_ = metric;
  best_epoch_ = epoch;
  bad_ = 0;
  have_best_ = true;
  report_ = report;
  saved_ = snapshot(params);
  return true;
}

void EarlyStopping::restore_best(const std::vector<torch::Tensor>& params) const {
  if (have_best_) restore(params, saved_);
}

nlohmann::json EarlyStopping::state() const {
  return {{"best_metric", have_best_ ? nlohmann::json(best_) : nlohmann::json()},
          {"best_epoch", best_epoch_},
          {"bad", bad_},
          {"epochs_validated", validations_},
          {"best_eval", report_}};
}

void EarlyStopping::load_state(const nlohmann::json& state, const std::string& where) {
  try {
    const nlohmann::json& m = state.at("best_metric");
    best_ = m.is_null() ? 0.0 : m.get<double>();
    best_epoch_ = state.at("best_epoch").get<int>();
    bad_ = state.at("bad").get<int>();
    validations_ = state.at("epochs_validated").get<int>();
    report_ = state.at("best_eval");
  } catch (const nlohmann::json::exception& e) {
    throw Error(at(where, std::string("bad early-stopping state: ") + e.what()));
  }
  have_best_ = false;
  saved_.clear();
}

void EarlyStopping::set_best(std::vector<torch::Tensor> saved) {
  saved_ = std::move(saved);
  have_best_ = true;
}

}  // namespace cx::train
