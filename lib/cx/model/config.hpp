#pragma once
// The encoder's shape, read from a Hugging Face config.json of model_type "dinov2_with_registers"
// (Dinov2WithRegistersModel: CXformer, facebook/dinov2-with-registers-*) or "dinov2" (Dinov2Model:
// RAD-DINO, facebook/dinov2-*). Torch-free so that tools can inspect a model folder cheaply.
// Keys absent from the file take the defaults of the transformers config classes, except the
// structural ones (model_type, hidden_size, num_hidden_layers, num_attention_heads, patch_size,
// image_size), which must be present. Errors name the file and the key.
// Every value is bounded before anything is built from it (a config is outside data): hidden_size
// 1-16384, num_hidden_layers 1-512, num_attention_heads dividing hidden_size, patch_size 1-1024,
// image_size patch_size-16384, num_register_tokens 0-1024, num_channels 1-16, mlp_ratio in
// (0, 64], layer_norm_eps in (0, 0.1], layerscale_value in [-1e6, 1e6]. ViT-g/14 (1536 wide, 40 layers) is
// far inside; a loader then compares the config with the tensors present before building.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace cx::model {

enum class Activation { gelu_erf, gelu_tanh, silu, relu };

struct VitConfig {
  std::string model_type = "dinov2_with_registers";  // or "dinov2"
  std::int64_t hidden_size = 768;
  std::int64_t num_hidden_layers = 12;
  std::int64_t num_attention_heads = 12;
  double mlp_ratio = 4.0;
  std::int64_t num_register_tokens = 4;  // 0 for "dinov2"
  std::int64_t patch_size = 14;
  std::int64_t image_size = 518;
  std::int64_t num_channels = 3;
  double layer_norm_eps = 1e-6;
  std::string hidden_act = "gelu";  // as written in the file
  Activation activation = Activation::gelu_erf;
  bool use_swiglu_ffn = false;
  double layerscale_value = 1.0;
  bool use_mask_token = true;
  bool qkv_bias = true;
  std::string dtype = "float32";  // torch_dtype / dtype: the dtype the weights were saved in
  std::string name_or_path;       // "_name_or_path", empty when absent
  // The file as read (null when built in code): unknown keys survive a save_hf_folder round trip.
  nlohmann::json raw;

  bool registers_model() const { return model_type == "dinov2_with_registers"; }
  std::int64_t head_dim() const { return hidden_size / num_attention_heads; }
  std::int64_t grid_size() const { return image_size / patch_size; }  // position grid side
  std::int64_t num_positions() const { return grid_size() * grid_size(); }
  // fc1 width of the GELU MLP, or the width of each SwiGLU half (weights_in has twice this).
  std::int64_t mlp_hidden() const;
};

// `where` names the source in errors (the config.json path).
VitConfig parse_vit_config(const nlohmann::json& j, const std::string& where);
VitConfig read_vit_config(const std::string& path);
// The config.json that save_pretrained would write: `raw` with every field above set over it.
nlohmann::json vit_config_to_json(const VitConfig& config);
// ViT-S/14 with 4 registers at 518 (facebook/dinov2-with-registers-small, CXformer-small).
VitConfig vit_small_registers_config();

Activation parse_activation(const std::string& name, const std::string& where);

}  // namespace cx::model
