#include "cx/model/llama_config.hpp"

#include <cmath>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/io/json_file.hpp"

namespace cx::model {
namespace {

using nlohmann::json;

// Limits on what a config may declare (far above every released Llama-family model), so that a
// hostile file cannot make the loader take memory before the weights are checked against it.
constexpr std::int64_t kMaxVocab = 1 << 22;
constexpr std::int64_t kMaxHidden = 1 << 16;
constexpr std::int64_t kMaxIntermediate = 1 << 20;
constexpr std::int64_t kMaxLayers = 1024;
constexpr std::int64_t kMaxHeads = 1024;
constexpr std::int64_t kMaxHeadDim = 1024;
constexpr std::int64_t kMaxPositions = 1 << 24;
constexpr std::int64_t kMaxTokenId = (std::int64_t{1} << 31) - 1;
constexpr double kMaxParameters = 1e12;

std::string quoted(const std::string& key) { return "\"" + key + "\""; }

const json* find(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::int64_t as_int(const json& v, const std::string& key, const std::string& where) {
  if (v.is_number_integer() || v.is_number_unsigned()) {
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
      throw Error(at(where, quoted(key) + " is too large: " + v.dump()));
    return v.get<std::int64_t>();
  }
  if (v.is_number_float()) {  // a hand-edited file may say 32.0
    const double d = v.get<double>();
    if (std::fabs(d) < 9.2e18 && d == std::trunc(d)) return static_cast<std::int64_t>(d);
  }
  throw Error(at(where, quoted(key) + " must be an integer, got " + v.dump()));
}

std::int64_t require_int(const json& j, const char* key, const std::string& where) {
  const json* v = find(j, key);
  if (!v) throw Error(at(where, "missing required key " + quoted(key)));
  return as_int(*v, key, where);
}

std::int64_t optional_int(const json& j, const char* key, const std::string& where, std::int64_t fallback) {
  const json* v = find(j, key);
  return v ? as_int(*v, key, where) : fallback;
}

double optional_double(const json& j, const char* key, const std::string& where, double fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_number()) throw Error(at(where, quoted(key) + " must be a number, got " + v->dump()));
  return v->get<double>();
}

bool optional_bool(const json& j, const char* key, const std::string& where, bool fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_boolean()) throw Error(at(where, quoted(key) + " must be true or false, got " + v->dump()));
  return v->get<bool>();
}

std::string optional_string(const json& j, const char* key, const std::string& where, const std::string& fallback) {
  const json* v = find(j, key);
  if (!v) return fallback;
  if (!v->is_string()) throw Error(at(where, quoted(key) + " must be a string, got " + v->dump()));
  return v->get<std::string>();
}

// A special token id: an integer, null (none: -1) or, for eos_token_id, a list whose first entry is used.
std::int64_t token_id(const json& j, const char* key, const std::string& where, std::int64_t fallback) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if (it->is_null()) return -1;
  const json* v = &*it;
  if (v->is_array()) {
    if (v->empty()) return -1;
    v = &v->front();
  }
  const std::int64_t id = as_int(*v, key, where);
  if (id < -1 || id > kMaxTokenId)
    throw Error(at(where, quoted(key) + " must be in -1-" + std::to_string(kMaxTokenId) + ", got " + std::to_string(id)));
  return id;
}

void check_range(std::int64_t value, std::int64_t lo, std::int64_t hi, const char* key, const std::string& where) {
  if (value < lo || value > hi)
    throw Error(at(where, quoted(key) + " must be in " + std::to_string(lo) + "-" + std::to_string(hi) + ", got " +
                              std::to_string(value)));
}

void check_real(double value, double lo, double hi, const char* key, const std::string& where) {
  if (!std::isfinite(value) || value <= lo || value > hi) {
    std::ostringstream msg;
    msg << quoted(key) << " must be a finite number in (" << lo << ", " << hi << "], got " << value;
    throw Error(at(where, msg.str()));
  }
}

// transformers v5: rope_parameters {"rope_type": "default", "rope_theta": ...}; earlier: rope_theta
// beside rope_scaling (null for plain RoPE).
double read_rope_theta(const json& j, const std::string& where) {
  if (const json* scaling = find(j, "rope_scaling")) {
    std::string type = scaling->is_object() ? optional_string(*scaling, "rope_type", where,
                                                             optional_string(*scaling, "type", where, "?"))
                                            : scaling->dump();
    throw Error(at(where, "\"rope_scaling\" (" + type + ") is not supported: only plain RoPE (rope_scaling null)"));
  }
  double theta = optional_double(j, "rope_theta", where, 10000.0);
  if (const json* params = find(j, "rope_parameters")) {
    if (!params->is_object()) throw Error(at(where, "\"rope_parameters\" must be an object, got " + params->dump()));
    const std::string type = optional_string(*params, "rope_type", where, "default");
    if (type != "default")
      throw Error(at(where, "\"rope_parameters\" rope_type \"" + type + "\" is not supported: only \"default\" RoPE"));
    theta = optional_double(*params, "rope_theta", where, theta);
  }
  check_real(theta, 0.0, 1e12, "rope_theta", where);
  return theta;
}

}  // namespace

