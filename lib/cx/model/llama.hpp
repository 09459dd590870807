#pragma once
// A Llama-architecture language model (Hugging Face's LlamaForCausalLM with eager attention),
// numerically as ../shared/fixtures/llm/README.md describes it:
//   h = x + o_proj(attn(RMSNorm1(x))); out = h + down(silu(gate(RMSNorm2(h))) * up(RMSNorm2(h)));
//   logits = lm_head(RMSNorm(out)) (lm_head = embed_tokens when tie_word_embeddings).
// RMSNorm in float32 (cast back, then times the weight); RoPE in the rotate-half convention with
// inv_freq, angles, cos and sin in float32; grouped-query attention (query head h reads KV head
// h / (heads / kv_heads)); the additive mask uses the dtype's finite minimum, so fully masked (pad)
// query rows are uniform, never NaN; softmax in float32. Parameters are registered under the HF
// checkpoint keys ("model.layers.0.self_attn.q_proj.weight", ...), LoRA adapters under peft's
// ("model.layers.0.self_attn.q_proj.lora_A.weight").
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "cx/model/generate.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/llama_config.hpp"

namespace cx::model {

// Keys and values of every layer so far, post-RoPE, KV heads only (not repeated).
struct LlamaCache {
  std::vector<torch::Tensor> key, value;  // per layer [B, KV, T, head_dim]
  torch::Tensor attention_mask;           // [B, T] int64, every slot so far (1 = attend)
  std::int64_t length() const;            // T (0 when empty)
  void select_rows(const torch::Tensor& index);  // row i <- old row index[i], for every tensor
};

struct LoraSpec {
  std::int64_t rank = 8;
  double alpha = 16;
  double dropout = 0.0;  // on the adapter's input, in training mode only (torch's global generator)
  // Any of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
  std::vector<std::string> targets = {"q_proj", "k_proj", "v_proj", "o_proj"};
};

// Every weight of the model under its HF key, in checkpoint order (no lm_head when tied).
std::vector<WeightShape> llama_weight_shapes(const LlamaConfig& config);

class LlamaModel : public torch::nn::Module {
 public:
  // Parameters are created uninitialised (torch::empty) with `options` (device, dtype): load
  // weights, or call init_random.
  explicit LlamaModel(const LlamaConfig& config, torch::TensorOptions options = torch::TensorOptions());

  const LlamaConfig& config() const { return config_; }

  // [B, L] int64 -> [B, L, hidden] (ids outside 0..vocab_size-1 are an error naming the id).
  torch::Tensor embed(const torch::Tensor& ids) const;

  // logits [B, L, V] float32 (or [B, 1, V] with last_only) of inputs_embeds [B, L, hidden].
  // attention_mask [B, past + L] (undefined: all ones, or the cache's mask followed by ones);
  // position_ids [B, L] (undefined: past + 0..L-1); the cache, when given, is extended by this
  // call's keys, values and mask. Trainable (autograd) when no cache is given. hidden_states, when
  // given, receives HF's output_hidden_states: the input, the output of each layer but the last,
  // and the final RMSNorm of the last.
  torch::Tensor forward(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask = {},
                        const torch::Tensor& position_ids = {}, LlamaCache* cache = nullptr, bool last_only = false,
                        std::vector<torch::Tensor>* hidden_states = nullptr);

  // LoRA on the spec's targets in every layer: y = W x + b + (alpha / rank) * B A dropout(x), A
  // [rank, in] drawn as peft does (kaiming-uniform with a = sqrt(5): U(-1/sqrt(in), 1/sqrt(in)),
  // from cx's counter-based generator with `seed`), B [out, rank] zeros, so the model is unchanged
  // until B trains. Every base weight is frozen (requires_grad false). Once per model.
  void add_lora(const LoraSpec& spec, std::uint64_t seed);
  bool has_lora() const { return lora_; }
  const LoraSpec& lora_spec() const { return lora_spec_; }
  // The adapters under peft's names, A before B, layer by layer.
  std::vector<std::pair<std::string, torch::Tensor>> lora_parameters() const;
  // Copies adapters (after add_lora with the same spec) from peft-named tensors; keys may carry
  // peft's "base_model.model." prefix. Strict: missing, unexpected, misshapen or non-finite tensors
  // are errors naming `where` and the key.
  void load_lora(const NamedTensors& tensors, const std::string& where);

