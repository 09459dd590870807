#include "cx/model/vit.hpp"

#include <cmath>
#include <map>

#include <ATen/autocast_mode.h>

#include "cx/cli/error.hpp"
#include "cx/model/gemm.hpp"

namespace cx::model {
namespace F = torch::nn::functional;

namespace {

std::string shape_string(torch::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// A named, parameter-only node of the module tree, so that parameter paths are HF's keys.
struct Node : torch::nn::Module {};

}  // namespace

torch::Tensor VitModel::add(const std::string& dotted_name, std::vector<std::int64_t> shape) {
  torch::nn::Module* node = this;
  size_t begin = 0;
  for (size_t dot; (dot = dotted_name.find('.', begin)) != std::string::npos; begin = dot + 1) {
    std::string part = dotted_name.substr(begin, dot - begin);
    auto children = node->named_children();
    if (auto* found = children.find(part)) {
      node = found->get();
    } else {
      node = node->register_module(part, std::make_shared<Node>()).get();
    }
  }
  return node->register_parameter(dotted_name.substr(begin), torch::empty(shape));
}

std::vector<WeightShape> vit_weight_shapes(const VitConfig& c) {
  const std::int64_t D = c.hidden_size, p = c.patch_size, hidden = c.mlp_hidden();
  std::vector<WeightShape> w;
  w.push_back({"embeddings.cls_token", {1, 1, D}});
  w.push_back({"embeddings.mask_token", {1, D}});
  if (c.registers_model()) w.push_back({"embeddings.register_tokens", {1, c.num_register_tokens, D}});
  w.push_back({"embeddings.position_embeddings", {1, c.num_positions() + 1, D}});
  w.push_back({"embeddings.patch_embeddings.projection.weight", {D, c.num_channels, p, p}});
  w.push_back({"embeddings.patch_embeddings.projection.bias", {D}});
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = "encoder.layer." + std::to_string(i) + ".";
    w.push_back({l + "norm1.weight", {D}});
    w.push_back({l + "norm1.bias", {D}});
    for (const char* proj : {"query", "key", "value"}) {
      w.push_back({l + "attention.attention." + proj + ".weight", {D, D}});
      if (c.qkv_bias) w.push_back({l + "attention.attention." + proj + ".bias", {D}});
    }
    w.push_back({l + "attention.output.dense.weight", {D, D}});
    w.push_back({l + "attention.output.dense.bias", {D}});
    w.push_back({l + "layer_scale1.lambda1", {D}});
    w.push_back({l + "norm2.weight", {D}});
    w.push_back({l + "norm2.bias", {D}});
    if (c.use_swiglu_ffn) {
      w.push_back({l + "mlp.weights_in.weight", {2 * hidden, D}});
      w.push_back({l + "mlp.weights_in.bias", {2 * hidden}});
      w.push_back({l + "mlp.weights_out.weight", {D, hidden}});
      w.push_back({l + "mlp.weights_out.bias", {D}});
    } else {
      w.push_back({l + "mlp.fc1.weight", {hidden, D}});
      w.push_back({l + "mlp.fc1.bias", {hidden}});
      w.push_back({l + "mlp.fc2.weight", {D, hidden}});
      w.push_back({l + "mlp.fc2.bias", {D}});
    }
    w.push_back({l + "layer_scale2.lambda1", {D}});
  }
  w.push_back({"layernorm.weight", {D}});
  w.push_back({"layernorm.bias", {D}});
  return w;
}

VitModel::VitModel(VitConfig config) : config_(std::move(config)) {
  std::map<std::string, torch::Tensor> by_name;
  for (const auto& w : vit_weight_shapes(config_)) by_name[w.name] = add(w.name, w.shape);
  auto get = [&](const std::string& name) {
    auto it = by_name.find(name);
    return it == by_name.end() ? torch::Tensor() : it->second;
  };
  cls_token_ = get("embeddings.cls_token");
  mask_token_ = get("embeddings.mask_token");
  register_tokens_ = get("embeddings.register_tokens");
  position_embeddings_ = get("embeddings.position_embeddings");
  patch_w_ = get("embeddings.patch_embeddings.projection.weight");
  patch_b_ = get("embeddings.patch_embeddings.projection.bias");
  const std::string mlp_in = config_.use_swiglu_ffn ? "mlp.weights_in." : "mlp.fc1.";
  const std::string mlp_out = config_.use_swiglu_ffn ? "mlp.weights_out." : "mlp.fc2.";
  for (std::int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string l = "encoder.layer." + std::to_string(i) + ".";
    const std::string a = l + "attention.attention.";
    Block b;
    b.norm1_w = get(l + "norm1.weight");
    b.norm1_b = get(l + "norm1.bias");
    b.q_w = get(a + "query.weight");
    b.q_b = get(a + "query.bias");
    b.k_w = get(a + "key.weight");
    b.k_b = get(a + "key.bias");
    b.v_w = get(a + "value.weight");
    b.v_b = get(a + "value.bias");
    b.o_w = get(l + "attention.output.dense.weight");
    b.o_b = get(l + "attention.output.dense.bias");
    b.ls1 = get(l + "layer_scale1.lambda1");
    b.norm2_w = get(l + "norm2.weight");
    b.norm2_b = get(l + "norm2.bias");
    b.fc1_w = get(l + mlp_in + "weight");
    b.fc1_b = get(l + mlp_in + "bias");
    b.fc2_w = get(l + mlp_out + "weight");
    b.fc2_b = get(l + mlp_out + "bias");
    b.ls2 = get(l + "layer_scale2.lambda1");
    blocks_.push_back(std::move(b));
  }
  norm_w_ = get("layernorm.weight");
  norm_b_ = get("layernorm.bias");
}

torch::Tensor VitModel::parameter(const std::string& name) const {
  auto params = named_parameters(true);
  if (auto* found = params.find(name)) return *found;
  throw Error("model has no parameter \"" + name + "\"");
}

void VitModel::init_random(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : named_parameters(true)) {
    const std::string& name = item.key();
    torch::Tensor& param = item.value();
    torch::Tensor noise = torch::randn(param.sizes(), gen, torch::kFloat32);
    auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    torch::Tensor value;
    if (ends_with("norm1.weight") || ends_with("norm2.weight") || name == "layernorm.weight")
      value = 1.0 + 0.1 * noise;
    else if (ends_with(".lambda1"))
      value = config_.layerscale_value * (1.0 + 0.1 * noise);
    else
      value = 0.02 * noise;
    param.copy_(value);
  }
}

