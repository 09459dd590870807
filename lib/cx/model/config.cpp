#include "cx/io/json_file.hpp"
#include "cx/model/config.hpp"

#include <cmath>
#include <fstream>
#include <sstream>

#include "cx/cli/error.hpp"

namespace cx::model {
namespace {

using nlohmann::json;

const json* find(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::int64_t get_int(const json& j, const char* key, const std::string& where, const std::int64_t* fallback) {
  const json* v = find(j, key);
  if (!v) {
    if (fallback) return *fallback;
    throw Error(at(where, std::string("missing required key \"") + key + "\""));
  }
  if (v->is_number_integer() || v->is_number_unsigned()) return v->get<std::int64_t>();
  // save_pretrained writes Python ints, but a hand-edited file may say 14.0.
  if (v->is_number_float()) {
    double d = v->get<double>();
    // Only a double within int64's range may be cast (beyond it the cast is undefined).
    if (std::fabs(d) < 9.2e18 && d == std::trunc(d)) return static_cast<std::int64_t>(d);
  }
  throw Error(at(where, std::string("\"") + key + "\" must be an integer, got " + v->dump()));
}

std::int64_t require_int(const json& j, const char* key, const std::string& where) {
  return get_int(j, key, where, nullptr);
}
std::int64_t optional_int(const json& j, const char* key, const std::string& where, std::int64_t fallback) {
  return get_int(j, key, where, &fallback);
}

double optional_double(const json& j, const char* key, const std::string& where, double fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_number()) throw Error(at(where, std::string("\"") + key + "\" must be a number, got " + v->dump()));
  return v->get<double>();
}

bool optional_bool(const json& j, const char* key, const std::string& where, bool fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) throw Error(at(where, std::string("\"") + key + "\" must be true or false, got " + v->dump()));
  return v->get<bool>();
}

std::string optional_string(const json& j, const char* key, const std::string& where, const std::string& fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_string()) throw Error(at(where, std::string("\"") + key + "\" must be a string, got " + v->dump()));
  return v->get<std::string>();
}

void check_range(std::int64_t value, std::int64_t lo, std::int64_t hi, const char* key, const std::string& where) {
  if (value < lo || value > hi)
    throw Error(at(where, std::string("\"") + key + "\" must be in " + std::to_string(lo) + "-" + std::to_string(hi) +
                              ", got " + std::to_string(value)));
}

void check_real(double value, double lo, double hi, bool lo_open, const char* key, const std::string& where) {
  std::ostringstream range;
  range << (lo_open ? "(" : "[") << lo << ", " << hi << "]";
  if (!std::isfinite(value) || value > hi || (lo_open ? value <= lo : value < lo)) {
    std::ostringstream got;
    got << value;
    throw Error(at(where, std::string("\"") + key + "\" must be a finite number in " + range.str() + ", got " + got.str()));
  }
}

}  // namespace

std::int64_t VitConfig::mlp_hidden() const {
  // transformers: int(hidden_size * mlp_ratio); SwiGLU then takes 2/3 of it rounded up to 8.
  auto hidden = static_cast<std::int64_t>(static_cast<double>(hidden_size) * mlp_ratio);
  if (!use_swiglu_ffn) return hidden;
  return (static_cast<std::int64_t>(static_cast<double>(hidden) * 2.0 / 3.0) + 7) / 8 * 8;
}

Activation parse_activation(const std::string& name, const std::string& where) {
  if (name == "gelu" || name == "gelu_python") return Activation::gelu_erf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") return Activation::gelu_tanh;
  if (name == "silu" || name == "swish") return Activation::silu;
  if (name == "relu") return Activation::relu;
  throw Error(at(where, "unsupported hidden_act \"" + name +
                            "\" (supported: gelu, gelu_python, gelu_new, gelu_pytorch_tanh, gelu_fast, silu, swish, relu)"));
}

