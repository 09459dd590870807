#include "cx/train/loss.hpp"

#include <cmath>

#include "cx/cli/error.hpp"

namespace cx::train {

torch::Tensor masked_bce_with_logits(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& mask, const torch::Tensor& pos_weight) {
  torch::Tensor z = logits.to(torch::kFloat32);
  // log s(z) = -softplus(-z), log(1 - s(z)) = -softplus(z): stable for any z.
  torch::Tensor pos_term = torch::softplus(-z);
  if (pos_weight.defined()) pos_term = pos_term * pos_weight.to(z.device());
  torch::Tensor per_entry = targets * pos_term + (1 - targets) * torch::softplus(z);
  torch::Tensor used = mask.sum().clamp_min(1.0);
  return (per_entry * mask).sum() / used;
}

torch::Tensor masked_softmax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                           const torch::Tensor& row_mask, const torch::Tensor& class_weight) {
  torch::Tensor logp = torch::log_softmax(logits.to(torch::kFloat32), 1);
  torch::Tensor picked = -logp.gather(1, target.unsqueeze(1)).squeeze(1);
  torch::Tensor w = row_mask;
  if (class_weight.defined()) w = w * class_weight.to(logits.device()).index_select(0, target);
  return (picked * w).sum() / w.sum().clamp_min(1e-12);
}

torch::Tensor balanced_pos_weight(const torch::Tensor& targets, const torch::Tensor& mask) {
  torch::Tensor pos = (targets * mask).sum(0).to(torch::kFloat64);
  torch::Tensor neg = ((1 - targets) * mask).sum(0).to(torch::kFloat64);
  torch::Tensor w = torch::where((pos > 0) & (neg > 0), neg / pos.clamp_min(1), torch::ones_like(pos));
  return w.to(torch::kFloat32);
}

torch::Tensor balanced_class_weight(const torch::Tensor& target, const torch::Tensor& row_mask, std::int64_t classes) {
  torch::Tensor counts = torch::zeros({classes}, torch::kFloat64);
  counts.index_add_(0, target, row_mask.to(torch::kFloat64));
  const double n = counts.sum().item<double>();
  torch::Tensor w = torch::where(counts > 0, n / (static_cast<double>(classes) * counts.clamp_min(1)), torch::ones_like(counts));
  return w.to(torch::kFloat32);
}

std::pair<torch::Tensor, torch::Tensor> multiclass_targets(const torch::Tensor& targets, const torch::Tensor& mask) {
  torch::Tensor all_used = (mask > 0.5).all(1);
  torch::Tensor positives = (targets * mask > 0.5).sum(1);
  torch::Tensor row_mask = (all_used & (positives == 1)).to(torch::kFloat32);
  torch::Tensor cls = (targets * mask).argmax(1).to(torch::kInt64);
  return {cls, row_mask};
}

void check_finite_loss(double loss, const std::string& where) {
  if (std::isfinite(loss)) return;
  const std::string v = std::isnan(loss) ? "NaN" : loss > 0 ? "inf" : "-inf";
  throw Error("training diverged: the loss is " + v + " at " + where +
              " (lower --lr, or check the input for extreme values); nothing was written");
}

}  // namespace cx::train
