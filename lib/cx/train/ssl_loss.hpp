#pragma once
// DINOv2's self-supervised objectives (dinov2/loss/), for cx-pretrain:
//   DinoLoss        cross-entropy between teacher probabilities and student log-softmax on CLS-token
//                   head outputs: sum over (student s, teacher t) pairs of
//                   -mean_rows sum_k t_k log softmax(s / student_temp)_k
//   IbotPatchLoss   the same cross-entropy on the masked patch tokens of the global crops, each token
//                   weighted by 1 / (masked tokens of its image), summed, divided by the image count
//   koleo_loss      Kozachenko-Leonenko regulariser: -mean log(distance to the nearest other row)
// The teacher's targets come from one of two normalisations, both without gradient and in float32:
//   softmax centering  softmax((t - center) / teacher_temp); center is an EMA of the teacher's mean
//                      output: center = m center + (1 - m) batch_mean. DINOv2 applies the update of step
//                      i lazily at step i+1, before centering; calling softmax_center_teacher(t_i) and
//                      then update_center(t_i) at each step gives the same values.
//   Sinkhorn-Knopp     Q = exp(t / teacher_temp) over (prototype K, sample B), normalised to sum 1,
//                      then `iterations` times: rows to 1/K, columns to 1/B; columns scaled back to sum 1.
//                      Row sums (and the first total) are summed over every rank, so each rank's
//                      targets equal the single-process result over the whole batch.
// Multi-process training passes an AllReduceSum (in-place sum across ranks, e.g. c10d's all_reduce);
// an empty one means a single process. Every rank must make the same calls in the same order.
//
// How DINOv2 combines them per step (ssl_meta_arch.py), with 2 global crops and n_local local crops,
// B images per rank, rows crop-major (crop 0's B rows, then crop 1's):
//   terms   = 2 + max(2 n_local, 1)
//   dino    = dino.loss_weight * (dino_multicrop_loss(...).global + .local)   (divided by `terms` inside)
//   koleo   = dino.koleo_loss_weight * sum over the 2 global crops of koleo_loss(student CLS backbone
//             output of that crop [B, D])
//   ibot    = ibot.loss_weight * IbotPatchLoss::forward_masked(...)   (DINOv2's scales 2 * 1/2 cancel)
// The teacher's targets are computed from global crops only; the student's global crop A is matched
// with the teacher's crop B and vice versa (swap_global_crops), local crops with both.
#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

namespace cx::train {

using AllReduceSum = std::function<void(torch::Tensor&)>;  // in-place sum across ranks; empty: one process

class DinoLoss {
 public:
  DinoLoss(std::int64_t out_dim, double student_temp = 0.1, double center_momentum = 0.9);

  // softmax((t - center) / temp) over the last dim, float32, no grad. t: [N, out].
  torch::Tensor softmax_center_teacher(const torch::Tensor& teacher_logits, double teacher_temp) const;
  // center = m center + (1 - m) (sum of every rank's rows) / (rows * world_size); each rank must pass
  // the same number of rows (as DINOv2 assumes).
  void update_center(const torch::Tensor& teacher_logits, const AllReduceSum& all_reduce = {}, int world_size = 1);
  // Targets [N, out] (rows sum to 1), float32, no grad; B = N * world_size samples in all.
  torch::Tensor sinkhorn_knopp_teacher(const torch::Tensor& teacher_logits, double teacher_temp, int iterations = 3,
                                       const AllReduceSum& all_reduce = {}, int world_size = 1) const;
  // Sum over every (student, teacher) pair of the mean-over-rows cross-entropy; student logits are
  // taken in float32. A scalar float32 tensor (0 when either list is empty).
  torch::Tensor operator()(const std::vector<torch::Tensor>& student_logits,
                           const std::vector<torch::Tensor>& teacher_probs) const;

  double student_temp() const { return student_temp_; }
  double center_momentum() const { return center_momentum_; }

  torch::Tensor center;  // [1, out] float32, starts at 0 (saved in checkpoints by the caller)

 private:
  double student_temp_, center_momentum_;
};

// The student's global crop i against the teacher's other global crop: rows [2B, ...] crop-major,
// returned as [crop 1; crop 0]. Sinkhorn-Knopp and centering commute with this row swap.
torch::Tensor swap_global_crops(const torch::Tensor& two_crops);

// DINOv2's CLS-token terms for 2 global and n_local local crops, already divided by
// terms = 2 + max(2 n_local, 1):
//   global = 2 * loss({student_global}, {swap_global_crops(teacher_probs)}) / terms
//   local  = loss(student_local.chunk(n_local), teacher_probs.chunk(2)) / terms   (0 when n_local == 0)
// student_global [2B, out], student_local [n_local B, out] (undefined when n_local == 0), teacher_probs
// [2B, out] in the crops' own order (not swapped: this function swaps).
struct DinoMulticropLoss {
  torch::Tensor global, local;
};
DinoMulticropLoss dino_multicrop_loss(const DinoLoss& loss, const torch::Tensor& student_global,
                                      const torch::Tensor& student_local, const torch::Tensor& teacher_probs,
                                      std::int64_t n_local_crops);

class IbotPatchLoss {
 public:
  IbotPatchLoss(std::int64_t out_dim, double student_temp = 0.1, double center_momentum = 0.9);

  // As DinoLoss's, on the masked tokens [M, out].
  torch::Tensor softmax_center_teacher(const torch::Tensor& teacher_logits, double teacher_temp) const;
  // center = m center + (1 - m) (sum over ranks of each rank's mean over its M rows) / world_size:
  // DINOv2's rule (the mean of the ranks' means, ranks may mask different counts). A rank with no
  // masked token contributes a zero mean.
  void update_center(const torch::Tensor& teacher_logits, const AllReduceSum& all_reduce = {}, int world_size = 1);
  // As DinoLoss's with B = n_masked_patches_all_ranks (the masked tokens of every rank together).
  torch::Tensor sinkhorn_knopp_teacher(const torch::Tensor& teacher_logits, double teacher_temp,
                                       std::int64_t n_masked_patches_all_ranks, int iterations = 3,
                                       const AllReduceSum& all_reduce = {}) const;
  // -sum_m masks_weight[m] sum_k t[m,k] log softmax(s[m] / student_temp)_k / B, with B = masks.size(0)
  // (the global-crop images of this rank, masked or not). student [M, out], teacher [M, out] in the
  // order of the flat mask indices (collate_masks), masks bool [B, N], masks_weight [M].
  torch::Tensor forward_masked(const torch::Tensor& student_masked_logits, const torch::Tensor& teacher_probs,
                               const torch::Tensor& masks, const torch::Tensor& masks_weight) const;

  double student_temp() const { return student_temp_; }
  double center_momentum() const { return center_momentum_; }

  // [1, out] float32, starts at 0. DINOv2 stores ibot_patch_loss.center as [1, 1, out]: reshape on load.
  torch::Tensor center;

 private:
  double student_temp_, center_momentum_;
};

// DINOv2's KoLeoLoss on x [B, D] (B >= 2), in float32 whatever x's dtype: rows L2-normalised
// (eps), each row's nearest other row by inner product (no gradient through the choice),
// -mean log(||x_i - x_nn(i) + eps||_2 + eps). The loss weight is the caller's.
torch::Tensor koleo_loss(const torch::Tensor& x, double eps = 1e-8);

}  // namespace cx::train
