#pragma once
// The config.json of a Hugging Face Llama-architecture language model (LlamaForCausalLM), read
// without LibTorch so that any tool (and the fuzzer) can check a folder. Hugging Face's rules:
// num_key_value_heads absent -> num_attention_heads; head_dim absent -> hidden_size /
// num_attention_heads; rope_theta absent -> 10000; transformers v5's rope_parameters {rope_type,
// rope_theta} is read in place of rope_theta; any RoPE scaling (rope_scaling non-null, a rope_type
// other than "default") is refused as not supported. eos_token_id may be a list (the first is used).
// Every size is bounded before anything is built from it; errors name the file and the key.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace cx::model {

struct LlamaConfig {
  std::int64_t vocab_size = 32000;
  std::int64_t hidden_size = 4096;
  std::int64_t intermediate_size = 11008;
  std::int64_t num_hidden_layers = 32;
  std::int64_t num_attention_heads = 32;
  std::int64_t num_key_value_heads = 32;
  std::int64_t head_dim = 128;
  std::int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;
  bool mlp_bias = false;
  std::int64_t bos_token_id = 1;
  std::int64_t eos_token_id = 2;
  std::int64_t pad_token_id = -1;  // -1: none
  std::string torch_dtype = "float32";

  // `where` names the source in errors (the file's path).
  static LlamaConfig from_json(const nlohmann::json& j, const std::string& where);
  // As save_pretrained writes it (model_type "llama", architectures, hidden_act "silu", rope_scaling null).
  nlohmann::json to_json() const;

  std::int64_t kv_groups() const { return num_attention_heads / num_key_value_heads; }
  std::int64_t parameter_count() const;  // the weights load_llama expects (tied head counted once)
};

// read_json_file(path) + LlamaConfig::from_json(j, path).
LlamaConfig read_llama_config(const std::string& path);

}  // namespace cx::model