torch::Tensor VitModel::position_embeddings_for(std::int64_t height, std::int64_t width) {
  const std::int64_t p = config_.patch_size;
  const std::int64_t gh = height / p, gw = width / p;
  const std::int64_t num_positions = position_embeddings_.size(1) - 1;
  // HF skips interpolation only for a square input with as many patches as positions.
  if (gh * gw == num_positions && height == width) return position_embeddings_;
  const auto side = static_cast<std::int64_t>(std::llround(std::sqrt(static_cast<double>(num_positions))));
  if (side * side != num_positions)
    throw Error("position embeddings: " + std::to_string(num_positions) + " positions do not form a square grid");
  const std::int64_t D = position_embeddings_.size(2);
  torch::Tensor cls_pos = position_embeddings_.narrow(1, 0, 1);
  torch::Tensor grid = position_embeddings_.narrow(1, 1, num_positions).reshape({1, side, side, D}).permute({0, 3, 1, 2});
  // transformers interpolates in float32 whatever the weights' dtype. The registers model uses the
  // antialiased (Pillow-style, a = -0.5) kernel, Dinov2Model torch's plain bicubic (A = -0.75).
  auto options = F::InterpolateFuncOptions()
                     .size(std::vector<std::int64_t>{gh, gw})
                     .mode(torch::kBicubic)
                     .align_corners(false)
                     .antialias(config_.registers_model());
  torch::Tensor resized = F::interpolate(grid.to(torch::kFloat32), options).to(position_embeddings_.scalar_type());
  resized = resized.permute({0, 2, 3, 1}).reshape({1, gh * gw, D});
  return torch::cat({cls_pos, resized}, 1);
}