  // Deterministic random weights (seeded CPU generator): matrices and biases N(0, 0.02), norm
  // weights 1 + N(0, 0.1). For tests and benchmarks.
  void init_random(std::uint64_t seed);
  // The parameter under its HF key; throws naming it when absent.
  torch::Tensor parameter(const std::string& name) const;
  // RoPE's inverse frequencies [head_dim / 2], float32 on the CPU.
  const torch::Tensor& rope_inv_freq() const { return inv_freq_; }

 private:
  struct Linear {
    torch::Tensor weight, bias, lora_a, lora_b;
    double scale = 0;
  };
  struct Layer {
    torch::Tensor input_norm, post_norm;
    Linear q, k, v, o, gate, up, down;
  };
  torch::Tensor add(const std::string& dotted_name, std::vector<std::int64_t> shape, const torch::TensorOptions& options);
  torch::Tensor linear(const Linear& l, const torch::Tensor& x);
  torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight) const;
  torch::Tensor attention(Layer& layer, std::size_t index, const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin, const torch::Tensor& mask, LlamaCache* cache);
  std::vector<std::pair<std::string, Linear*>> lora_sites();

  LlamaConfig config_;
  torch::Tensor embed_tokens_, norm_, lm_head_;
  std::vector<Layer> layers_;
  torch::Tensor inv_freq_;
  bool lora_ = false;
  LoraSpec lora_spec_;
};

// A folder: config.json + model.safetensors, or a sharded model.safetensors.index.json beside its
// shards. F32/F16/BF16 weights are converted to `dtype` (kFloat32: bf16/f16 upcast; kBFloat16:
// kept). A tied head takes embed_tokens (a stray lm_head.weight is then ignored); stray
// "*.rotary_emb.inv_freq" keys of old checkpoints are ignored; missing, unexpected and misshapen
// tensors are named before any parameter memory is taken; non-finite weights are errors.
// Returned in eval mode.
std::shared_ptr<LlamaModel> load_llama(const std::string& folder, torch::Device device = torch::kCPU,
                                       torch::ScalarType dtype = torch::kFloat32);

// The SHA-256 of the folder's weights, as load_hf_vit states it: model.safetensors' digest, or for
// shards that of the `sha256sum`-style manifest "<hex>  <file>\n" of the shards sorted by name.
std::string llama_weights_sha256(const std::string& folder);

// Writes config.json and model.safetensors (HF keys, metadata format=pt, tensors in dtype, LoRA
// adapters not included), each atomically; creates the folder.
void save_llama_folder(const std::string& folder, const LlamaModel& model, torch::ScalarType dtype = torch::kFloat32);

// generate()'s decoder over a LlamaModel (no gradients). prefill(inputs_embeds [B, L, hidden],
// attention_mask [B, L], 1 = token, left-padded) runs the prompt, keeps the cache and returns the
// last position's logits [B, V]; positions follow HF generate(): cumsum(mask) - 1 with pads set to
// 1, and each step() takes the last column of that rule over the mask extended by a 1.
class LlamaDecoder : public CausalDecoder {
 public:
  explicit LlamaDecoder(LlamaModel& model);
  torch::Tensor prefill(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask);
  torch::Tensor step(const torch::Tensor& ids) override;
  void select_rows(const torch::Tensor& index) override;

  const LlamaCache& cache() const { return cache_; }
  // The position id each row's last slot took ([rows] int64).
  const torch::Tensor& last_positions() const { return last_positions_; }

 private:
  LlamaModel& model_;
  LlamaCache cache_;
  torch::Tensor last_positions_;
};

}  // namespace cx::model
