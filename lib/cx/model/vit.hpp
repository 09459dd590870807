#pragma once
// The DINOv2 vision transformer, numerically Hugging Face's Dinov2WithRegistersModel
// (config.registers_model()) or Dinov2Model, in eval mode:
//   tokens = [CLS + pos[0], registers (no position), patches + interpolated pos (row-major)]
//   block:  x += lambda1 * attn(LN1(x)); x += lambda2 * mlp(LN2(x))   (pre-norm, layer scale)
//   last_hidden_state = LN(x) on all tokens; pooler = last_hidden_state[:, 0].
// Parameters are registered under the exact HF state_dict names ("embeddings.cls_token",
// "encoder.layer.0.attention.attention.query.weight", ...), so named_parameters() is the checkpoint's
// key set and the module trains like any torch::nn::Module. Inputs whose sides are not multiples
// of the patch size lose the remainder (the stride-patch convolution drops it).
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "cx/model/attention.hpp"
#include "cx/model/config.hpp"

namespace cx::model {

struct VitForwardOptions {
  // Blocks whose outputs to return in VitOutput::hidden_states, 0-based; negative counts from the
  // end (-1 = last block). Empty: none.
  std::vector<std::int64_t> hidden_layers;
  // Apply the final LayerNorm to those hidden states (what DINOv2's get_intermediate_layers(norm=True)
  // and its linear evaluation use).
  bool norm_hidden_states = true;

  // Training (cx-pretrain). masks: bool [B, h*w]; a true patch's embedding is replaced by the mask
  // token before the positions are added (iBOT's masked image modelling, HF's bool_masked_pos).
  torch::Tensor masks;
  // Stochastic depth: one float [B] per block (empty: none), each residual branch of block i
  // multiplied by drop_path_scales[i] per sample (0 dropped, 1/(1-p) kept). The caller draws them,
  // so that they come from its counter-based generator and a recomputation sees the same.
  std::vector<torch::Tensor> drop_path_scales;
  // Activation checkpointing: each block keeps only its input and recomputes its activations in the
  // backward pass (memory of one block instead of all, for about a third more compute).
  bool checkpoint_blocks = false;
};

struct VitOutput {
  torch::Tensor last_hidden_state;           // [B, 1 + R + h*w, D]
  torch::Tensor pooler;                      // [B, D]
  std::vector<torch::Tensor> hidden_states;  // one [B, 1 + R + h*w, D] per requested block
  std::int64_t grid_h = 0, grid_w = 0;       // patch grid of this input
};

// Every weight of the model under its HF state_dict name (a fixed order: embeddings, blocks, norm).
struct WeightShape {
  std::string name;
  std::vector<std::int64_t> shape;
};
std::vector<WeightShape> vit_weight_shapes(const VitConfig& config);

class VitModel : public torch::nn::Module {
 public:
  // Parameters are created uninitialised (torch::empty); load weights or call init_random.
  explicit VitModel(VitConfig config);

  const VitConfig& config() const { return config_; }
  std::int64_t num_prefix_tokens() const { return 1 + config_.num_register_tokens; }  // CLS + registers

  // pixel_values [B, C, H, W] (moved to the parameters' device and dtype); H, W >= patch_size.
  VitOutput forward(const torch::Tensor& pixel_values, const VitForwardOptions& options = {});

  // The position embeddings used for an H x W pixel input: [1, 1 + (H/p)*(W/p), D] (CLS first).
  torch::Tensor position_embeddings_for(std::int64_t height, std::int64_t width);
  // Patch embedding + CLS + registers + positions: the input of block 0, [B, 1 + R + h*w, D].
  // masks (optional, bool [B, h*w]): those patches become the mask token (VitForwardOptions::masks).
  torch::Tensor embeddings(const torch::Tensor& pixel_values, const torch::Tensor& masks = {});
  // One transformer block applied to x [B, N, D]; drop_path_scale (optional, [B]) multiplies both
  // residual branches per sample.
  torch::Tensor block(std::int64_t index, const torch::Tensor& x, const torch::Tensor& drop_path_scale = {});
  // The parameters of block `index`, in a fixed order (for activation checkpointing).
  std::vector<torch::Tensor> block_parameters(std::int64_t index) const;

  // automatic (default): the fused CPU kernel in float32 inference, HF's eager attention otherwise
  // (training, CUDA, other dtypes); reference forces the eager path everywhere (cx/model/attention.hpp).
  void set_attention(AttentionKernel kernel) { attention_ = kernel; }
  AttentionKernel attention() const { return attention_; }

  // Deterministic random weights (seeded, CPU generator): N(0, 0.02) matrices and biases,
  // LayerNorm weights 1 + N(0, 0.1), layer scales layerscale_value * (1 + N(0, 0.1)). Norms and
  // scales are moved away from 1 so that a wrong key mapping changes the output.
  void init_random(std::uint64_t seed);

  // The parameter named as in the HF state_dict; throws naming it when absent.
  torch::Tensor parameter(const std::string& name) const;

 private:
  struct Block {
    torch::Tensor norm1_w, norm1_b, q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ls1;
    torch::Tensor norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b, ls2;  // fc1/fc2 = weights_in/out for SwiGLU
  };
  torch::Tensor add(const std::string& dotted_name, std::vector<std::int64_t> shape);
  torch::Tensor mlp(const Block& b, const torch::Tensor& x) const;

  VitConfig config_;
  AttentionKernel attention_ = AttentionKernel::automatic;
  torch::Tensor cls_token_, mask_token_, register_tokens_, position_embeddings_, patch_w_, patch_b_;
  torch::Tensor norm_w_, norm_b_;
  std::vector<Block> blocks_;
};

// CXformer's / DINOv2 linear-eval classification feature: the final-LayerNorm'd CLS of the last
// n = min(4, layers) blocks followed by the mean of the last layer's normed patch tokens (registers
// excluded): [B, (n + 1) * D], 5D for every released model. `out` must come from forward() with
// hidden_layers = cx5_layers(config) and norm_hidden_states = true.
std::vector<std::int64_t> cx5_layers(const VitConfig& config);
torch::Tensor cx5_features(const VitModel& model, const VitOutput& out);

}  // namespace cx::model