torch::Tensor VitModel::embeddings(const torch::Tensor& pixel_values, const torch::Tensor& masks) {
  if (pixel_values.dim() != 4 || pixel_values.size(1) != config_.num_channels)
    throw Error("pixel_values: expected [B, " + std::to_string(config_.num_channels) + ", H, W], got " +
                shape_string(pixel_values.sizes()));
  const std::int64_t B = pixel_values.size(0), H = pixel_values.size(2), W = pixel_values.size(3);
  const std::int64_t p = config_.patch_size;
  if (H < p || W < p)
    throw Error("pixel_values: image " + std::to_string(H) + "x" + std::to_string(W) + " is smaller than one " +
                std::to_string(p) + "x" + std::to_string(p) + " patch");
  torch::Tensor x = pixel_values.to(patch_w_.device(), patch_w_.scalar_type());
  // The patch embedding, a convolution with stride = kernel = p, as one product: the image cut into
  // its h*w patches of C*p*p values (the remainder dropped, as the convolution drops it) times the
  // kernel as a [D, C*p*p] matrix. Same sums; at::conv2d's oneDNN convolution took ~5 ms per call
  // for the tiny recipe's 75 MFLOP (primitive set-up), and linear() runs on the library's sgemm.
  const std::int64_t h = H / p, w = W / p, C = config_.num_channels, D = patch_w_.size(0);
  torch::Tensor cols = x.narrow(2, 0, h * p).narrow(3, 0, w * p).reshape({B, C, h, p, w, p})
                           .permute({0, 2, 4, 1, 3, 5}).reshape({B * h * w, C * p * p});
  torch::Tensor patches = linear(cols, patch_w_.reshape({D, C * p * p}), patch_b_).view({B, h * w, D});
  if (masks.defined()) {
    if (masks.dim() != 2 || masks.size(0) != B || masks.size(1) != patches.size(1))
      throw Error("masks: expected [" + std::to_string(B) + ", " + std::to_string(patches.size(1)) + "], got " +
                  shape_string(masks.sizes()));
    patches = torch::where(masks.to(patches.device(), torch::kBool).unsqueeze(-1),
                           mask_token_.to(patches.scalar_type()).unsqueeze(0), patches);
  }
  torch::Tensor tokens = torch::cat({cls_token_.expand({B, 1, -1}), patches}, 1);
  tokens = tokens + position_embeddings_for(H, W);
  if (config_.num_register_tokens > 0) {
    tokens = torch::cat({tokens.narrow(1, 0, 1), register_tokens_.expand({B, -1, -1}),
                         tokens.narrow(1, 1, tokens.size(1) - 1)},
                        1);
  }
  return tokens;
}

torch::Tensor VitModel::mlp(const Block& b, const torch::Tensor& x) const {
  torch::Tensor h = linear(x, b.fc1_w, b.fc1_b);
  if (config_.use_swiglu_ffn) {
    auto halves = h.chunk(2, -1);
    h = at::silu(halves[0]) * halves[1];
  } else {
    switch (config_.activation) {
      case Activation::gelu_erf: h = at::gelu(h); break;
      case Activation::gelu_tanh: h = at::gelu(h, "tanh"); break;
      case Activation::silu: h = at::silu(h); break;
      case Activation::relu: h = at::relu(h); break;
    }
  }
  // Into the float32 residual stream: under CPU bf16 autocast the accumulators stay float32.
  return linear(h, b.fc2_w, b.fc2_b, LinearOutput::float32);
}

std::vector<torch::Tensor> VitModel::block_parameters(std::int64_t index) const {
  const Block& b = blocks_.at(static_cast<size_t>(index));
  std::vector<torch::Tensor> p;
  for (const torch::Tensor* t : {&b.norm1_w, &b.norm1_b, &b.q_w, &b.q_b, &b.k_w, &b.k_b, &b.v_w, &b.v_b, &b.o_w, &b.o_b,
                                 &b.ls1, &b.norm2_w, &b.norm2_b, &b.fc1_w, &b.fc1_b, &b.fc2_w, &b.fc2_b, &b.ls2})
    if (t->defined()) p.push_back(*t);
  return p;
}