VitConfig parse_vit_config(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(at(where, "config is not a JSON object"));
  VitConfig c;
  const json* type = find(j, "model_type");
  if (!type) throw Error(at(where, "missing required key \"model_type\""));
  if (!type->is_string() || (type->get<std::string>() != "dinov2_with_registers" && type->get<std::string>() != "dinov2"))
    throw Error(at(where, "unsupported model_type " + type->dump() + " (supported: \"dinov2_with_registers\", \"dinov2\")"));
  c.model_type = type->get<std::string>();

  c.hidden_size = require_int(j, "hidden_size", where);
  c.num_hidden_layers = require_int(j, "num_hidden_layers", where);
  c.num_attention_heads = require_int(j, "num_attention_heads", where);
  c.patch_size = require_int(j, "patch_size", where);
  c.image_size = require_int(j, "image_size", where);
  check_range(c.hidden_size, 1, 16384, "hidden_size", where);
  check_range(c.num_hidden_layers, 1, 512, "num_hidden_layers", where);
  check_range(c.num_attention_heads, 1, c.hidden_size, "num_attention_heads", where);
  check_range(c.patch_size, 1, 1024, "patch_size", where);
  check_range(c.image_size, 1, 16384, "image_size", where);
  if (c.hidden_size % c.num_attention_heads != 0)
    throw Error(at(where, "hidden_size " + std::to_string(c.hidden_size) + " is not a multiple of num_attention_heads " +
                              std::to_string(c.num_attention_heads)));
  if (c.image_size < c.patch_size)
    throw Error(at(where, "image_size " + std::to_string(c.image_size) + " is smaller than patch_size " +
                              std::to_string(c.patch_size)));

  c.mlp_ratio = optional_double(j, "mlp_ratio", where, 4.0);
  check_real(c.mlp_ratio, 0, 64, true, "mlp_ratio", where);
  // Dinov2Model has no registers; its config has no such key (a stray one would be ignored by HF too).
  c.num_register_tokens = c.registers_model() ? optional_int(j, "num_register_tokens", where, 4) : 0;
  check_range(c.num_register_tokens, 0, 1024, "num_register_tokens", where);
  c.num_channels = optional_int(j, "num_channels", where, 3);
  check_range(c.num_channels, 1, 16, "num_channels", where);
  c.layer_norm_eps = optional_double(j, "layer_norm_eps", where, 1e-6);
  // -1 (or 0 with a constant feature) puts NaN in every embedding.
  check_real(c.layer_norm_eps, 0, 0.1, true, "layer_norm_eps", where);
  c.hidden_act = optional_string(j, "hidden_act", where, "gelu");
  c.activation = parse_activation(c.hidden_act, where);
  c.use_swiglu_ffn = optional_bool(j, "use_swiglu_ffn", where, false);
  c.layerscale_value = optional_double(j, "layerscale_value", where, 1.0);
  check_real(c.layerscale_value, -1e6, 1e6, false, "layerscale_value", where);
  c.use_mask_token = optional_bool(j, "use_mask_token", where, true);
  c.qkv_bias = optional_bool(j, "qkv_bias", where, true);
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  c.dtype = optional_string(j, "dtype", where, optional_string(j, "torch_dtype", where, "float32"));
  c.name_or_path = optional_string(j, "_name_or_path", where, "");
  c.raw = j;
  return c;
}

VitConfig read_vit_config(const std::string& path) { return parse_vit_config(io::read_json_file(path), path); }

json vit_config_to_json(const VitConfig& c) {
  json j = c.raw.is_object() ? c.raw : json::object();
  // Keep the file's dtype key name; new files get both spellings so old and new transformers agree.
  bool had_dtype = j.contains("dtype");
  bool had_torch_dtype = j.contains("torch_dtype");
  j["architectures"] = json::array({c.registers_model() ? "Dinov2WithRegistersModel" : "Dinov2Model"});
  j["model_type"] = c.model_type;
  j["hidden_size"] = c.hidden_size;
  j["num_hidden_layers"] = c.num_hidden_layers;
  j["num_attention_heads"] = c.num_attention_heads;
  // Python writes mlp_ratio 4 as an int; keep integral ratios integral.
  if (c.mlp_ratio == static_cast<double>(static_cast<std::int64_t>(c.mlp_ratio)))
    j["mlp_ratio"] = static_cast<std::int64_t>(c.mlp_ratio);
  else
    j["mlp_ratio"] = c.mlp_ratio;
  if (c.registers_model())
    j["num_register_tokens"] = c.num_register_tokens;
  else
    j.erase("num_register_tokens");
  j["patch_size"] = c.patch_size;
  j["image_size"] = c.image_size;
  j["num_channels"] = c.num_channels;
  j["layer_norm_eps"] = c.layer_norm_eps;
  j["hidden_act"] = c.hidden_act;
  j["use_swiglu_ffn"] = c.use_swiglu_ffn;
  j["layerscale_value"] = c.layerscale_value;
  if (!c.registers_model()) j["use_mask_token"] = c.use_mask_token;
  j["qkv_bias"] = c.qkv_bias;
  if (had_dtype || !had_torch_dtype) j["dtype"] = c.dtype;
  if (had_torch_dtype || !had_dtype) j["torch_dtype"] = c.dtype;
  if (!c.name_or_path.empty()) j["_name_or_path"] = c.name_or_path;
  if (!j.contains("attention_probs_dropout_prob")) j["attention_probs_dropout_prob"] = 0.0;
  if (!j.contains("hidden_dropout_prob")) j["hidden_dropout_prob"] = 0.0;
  if (!j.contains("drop_path_rate")) j["drop_path_rate"] = 0.0;
  if (!j.contains("initializer_range")) j["initializer_range"] = 0.02;
  return j;
}

VitConfig vit_small_registers_config() {
  VitConfig c;
  c.model_type = "dinov2_with_registers";
  c.hidden_size = 384;
  c.num_hidden_layers = 12;
  c.num_attention_heads = 6;
  c.num_register_tokens = 4;
  c.patch_size = 14;
  c.image_size = 518;
  return c;
}

}  // namespace cx::model
