#pragma once
// DINOv2's projection head (dinov2/layers/dino_head.py, batch norm off), the head of both the DINO
// (CLS token) and the iBOT (masked patch tokens) objectives:
//   z = mlp(x)                        Linear(in, hidden) GELU [Linear(hidden, hidden) GELU]*(nlayers-2)
//                                     Linear(hidden, bottleneck); nlayers == 1: one Linear(in, bottleneck)
//   z = z / max(||z||_2, eps)         eps 1e-12 (1e-6 when z is float16, whose 1e-12 underflows)
//   logits = W z,  W = g * v / ||v||  prototypes without bias, weight-normalised per output row
//                                     (torch.nn.utils.weight_norm, dim 0): the direction v and the
//                                     length g are the parameters and both receive gradients
// Parameters carry DINOv2's state-dict names relative to the head, so a DINOv2 / CXformer checkpoint's
// `dino_head.*` or `ibot_head.*` tensors load by name: "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", ...
// (the GELUs hold the odd indices), "mlp.weight" / "mlp.bias" when nlayers == 1, "last_layer.weight_g"
// [out, 1] and "last_layer.weight_v" [out, bottleneck]. GELU is the exact (erf) one, as nn.GELU().
// Freezing the prototypes for the first epoch (DINOv2's freeze_last_layer_epochs) is the caller's:
// it drops last_layer's gradients (prototype_parameters()) before the optimiser step. The teacher's
// head is a second DinoHead of the same config whose parameters are copied by name (the class is not
// torch::nn::Cloneable).
#include <cstdint>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace cx::train {

struct DinoHeadConfig {
  std::int64_t in_dim = 384, out_dim = 65536, hidden_dim = 2048, bottleneck_dim = 256, nlayers = 3;
};

// timm's trunc_normal_(t, std, lo, hi) by inverse CDF: u uniform between the bounds' CDF values, then
// erfinv. Never redraws, so the values depend on the generator's seed alone. DINOv2 initialises its
// Linear layers (heads and ViT) and position embeddings this way.
void trunc_normal_(torch::Tensor& t, double std, double lo, double hi, at::Generator& gen);

class DinoHead : public torch::nn::Module {
 public:
  // nlayers below 1 counts as 1 (as DINOv2); the other sizes must be positive (else cx::Error).
  // The parameters start as init_random(0) would leave them.
  explicit DinoHead(DinoHeadConfig c);

  // [N, in] -> [N, out] in x's dtype (any leading shape [..., in] works too).
  torch::Tensor forward(const torch::Tensor& x);

  // Deterministic from `seed` alone (its own CPU generator, drawn in parameter order): MLP weights
  // truncated normal with std 0.02 (bounds +-2, as timm's trunc_normal_, by inverse CDF), MLP biases
  // 0, last_layer.weight_v uniform in +-1/sqrt(bottleneck) (nn.Linear's default), weight_g = 1.
  void init_random(std::uint64_t seed);

  const DinoHeadConfig& config() const { return config_; }

  // The weight-normalised prototype matrix g * v / ||v|| [out, bottleneck] (no grad needed: a view
  // for inspection and tests).
  torch::Tensor prototypes() const;
  // weight_g and weight_v: the parameters DINOv2 freezes during its first epoch.
  std::vector<torch::Tensor> prototype_parameters() const;

 private:
  DinoHeadConfig config_;
  std::vector<std::pair<torch::Tensor, torch::Tensor>> mlp_;  // (weight [out, in], bias [out]) per Linear
  torch::Tensor weight_g_, weight_v_;
};

}  // namespace cx::train