torch::Tensor VitModel::block(std::int64_t index, const torch::Tensor& x, const torch::Tensor& drop_path_scale) {
  const Block& b = blocks_.at(static_cast<size_t>(index));
  const std::int64_t B = x.size(0), N = x.size(1), D = config_.hidden_size;
  const std::int64_t heads = config_.num_attention_heads, hd = config_.head_dim();
  const double eps = config_.layer_norm_eps;

  torch::Tensor h = at::layer_norm(x, {D}, b.norm1_w, b.norm1_b, eps);
  // One [3D, D] projection instead of three: the concatenation is tiny next to the activations.
  torch::Tensor qkv_w = torch::cat({b.q_w, b.k_w, b.v_w}, 0);
  torch::Tensor qkv_b = b.q_b.defined() ? torch::cat({b.q_b, b.k_b, b.v_b}, 0) : torch::Tensor();
  torch::Tensor qkv = linear(h, qkv_w, qkv_b).view({B, N, 3 * D});
  // HF scales the scores by head_dim^-0.5 after q k^T; the kernels read q, k and v inside qkv in place.
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  torch::Tensor ctx = attention_from_qkv(qkv, heads, scale, attention_);  // [B, N, D]
  if (drop_path_scale.defined()) {
    // Stochastic depth: each sample's branch scaled by its own factor.
    torch::Tensor s = drop_path_scale.to(x.device(), x.scalar_type()).view({B, 1, 1});
    torch::Tensor y = x + linear(ctx, b.o_w, b.o_b, LinearOutput::float32) * b.ls1 * s;
    h = at::layer_norm(y, {D}, b.norm2_w, b.norm2_b, eps);
    return y + mlp(b, h) * b.ls2 * s;
  }
  // x + lambda * f(x) in one pass over the activations.
  torch::Tensor y = at::addcmul(x, linear(ctx, b.o_w, b.o_b, LinearOutput::float32), b.ls1);

  h = at::layer_norm(y, {D}, b.norm2_w, b.norm2_b, eps);
  return at::addcmul(y, mlp(b, h), b.ls2);
}

