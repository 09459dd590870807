#include "cx/train/ssl_head.hpp"

#include <cmath>
#include <string>

#include "cx/cli/error.hpp"
#include "cx/model/gemm.hpp"

namespace cx::train {

void trunc_normal_(torch::Tensor& t, double std, double lo, double hi, at::Generator& gen) {
  const auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double a = cdf(lo / std), b = cdf(hi / std);
  t.uniform_(2.0 * a - 1.0, 2.0 * b - 1.0, gen);
  t.erfinv_();
  t.mul_(std * std::sqrt(2.0));
  t.clamp_(lo, hi);
}

DinoHead::DinoHead(DinoHeadConfig c) : config_(c) {
  if (config_.nlayers < 1) config_.nlayers = 1;
  if (config_.in_dim <= 0 || config_.out_dim <= 0 || config_.bottleneck_dim <= 0 ||
      (config_.nlayers > 1 && config_.hidden_dim <= 0))
    throw cx::Error("DINO head: sizes must be positive (in " + std::to_string(config_.in_dim) + ", out " +
                    std::to_string(config_.out_dim) + ", hidden " + std::to_string(config_.hidden_dim) +
                    ", bottleneck " + std::to_string(config_.bottleneck_dim) + ")");
  // Plain parameter holders named as DINOv2's modules (torch::nn::Linear would draw its default
  // initialisation from torch's global generator, which init_random then overwrites anyway).
  auto mlp = register_module("mlp", std::make_shared<torch::nn::Module>());
  auto add_linear = [&](torch::nn::Module& owner, std::int64_t in, std::int64_t out) {
    torch::Tensor weight = owner.register_parameter("weight", torch::empty({out, in}));  // first: DINOv2's order
    torch::Tensor bias = owner.register_parameter("bias", torch::empty({out}));
    mlp_.emplace_back(weight, bias);
  };
  if (config_.nlayers == 1) {
    add_linear(*mlp, config_.in_dim, config_.bottleneck_dim);
  } else {
    for (std::int64_t i = 0; i < config_.nlayers; ++i) {
      const std::int64_t in = i == 0 ? config_.in_dim : config_.hidden_dim;
      const std::int64_t out = i + 1 == config_.nlayers ? config_.bottleneck_dim : config_.hidden_dim;
      auto layer = mlp->register_module(std::to_string(2 * i), std::make_shared<torch::nn::Module>());
      add_linear(*layer, in, out);
    }
  }
  auto last_layer = register_module("last_layer", std::make_shared<torch::nn::Module>());
  weight_g_ = last_layer->register_parameter("weight_g", torch::ones({config_.out_dim, 1}));
  weight_v_ = last_layer->register_parameter("weight_v", torch::empty({config_.out_dim, config_.bottleneck_dim}));
  init_random(0);
}

torch::Tensor DinoHead::forward(const torch::Tensor& x) {
  torch::Tensor z = x;
  for (std::size_t i = 0; i < mlp_.size(); ++i) {
    // The bottleneck (the last layer) in float32 under CPU bf16 autocast: it is L2-normalised next.
    const bool last = i + 1 == mlp_.size();
    z = model::linear(z, mlp_[i].first, mlp_[i].second,
                      last ? model::LinearOutput::float32 : model::LinearOutput::as_autocast);
    if (!last) z = torch::gelu(z);
  }
  const double eps = z.scalar_type() == torch::kHalf ? 1e-6 : 1e-12;
  z = torch::nn::functional::normalize(z, torch::nn::functional::NormalizeFuncOptions().p(2).dim(-1).eps(eps));
  // torch's own weight-norm kernel (fused forward and backward), as nn.utils.weight_norm calls it.
  torch::Tensor w = torch::_weight_norm(weight_v_, weight_g_, 0);
  return model::linear(z, w.to(z.scalar_type()), {}, model::LinearOutput::float32);
}

void DinoHead::init_random(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& [weight, bias] : mlp_) {
    torch::Tensor w = torch::empty(weight.sizes(), torch::kFloat32);
    trunc_normal_(w, 0.02, -2.0, 2.0, gen);
    weight.copy_(w);
    bias.zero_();
  }
  const double bound = 1.0 / std::sqrt(static_cast<double>(config_.bottleneck_dim));
  torch::Tensor v = torch::empty(weight_v_.sizes(), torch::kFloat32);
  v.uniform_(-bound, bound, gen);
  weight_v_.copy_(v);
  weight_g_.fill_(1.0);
}

torch::Tensor DinoHead::prototypes() const {
  torch::NoGradGuard no_grad;
  return torch::_weight_norm(weight_v_, weight_g_, 0);
}

std::vector<torch::Tensor> DinoHead::prototype_parameters() const { return {weight_g_, weight_v_}; }

}  // namespace cx::train
