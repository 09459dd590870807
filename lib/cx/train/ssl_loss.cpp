#include "cx/train/ssl_loss.hpp"

#include <algorithm>
#include <string>

#include "cx/cli/error.hpp"

namespace cx::train {

namespace {

void check_logits(const torch::Tensor& t, std::int64_t out_dim, const char* what) {
  if (!t.defined() || t.dim() != 2 || t.size(1) != out_dim)
    throw cx::Error(std::string(what) + ": expected [N, " + std::to_string(out_dim) + "] logits, got " +
                    (t.defined() ? std::to_string(t.dim()) + "-d " + c10::str(t.sizes()) : std::string("none")));
}

torch::Tensor softmax_center(const torch::Tensor& center, const torch::Tensor& t, double temp) {
  torch::NoGradGuard no_grad;
  return torch::softmax((t.to(torch::kFloat32) - center.to(t.device())) / temp, -1);
}

void ema_center(torch::Tensor& center, const torch::Tensor& batch_center, double momentum) {
  torch::NoGradGuard no_grad;
  center = center.to(batch_center.device()) * momentum + batch_center * (1.0 - momentum);
}

// Sinkhorn-Knopp over Q [K, n local samples]; B is the sample count over every rank.
torch::Tensor sinkhorn(const torch::Tensor& t, double temp, double B, int iterations, const AllReduceSum& all_reduce) {
  torch::NoGradGuard no_grad;
  torch::Tensor Q = torch::exp(t.to(torch::kFloat32) / temp).t().contiguous();
  const double K = static_cast<double>(Q.size(0));
  torch::Tensor total = Q.sum();
  if (all_reduce) all_reduce(total);
  Q.div_(total);
  for (int it = 0; it < iterations; ++it) {
    torch::Tensor rows = Q.sum(1, /*keepdim=*/true);
    if (all_reduce) all_reduce(rows);
    Q.div_(rows).div_(K);
    Q.div_(Q.sum(0, /*keepdim=*/true)).div_(B);
  }
  Q.mul_(B);
  return Q.t().contiguous();
}

// -sum_k t_k log softmax(s / temp)_k per row, float32.
torch::Tensor row_cross_entropy(const torch::Tensor& s, const torch::Tensor& t, double temp) {
  torch::Tensor lsm = torch::log_softmax(s.to(torch::kFloat32) / temp, -1);
  return -(t.to(torch::kFloat32) * lsm).sum(-1);
}

}  // namespace

DinoLoss::DinoLoss(std::int64_t out_dim, double student_temp, double center_momentum)
    : center(torch::zeros({1, out_dim}, torch::kFloat32)),
      student_temp_(student_temp),
      center_momentum_(center_momentum) {
  if (out_dim <= 0) throw cx::Error("DINO loss: out_dim must be positive, got " + std::to_string(out_dim));
}

torch::Tensor DinoLoss::softmax_center_teacher(const torch::Tensor& teacher_logits, double teacher_temp) const {
  check_logits(teacher_logits, center.size(1), "DINO loss");
  return softmax_center(center, teacher_logits, teacher_temp);
}

void DinoLoss::update_center(const torch::Tensor& teacher_logits, const AllReduceSum& all_reduce, int world_size) {
  check_logits(teacher_logits, center.size(1), "DINO loss");
  torch::NoGradGuard no_grad;
  torch::Tensor sum = teacher_logits.to(torch::kFloat32).sum(0, /*keepdim=*/true);
  if (all_reduce) all_reduce(sum);
  const double n = static_cast<double>(teacher_logits.size(0)) * static_cast<double>(std::max(world_size, 1));
  ema_center(center, sum / n, center_momentum_);
}

torch::Tensor DinoLoss::sinkhorn_knopp_teacher(const torch::Tensor& teacher_logits, double teacher_temp,
                                               int iterations, const AllReduceSum& all_reduce, int world_size) const {
  check_logits(teacher_logits, center.size(1), "DINO loss");
  const double B = static_cast<double>(teacher_logits.size(0)) * static_cast<double>(std::max(world_size, 1));
  return sinkhorn(teacher_logits, teacher_temp, B, iterations, all_reduce);
}

torch::Tensor DinoLoss::operator()(const std::vector<torch::Tensor>& student_logits,
                                   const std::vector<torch::Tensor>& teacher_probs) const {
  torch::Tensor total;
  for (const auto& s : student_logits) {
    torch::Tensor lsm = torch::log_softmax(s.to(torch::kFloat32) / student_temp_, -1);
    for (const auto& t : teacher_probs) {
      torch::Tensor term = -(t.to(torch::kFloat32) * lsm).sum(-1).mean();
      total = total.defined() ? total + term : term;
    }
  }
  if (!total.defined()) {
    auto device = !student_logits.empty() ? student_logits.front().device() : torch::Device(torch::kCPU);
    total = torch::zeros({}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  }
  return total;
}

torch::Tensor swap_global_crops(const torch::Tensor& two_crops) {
  if (two_crops.size(0) % 2 != 0)
    throw cx::Error("DINO loss: 2 global crops expected, got an odd row count " + std::to_string(two_crops.size(0)));
  auto halves = two_crops.chunk(2, 0);
  return torch::cat({halves[1], halves[0]}, 0);
}

DinoMulticropLoss dino_multicrop_loss(const DinoLoss& loss, const torch::Tensor& student_global,
                                      const torch::Tensor& student_local, const torch::Tensor& teacher_probs,
                                      std::int64_t n_local_crops) {
  if (student_global.size(0) != teacher_probs.size(0))
    throw cx::Error("DINO loss: " + std::to_string(student_global.size(0)) + " student global rows against " +
                    std::to_string(teacher_probs.size(0)) + " teacher rows");
  const double terms = 2.0 + static_cast<double>(std::max<std::int64_t>(2 * n_local_crops, 1));
  DinoMulticropLoss out;
  out.global = loss({student_global}, {swap_global_crops(teacher_probs)}) * (2.0 / terms);
  if (n_local_crops > 0) {
    const std::int64_t B = teacher_probs.size(0) / 2;
    if (!student_local.defined() || student_local.size(0) != n_local_crops * B)
      throw cx::Error("DINO loss: expected " + std::to_string(n_local_crops * B) + " local-crop rows (" +
                      std::to_string(n_local_crops) + " crops of " + std::to_string(B) + "), got " +
                      (student_local.defined() ? std::to_string(student_local.size(0)) : std::string("none")));
    out.local = loss(student_local.chunk(n_local_crops, 0), teacher_probs.chunk(2, 0)) / terms;
  } else {
    out.local = torch::zeros({}, out.global.options());
  }
  return out;
}

IbotPatchLoss::IbotPatchLoss(std::int64_t out_dim, double student_temp, double center_momentum)
    : center(torch::zeros({1, out_dim}, torch::kFloat32)),
      student_temp_(student_temp),
      center_momentum_(center_momentum) {
  if (out_dim <= 0) throw cx::Error("iBOT loss: out_dim must be positive, got " + std::to_string(out_dim));
}

torch::Tensor IbotPatchLoss::softmax_center_teacher(const torch::Tensor& teacher_logits, double teacher_temp) const {
  check_logits(teacher_logits, center.size(1), "iBOT loss");
  return softmax_center(center, teacher_logits, teacher_temp);
}

void IbotPatchLoss::update_center(const torch::Tensor& teacher_logits, const AllReduceSum& all_reduce,
                                  int world_size) {
  check_logits(teacher_logits, center.size(1), "iBOT loss");
  torch::NoGradGuard no_grad;
  torch::Tensor mean = teacher_logits.size(0) > 0
                           ? teacher_logits.to(torch::kFloat32).mean(0, /*keepdim=*/true)
                           : torch::zeros({1, center.size(1)}, teacher_logits.options().dtype(torch::kFloat32));
  if (all_reduce) all_reduce(mean);
  ema_center(center, mean / static_cast<double>(std::max(world_size, 1)), center_momentum_);
}

torch::Tensor IbotPatchLoss::sinkhorn_knopp_teacher(const torch::Tensor& teacher_logits, double teacher_temp,
                                                    std::int64_t n_masked_patches_all_ranks, int iterations,
                                                    const AllReduceSum& all_reduce) const {
  check_logits(teacher_logits, center.size(1), "iBOT loss");
  if (n_masked_patches_all_ranks <= 0)
    throw cx::Error("iBOT loss: Sinkhorn-Knopp needs masked patches, got " +
                    std::to_string(n_masked_patches_all_ranks));
  return sinkhorn(teacher_logits, teacher_temp, static_cast<double>(n_masked_patches_all_ranks), iterations,
                  all_reduce);
}

torch::Tensor IbotPatchLoss::forward_masked(const torch::Tensor& student_masked_logits,
                                            const torch::Tensor& teacher_probs, const torch::Tensor& masks,
                                            const torch::Tensor& masks_weight) const {
  check_logits(student_masked_logits, center.size(1), "iBOT loss");
  const std::int64_t M = student_masked_logits.size(0);
  if (teacher_probs.sizes() != student_masked_logits.sizes() || masks_weight.dim() != 1 || masks_weight.size(0) != M)
    throw cx::Error("iBOT loss: student " + c10::str(student_masked_logits.sizes()) + ", teacher " +
                    c10::str(teacher_probs.sizes()) + " and weights " + c10::str(masks_weight.sizes()) +
                    " must agree on the masked-token count");
  if (masks.dim() != 2 || masks.size(0) == 0)
    throw cx::Error("iBOT loss: masks must be [B, N] with B > 0, got " + c10::str(masks.sizes()));
  torch::Tensor ce = row_cross_entropy(student_masked_logits, teacher_probs, student_temp_);
  return (ce * masks_weight.to(ce.device(), torch::kFloat32)).sum() / static_cast<double>(masks.size(0));
}

torch::Tensor koleo_loss(const torch::Tensor& x, double eps) {
  if (x.dim() != 2 || x.size(0) < 2)
    throw cx::Error("KoLeo loss: expected [B, D] with B >= 2, got " + c10::str(x.sizes()));
  namespace F = torch::nn::functional;
  torch::Tensor z = F::normalize(x.to(torch::kFloat32), F::NormalizeFuncOptions().p(2).dim(-1).eps(eps));
  torch::Tensor nearest;
  {
    torch::NoGradGuard no_grad;
    torch::Tensor dots = torch::mm(z, z.t());
    dots.fill_diagonal_(-1.0);
    nearest = dots.argmax(1);
  }
  torch::Tensor d = torch::pairwise_distance(z, z.index_select(0, nearest), 2.0, eps);
  return -torch::log(d + eps).mean();
}

}  // namespace cx::train