namespace {

// Activation checkpointing of one block: the forward runs without recording, keeping only the input;
// the backward runs the block again with recording, returns its input's gradient and adds its
// parameters' gradients to their .grad (LibTorch's custom functions take no tensor lists as inputs, so
// the parameters are not inputs of the node; gradients reach them as loss.backward() would leave them).
struct CheckpointedBlock : public torch::autograd::Function<CheckpointedBlock> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, torch::Tensor x, torch::Tensor scale,
                               VitModel* model, std::int64_t index) {
    ctx->save_for_backward({x, scale});
    ctx->saved_data["model"] = reinterpret_cast<std::int64_t>(model);
    ctx->saved_data["index"] = index;
    // The recomputation runs in the forward's precision (autocast state is per thread and may be off
    // by the time backward runs).
    ctx->saved_data["autocast_gpu"] = at::autocast::is_enabled();
    ctx->saved_data["autocast_cpu"] = at::autocast::is_cpu_enabled();
    torch::NoGradGuard no_grad;
    // The eager attention the recomputation (with gradients) will run, not the inference kernel that
    // a forward without gradients would pick: both passes must compute the same activations.
    const AttentionKernel kernel = model->attention();
    if (kernel == AttentionKernel::automatic) model->set_attention(AttentionKernel::reference);
    struct Restore {
      VitModel* m;
      AttentionKernel k;
      ~Restore() { m->set_attention(k); }
    } restore{model, kernel};
    return model->block(index, x, scale.numel() > 0 ? scale : torch::Tensor());
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    auto* model = reinterpret_cast<VitModel*>(ctx->saved_data["model"].toInt());
    const std::int64_t index = ctx->saved_data["index"].toInt();
    torch::Tensor x = saved[0].detach().requires_grad_(true);
    torch::Tensor scale = saved[1];
    std::vector<torch::Tensor> params;
    for (const auto& p : model->block_parameters(index))
      if (p.requires_grad()) params.push_back(p);
    torch::Tensor y;
    {
      torch::AutoGradMode enable(true);
      const bool gpu_before = at::autocast::is_enabled(), cpu_before = at::autocast::is_cpu_enabled();
      at::autocast::set_enabled(ctx->saved_data["autocast_gpu"].toBool());
      at::autocast::set_cpu_enabled(ctx->saved_data["autocast_cpu"].toBool());
      struct Restore {
        bool gpu, cpu;
        ~Restore() {
          at::autocast::set_enabled(gpu);
          at::autocast::set_cpu_enabled(cpu);
        }
      } restore{gpu_before, cpu_before};
      y = model->block(index, x, scale.numel() > 0 ? scale : torch::Tensor());
    }
    std::vector<torch::Tensor> inputs{x};
    inputs.insert(inputs.end(), params.begin(), params.end());
    auto grads = torch::autograd::grad({y}, inputs, {grad_out[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                       /*allow_unused=*/true);
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < params.size(); ++i) {
        const torch::Tensor& g = grads[i + 1];
        if (!g.defined()) continue;
        torch::Tensor& acc = params[i].mutable_grad();
        if (acc.defined())
          acc.add_(g);
        else
          acc = g.detach().clone();
      }
    }
    return {grads[0], torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

VitOutput VitModel::forward(const torch::Tensor& pixel_values, const VitForwardOptions& options) {
  const std::int64_t L = config_.num_hidden_layers, D = config_.hidden_size;
  std::vector<std::int64_t> wanted;
  for (std::int64_t layer : options.hidden_layers) {
    std::int64_t i = layer < 0 ? layer + L : layer;
    if (i < 0 || i >= L)
      throw Error("hidden layer " + std::to_string(layer) + " out of range for a " + std::to_string(L) + "-layer model");
    wanted.push_back(i);
  }
  VitOutput out;
  if (!options.drop_path_scales.empty() && static_cast<std::int64_t>(options.drop_path_scales.size()) != L)
    throw Error("drop path: " + std::to_string(options.drop_path_scales.size()) + " scales for " + std::to_string(L) +
                " blocks");
  torch::Tensor x = embeddings(pixel_values, options.masks);
  out.grid_h = pixel_values.size(2) / config_.patch_size;
  out.grid_w = pixel_values.size(3) / config_.patch_size;
  std::vector<torch::Tensor> kept(static_cast<size_t>(L));
  for (std::int64_t i = 0; i < L; ++i) {
    const torch::Tensor scale =
        options.drop_path_scales.empty() ? torch::Tensor() : options.drop_path_scales[static_cast<size_t>(i)];
    if (options.checkpoint_blocks && torch::GradMode::is_enabled()) {
      // An undefined tensor cannot be saved: an empty one stands for "no drop path".
      torch::Tensor s = scale.defined() ? scale : torch::empty({0});
      x = CheckpointedBlock::apply(x, s, this, i);
    } else {
      x = block(i, x, scale);
    }
    for (std::int64_t w : wanted)
      if (w == i) kept[static_cast<size_t>(i)] = x;
  }
  out.last_hidden_state = at::layer_norm(x, {D}, norm_w_, norm_b_, config_.layer_norm_eps);
  out.pooler = out.last_hidden_state.select(1, 0);
  for (std::int64_t i : wanted) {
    const torch::Tensor& h = kept[static_cast<size_t>(i)];
    if (!options.norm_hidden_states)
      out.hidden_states.push_back(h);
    else if (i == L - 1)
      out.hidden_states.push_back(out.last_hidden_state);
    else
      out.hidden_states.push_back(at::layer_norm(h, {D}, norm_w_, norm_b_, config_.layer_norm_eps));
  }
  return out;
}

std::vector<std::int64_t> cx5_layers(const VitConfig& config) {
  const std::int64_t L = config.num_hidden_layers, n = std::min<std::int64_t>(4, L);
  std::vector<std::int64_t> layers;
  for (std::int64_t i = L - n; i < L; ++i) layers.push_back(i);
  return layers;
}

torch::Tensor cx5_features(const VitModel& model, const VitOutput& out) {
  const size_t n = cx5_layers(model.config()).size();
  if (out.hidden_states.size() != n)
    throw Error("cx5 features need the hidden states of the last " + std::to_string(n) + " blocks, got " +
                std::to_string(out.hidden_states.size()));
  std::vector<torch::Tensor> parts;
  for (const auto& h : out.hidden_states) parts.push_back(h.select(1, 0));
  const std::int64_t prefix = model.num_prefix_tokens();
  const torch::Tensor& last = out.last_hidden_state;
  parts.push_back(last.narrow(1, prefix, last.size(1) - prefix).mean(1));
  return torch::cat(parts, -1);
}

}  // namespace cx::model
