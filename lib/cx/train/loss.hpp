#pragma once
// Losses of the heads. Masked entries (label policy "ignore") contribute nothing, to the value or
// to the gradient: the per-entry loss is multiplied by the mask before the sum, so their logits
// get an exact zero gradient whatever their target.
#include <string>
#include <torch/torch.h>

namespace cx::train {

// Multi-label (and binary) BCE with logits: sum over used entries of
//   w_l * [ -pw_l * y log s(z) - (1 - y) log(1 - s(z)) ]
// divided by the number of used entries (at least 1). pos_weight [L] may be undefined (1).
torch::Tensor masked_bce_with_logits(const torch::Tensor& logits, const torch::Tensor& targets,
                                     const torch::Tensor& mask, const torch::Tensor& pos_weight = {});

// Multi-class softmax cross-entropy over rows whose row_mask is 1, averaged over those rows
// (class weights [L] optional). target: int64 [B] class index.
torch::Tensor masked_softmax_cross_entropy(const torch::Tensor& logits, const torch::Tensor& target,
                                           const torch::Tensor& row_mask, const torch::Tensor& class_weight = {});

// Class balance for BCE: per label, (used negatives) / (used positives), 1 where a label has no
// positive or no negative; the pos_weight of torch's BCEWithLogitsLoss.
torch::Tensor balanced_pos_weight(const torch::Tensor& targets, const torch::Tensor& mask);

// Class balance for softmax: n / (L * n_c) per class over used rows (sklearn's "balanced"), 1 for absent classes.
torch::Tensor balanced_class_weight(const torch::Tensor& target, const torch::Tensor& row_mask, std::int64_t classes);

// Multi-class targets from a multi-label target matrix: a row is used when every entry is used and
// exactly one is positive; its class is that entry. Returns (class index int64 [N], row mask float [N]).
std::pair<torch::Tensor, torch::Tensor> multiclass_targets(const torch::Tensor& targets, const torch::Tensor& mask);

// Throws cx::Error "training diverged: the loss is nan at <where> (lower --lr ...)" when `loss`
// is not finite: training on would write NaN weights with exit 0.
void check_finite_loss(double loss, const std::string& where);

}  // namespace cx::train