std::int64_t LlamaConfig::parameter_count() const {
  const std::int64_t q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  std::int64_t layer = hidden_size * q * 2 + hidden_size * kv * 2 + 3 * hidden_size * intermediate_size + 2 * hidden_size;
  if (attention_bias) layer += q + 2 * kv + hidden_size;  // q, k, v, o biases
  if (mlp_bias) layer += 2 * intermediate_size + hidden_size;
  std::int64_t total = num_hidden_layers * layer + vocab_size * hidden_size + hidden_size;
  if (!tie_word_embeddings) total += vocab_size * hidden_size;
  return total;
}

LlamaConfig LlamaConfig::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(at(where, "config is not a JSON object"));
  const json* type = find(j, "model_type");
  if (!type) throw Error(at(where, "missing required key \"model_type\""));
  if (!type->is_string() || type->get<std::string>() != "llama")
    throw Error(at(where, "unsupported model_type " + type->dump() + " (supported: \"llama\")"));
  const std::string act = optional_string(j, "hidden_act", where, "silu");
  if (act != "silu" && act != "swish")
    throw Error(at(where, "unsupported hidden_act \"" + act + "\" (Llama uses \"silu\")"));

  LlamaConfig c;
  c.vocab_size = require_int(j, "vocab_size", where);
  c.hidden_size = require_int(j, "hidden_size", where);
  c.intermediate_size = require_int(j, "intermediate_size", where);
  c.num_hidden_layers = require_int(j, "num_hidden_layers", where);
  c.num_attention_heads = require_int(j, "num_attention_heads", where);
  check_range(c.vocab_size, 1, kMaxVocab, "vocab_size", where);
  check_range(c.hidden_size, 1, kMaxHidden, "hidden_size", where);
  check_range(c.intermediate_size, 1, kMaxIntermediate, "intermediate_size", where);
  check_range(c.num_hidden_layers, 1, kMaxLayers, "num_hidden_layers", where);
  check_range(c.num_attention_heads, 1, kMaxHeads, "num_attention_heads", where);
  // Llama-1 / Vicuna-1.3 configs predate grouped-query attention: one KV head per query head.
  c.num_key_value_heads = optional_int(j, "num_key_value_heads", where, c.num_attention_heads);
  check_range(c.num_key_value_heads, 1, c.num_attention_heads, "num_key_value_heads", where);
  if (c.num_attention_heads % c.num_key_value_heads != 0)
    throw Error(at(where, "num_attention_heads " + std::to_string(c.num_attention_heads) +
                              " is not a multiple of num_key_value_heads " + std::to_string(c.num_key_value_heads)));
  if (find(j, "head_dim")) {
    c.head_dim = require_int(j, "head_dim", where);
  } else {
    if (c.hidden_size % c.num_attention_heads != 0)
      throw Error(at(where, "hidden_size " + std::to_string(c.hidden_size) + " is not a multiple of num_attention_heads " +
                                std::to_string(c.num_attention_heads) + " (and no \"head_dim\" is given)"));
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  check_range(c.head_dim, 2, kMaxHeadDim, "head_dim", where);
  if (c.head_dim % 2 != 0)
    throw Error(at(where, "\"head_dim\" must be even (rotary embeddings pair its halves), got " + std::to_string(c.head_dim)));
  c.max_position_embeddings = optional_int(j, "max_position_embeddings", where, 2048);
  check_range(c.max_position_embeddings, 1, kMaxPositions, "max_position_embeddings", where);
  c.rms_norm_eps = optional_double(j, "rms_norm_eps", where, 1e-6);
  check_real(c.rms_norm_eps, 0.0, 0.1, "rms_norm_eps", where);
  c.rope_theta = read_rope_theta(j, where);
  c.tie_word_embeddings = optional_bool(j, "tie_word_embeddings", where, false);
  c.attention_bias = optional_bool(j, "attention_bias", where, false);
  c.mlp_bias = optional_bool(j, "mlp_bias", where, false);
  c.bos_token_id = token_id(j, "bos_token_id", where, 1);
  c.eos_token_id = token_id(j, "eos_token_id", where, 2);
  c.pad_token_id = token_id(j, "pad_token_id", where, -1);
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  c.torch_dtype = optional_string(j, "dtype", where, optional_string(j, "torch_dtype", where, "float32"));
  if (static_cast<double>(c.parameter_count()) > kMaxParameters)
    throw Error(at(where, "the config describes " + std::to_string(c.parameter_count()) +
                              " parameters, more than the limit of 1e12"));
  return c;
}

json LlamaConfig::to_json() const {
  json j;
  j["architectures"] = json::array({"LlamaForCausalLM"});
  j["model_type"] = "llama";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["hidden_act"] = "silu";
  j["max_position_embeddings"] = max_position_embeddings;
  j["rms_norm_eps"] = rms_norm_eps;
  j["rope_theta"] = rope_theta;
  j["rope_scaling"] = nullptr;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["attention_bias"] = attention_bias;
  j["mlp_bias"] = mlp_bias;
  j["bos_token_id"] = bos_token_id >= 0 ? json(bos_token_id) : json(nullptr);
  j["eos_token_id"] = eos_token_id >= 0 ? json(eos_token_id) : json(nullptr);
  if (pad_token_id >= 0) j["pad_token_id"] = pad_token_id;
  j["torch_dtype"] = torch_dtype;
  return j;
}

LlamaConfig read_llama_config(const std::string& path) { return LlamaConfig::from_json(io::read_json_file(path), path); }

}  // namespace cx::model
