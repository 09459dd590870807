#include "cx/model/llama.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <set>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/safetensors.hpp"
#include "cx/io/sha256.hpp"
#include "cx/random/rng.hpp"

namespace cx::model {
namespace F = torch::nn::functional;
namespace fs = std::filesystem;

namespace {

struct Node : torch::nn::Module {};  // a parameter-only node, so that parameter paths are HF's keys

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr std::uint64_t kLoraPurpose = 0x4C6F5241;  // "LoRA": training_rng's purpose for adapter init
const std::vector<std::string> kLoraTargets = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};

std::string shape_string(torch::IntArrayRef shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string list_keys(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 8;
  std::string s;
  for (size_t i = 0; i < keys.size() && i < kShown; ++i) s += (i ? ", " : "") + keys[i];
  if (keys.size() > kShown) s += ", ... (" + std::to_string(keys.size() - kShown) + " more)";
  return s;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// The additive mask's value for a hidden key: the dtype's finite minimum (HF's finfo.min).
double mask_min(torch::ScalarType t) {
  switch (t) {
    case torch::kBFloat16: return static_cast<double>(std::numeric_limits<c10::BFloat16>::lowest());
    case torch::kHalf: return static_cast<double>(std::numeric_limits<c10::Half>::lowest());
    case torch::kDouble: return std::numeric_limits<double>::lowest();
    default: return static_cast<double>(std::numeric_limits<float>::lowest());
  }
}

torch::Tensor rotate_half(const torch::Tensor& x) {
  const std::int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// The weight files of a folder, opened (mapped) and their tensors by key.
struct Checkpoint {
  std::vector<std::shared_ptr<io::SafetensorsFile>> files;
  std::map<std::string, std::pair<const io::TensorView*, std::string>> tensors;  // key -> (view, file)
  bool sharded = false;

  void add(const std::string& path) {
    auto file = std::make_shared<io::SafetensorsFile>(io::SafetensorsFile::open(path));
    for (const auto& [key, view] : file->tensors()) {
      auto [it, inserted] = tensors.emplace(key, std::make_pair(&view, path));
      if (!inserted) throw Error(at(path, "tensor " + quoted(key) + " duplicates one already read from " + it->second.second));
    }
    files.push_back(std::move(file));
  }
};

// The shard file names listed by an index (each a plain name in the folder), key -> file.
std::map<std::string, std::string> read_index(const std::string& index) {
  const nlohmann::json j = io::read_json_file(index);
  if (!j.contains("weight_map") || !j["weight_map"].is_object() || j["weight_map"].empty())
    throw Error(at(index, "no \"weight_map\" object"));
  std::map<std::string, std::string> map;
  for (const auto& [key, value] : j["weight_map"].items()) {
    if (!value.is_string()) throw Error(at(index, "weight_map entry " + quoted(key) + " is not a file name"));
    const std::string name = value.get<std::string>();
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw Error(at(index, "weight_map entry " + quoted(key) + " names " + quoted(name) + ", not a file in the folder"));
    map[key] = name;
  }
  return map;
}

std::vector<std::string> weight_file_paths(const std::string& folder, bool* sharded) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "not a model folder (no such directory)"));
  const std::string single = (fs::path(folder) / kSingleFile).string();
  const std::string index = (fs::path(folder) / kIndexFile).string();
  if (fs::exists(single, ec)) {
    *sharded = false;
    return {single};
  }
  if (fs::exists(index, ec)) {
    *sharded = true;
    std::set<std::string> names;
    for (const auto& [key, name] : read_index(index)) names.insert(name);
    std::vector<std::string> paths;
    for (const auto& name : names) paths.push_back((fs::path(folder) / name).string());
    return paths;
  }
  std::string hint;
  if (fs::exists(fs::path(folder) / "pytorch_model.bin", ec))
    hint = " (pytorch_model.bin is a pickle and is never read: convert it to safetensors)";
  throw Error(at(folder, std::string("no ") + kSingleFile + " or " + kIndexFile + hint));
}

Checkpoint open_checkpoint(const std::string& folder) {
  Checkpoint c;
  for (const auto& path : weight_file_paths(folder, &c.sharded)) c.add(path);
  if (c.sharded) {
    const std::string index = (fs::path(folder) / kIndexFile).string();
    for (const auto& [key, name] : read_index(index)) {
      auto it = c.tensors.find(key);
      if (it == c.tensors.end() || fs::path(it->second.second).filename() != name)
        throw Error(at((fs::path(folder) / name).string(), "no tensor " + quoted(key) + " (listed in " + kIndexFile + ")"));
    }
  }
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
std::int64_t LlamaCache::length() const {
  return key.empty() || !key.front().defined() ? 0 : key.front().size(2);
}

void LlamaCache::select_rows(const torch::Tensor& index) {
  for (auto* list : {&key, &value})
    for (auto& t : *list)
      if (t.defined()) t = t.index_select(0, index.to(t.device(), torch::kLong));
  if (attention_mask.defined()) attention_mask = attention_mask.index_select(0, index.to(attention_mask.device(), torch::kLong));
}

std::vector<WeightShape> llama_weight_shapes(const LlamaConfig& c) {
  const std::int64_t D = c.hidden_size, I = c.intermediate_size, q = c.num_attention_heads * c.head_dim,
                     kv = c.num_key_value_heads * c.head_dim;
  std::vector<WeightShape> w;
  w.push_back({"model.embed_tokens.weight", {c.vocab_size, D}});
  for (std::int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    const std::pair<const char*, std::vector<std::int64_t>> attn[] = {
        {"q_proj", {q, D}}, {"k_proj", {kv, D}}, {"v_proj", {kv, D}}, {"o_proj", {D, q}}};
    for (const auto& [name, shape] : attn) {
      w.push_back({l + "self_attn." + name + ".weight", shape});
      if (c.attention_bias) w.push_back({l + "self_attn." + name + ".bias", {shape[0]}});
    }
    const std::pair<const char*, std::vector<std::int64_t>> mlp[] = {
        {"gate_proj", {I, D}}, {"up_proj", {I, D}}, {"down_proj", {D, I}}};
    for (const auto& [name, shape] : mlp) {
      w.push_back({l + "mlp." + name + ".weight", shape});
      if (c.mlp_bias) w.push_back({l + "mlp." + name + ".bias", {shape[0]}});
    }
    w.push_back({l + "input_layernorm.weight", {D}});
    w.push_back({l + "post_attention_layernorm.weight", {D}});
  }
  w.push_back({"model.norm.weight", {D}});
  if (!c.tie_word_embeddings) w.push_back({"lm_head.weight", {c.vocab_size, D}});
  return w;
}

torch::Tensor LlamaModel::add(const std::string& dotted_name, std::vector<std::int64_t> shape,
                              const torch::TensorOptions& options) {
  torch::nn::Module* node = this;
  size_t begin = 0;
  for (size_t dot; (dot = dotted_name.find('.', begin)) != std::string::npos; begin = dot + 1) {
    const std::string part = dotted_name.substr(begin, dot - begin);
    auto children = node->named_children();
    if (auto* found = children.find(part)) node = found->get();
    else node = node->register_module(part, std::make_shared<Node>()).get();
  }
  return node->register_parameter(dotted_name.substr(begin), torch::empty(shape, options));
}

LlamaModel::LlamaModel(const LlamaConfig& config, torch::TensorOptions options) : config_(config) {
  std::map<std::string, torch::Tensor> made;
  for (const auto& w : llama_weight_shapes(config_)) made[w.name] = add(w.name, w.shape, options);
  auto get = [&](const std::string& name) {
    auto it = made.find(name);
    return it == made.end() ? torch::Tensor() : it->second;
  };
  embed_tokens_ = get("model.embed_tokens.weight");
  norm_ = get("model.norm.weight");
  lm_head_ = config_.tie_word_embeddings ? embed_tokens_ : get("lm_head.weight");
  layers_.resize(static_cast<size_t>(config_.num_hidden_layers));
  for (std::int64_t i = 0; i < config_.num_hidden_layers; ++i) {
    const std::string l = "model.layers." + std::to_string(i) + ".";
    Layer& layer = layers_[static_cast<size_t>(i)];
    layer.input_norm = get(l + "input_layernorm.weight");
    layer.post_norm = get(l + "post_attention_layernorm.weight");
    const std::pair<Linear*, std::string> linears[] = {
        {&layer.q, "self_attn.q_proj"}, {&layer.k, "self_attn.k_proj"}, {&layer.v, "self_attn.v_proj"},
        {&layer.o, "self_attn.o_proj"}, {&layer.gate, "mlp.gate_proj"}, {&layer.up, "mlp.up_proj"},
        {&layer.down, "mlp.down_proj"}};
    for (const auto& [lin, name] : linears) {
      lin->weight = get(l + name + ".weight");
      lin->bias = get(l + name + ".bias");
    }
  }
  // HF: 1 / theta^(arange(0, d, 2) / d), every step in float32 (a float64 computation rounded
  // afterwards differs by one ulp in some entries).
  const torch::Tensor exponent =
      torch::arange(0, config_.head_dim, 2, torch::kLong).to(torch::kFloat32) / static_cast<double>(config_.head_dim);
  inv_freq_ = torch::reciprocal(torch::pow(c10::Scalar(config_.rope_theta), exponent));
}

torch::Tensor LlamaModel::parameter(const std::string& name) const {
  auto params = named_parameters(true);
  if (auto* found = params.find(name)) return *found;
  throw Error("llama: model has no parameter \"" + name + "\"");
}

void LlamaModel::init_random(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto& item : named_parameters(true)) {
    const std::string& name = item.key();
    torch::Tensor v = torch::empty(item.value().sizes(), torch::kFloat32);
    if (ends_with(name, "norm.weight")) v.normal_(1.0, 0.1, gen);
    else v.normal_(0.0, 0.02, gen);
    item.value().copy_(v);
  }
}

torch::Tensor LlamaModel::embed(const torch::Tensor& ids) const {
  if (ids.dim() != 2) throw Error("llama: token ids must be [batch, length], got " + shape_string(ids.sizes()));
  torch::Tensor local = ids.to(embed_tokens_.device(), torch::kLong);
  if (local.numel() > 0) {
    const auto lo = local.min().item<std::int64_t>(), hi = local.max().item<std::int64_t>();
    if (lo < 0 || hi >= config_.vocab_size)
      throw Error("llama: token id " + std::to_string(lo < 0 ? lo : hi) + " is outside the vocabulary (0-" +
                  std::to_string(config_.vocab_size - 1) + ")");
  }
  return F::embedding(local, embed_tokens_);
}

torch::Tensor LlamaModel::rms_norm(const torch::Tensor& x, const torch::Tensor& weight) const {
  const torch::Tensor xf = x.to(torch::kFloat32);
  const torch::Tensor normed = xf * torch::rsqrt(xf.pow(2).mean(-1, true) + config_.rms_norm_eps);
  return weight * normed.to(x.scalar_type());
}

torch::Tensor LlamaModel::linear(const Linear& l, const torch::Tensor& x) {
  torch::Tensor y = F::linear(x, l.weight, l.bias);
  if (l.lora_a.defined()) {
    torch::Tensor in = x;
    if (lora_spec_.dropout > 0 && is_training()) in = torch::dropout(in, lora_spec_.dropout, true);
    y = y + F::linear(F::linear(in, l.lora_a), l.lora_b) * l.scale;
  }
  return y;
}

torch::Tensor LlamaModel::attention(Layer& layer, std::size_t index, const torch::Tensor& x, const torch::Tensor& cos,
                                    const torch::Tensor& sin, const torch::Tensor& mask, LlamaCache* cache) {
  const std::int64_t B = x.size(0), L = x.size(1), H = config_.num_attention_heads, KV = config_.num_key_value_heads,
                     d = config_.head_dim, rep = H / KV;
  torch::Tensor q = linear(layer.q, x).view({B, L, H, d}).transpose(1, 2);
  torch::Tensor k = linear(layer.k, x).view({B, L, KV, d}).transpose(1, 2);
  torch::Tensor v = linear(layer.v, x).view({B, L, KV, d}).transpose(1, 2);
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;
  if (cache) {
    if (cache->key.size() <= index) {
      cache->key.resize(index + 1);
      cache->value.resize(index + 1);
    }
    torch::Tensor& ck = cache->key[index];
    torch::Tensor& cv = cache->value[index];
    ck = ck.defined() ? torch::cat({ck, k}, 2) : k.contiguous();
    cv = cv.defined() ? torch::cat({cv, v}, 2) : v.contiguous();
    k = ck;
    v = cv;
  }
  const std::int64_t S = k.size(2);
  // Query head h = g * rep + r reads KV head g: the rep heads of a group share one matrix product.
  const torch::Tensor qg = q.reshape({B, KV, rep * L, d});
  torch::Tensor scores = torch::matmul(qg, k.transpose(2, 3)).view({B, H, L, S}) * std::pow(static_cast<double>(d), -0.5);
  scores = scores + mask;
  const auto softmax_type = x.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat32;
  const torch::Tensor p = torch::softmax(scores, -1, softmax_type).to(q.scalar_type());
  torch::Tensor out = torch::matmul(p.view({B, KV, rep * L, S}), v).view({B, H, L, d});
  out = out.transpose(1, 2).reshape({B, L, H * d});
  return linear(layer.o, out);
}

torch::Tensor LlamaModel::forward(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask,
                                  const torch::Tensor& position_ids, LlamaCache* cache, bool last_only,
                                  std::vector<torch::Tensor>* hidden_states) {
  if (inputs_embeds.dim() != 3 || inputs_embeds.size(2) != config_.hidden_size)
    throw Error("llama: inputs_embeds must be [batch, length, " + std::to_string(config_.hidden_size) + "], got " +
                shape_string(inputs_embeds.sizes()));
  const auto device = embed_tokens_.device();
  const auto dtype = embed_tokens_.scalar_type();
  torch::Tensor x = inputs_embeds.to(device, dtype);
  const std::int64_t B = x.size(0), L = x.size(1);
  if (L == 0) throw Error("llama: empty input (length 0)");
  const std::int64_t past = cache ? cache->length() : 0, S = past + L;
  const auto long_opts = torch::TensorOptions().dtype(torch::kLong).device(device);

  torch::Tensor mask2d;
  if (attention_mask.defined()) {
    mask2d = attention_mask.to(device, torch::kLong);
  } else {
    mask2d = torch::ones({B, L}, long_opts);
    if (cache && cache->attention_mask.defined()) mask2d = torch::cat({cache->attention_mask.to(device, torch::kLong), mask2d}, 1);
    else if (past > 0) mask2d = torch::cat({torch::ones({B, past}, long_opts), mask2d}, 1);
  }
  if (mask2d.dim() != 2 || mask2d.size(0) != B || mask2d.size(1) != S)
    throw Error("llama: attention_mask must be [" + std::to_string(B) + ", " + std::to_string(S) + "] (past " +
                std::to_string(past) + " + length " + std::to_string(L) + "), got " + shape_string(mask2d.sizes()));
  if (past > 0 && cache->key.front().size(0) != B)
    throw Error("llama: the cache holds " + std::to_string(cache->key.front().size(0)) + " rows, the input " +
                std::to_string(B));

  torch::Tensor positions;
  if (position_ids.defined()) {
    positions = position_ids.to(device, torch::kLong);
    if (positions.dim() != 2 || positions.size(0) != B || positions.size(1) != L)
      throw Error("llama: position_ids must be [" + std::to_string(B) + ", " + std::to_string(L) + "], got " +
                  shape_string(positions.sizes()));
  } else {
    positions = (torch::arange(past, S, long_opts)).unsqueeze(0).expand({B, L});
  }

  // Key slot j is visible to query slot past + i when j <= past + i and mask[b, j] == 1.
  const torch::Tensor slots_q = torch::arange(past, S, long_opts).unsqueeze(1);
  const torch::Tensor slots_k = torch::arange(0, S, long_opts).unsqueeze(0);
  const torch::Tensor visible = (slots_k <= slots_q).unsqueeze(0).unsqueeze(0) & (mask2d != 0).view({B, 1, 1, S});
  const torch::Tensor mask = torch::zeros({B, 1, L, S}, x.options()).masked_fill(visible.logical_not(), mask_min(dtype));

  // RoPE tables in float32, then the activations' dtype.
  const torch::Tensor freqs = positions.to(torch::kFloat32).unsqueeze(-1) * inv_freq_.to(device).view({1, 1, -1});
  const torch::Tensor angles = torch::cat({freqs, freqs}, -1);
  const torch::Tensor cos = angles.cos().to(dtype).unsqueeze(1), sin = angles.sin().to(dtype).unsqueeze(1);

  if (hidden_states) hidden_states->assign(1, x);
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    x = x + attention(layer, i, rms_norm(x, layer.input_norm), cos, sin, mask, cache);
    const torch::Tensor h = rms_norm(x, layer.post_norm);
    x = x + linear(layer.down, F::silu(linear(layer.gate, h)) * linear(layer.up, h));
    if (hidden_states && i + 1 < layers_.size()) hidden_states->push_back(x);
  }
  if (cache) cache->attention_mask = mask2d;
  x = rms_norm(x, norm_);
  if (hidden_states) hidden_states->push_back(x);
  if (last_only) x = x.narrow(1, L - 1, 1);
  return F::linear(x, lm_head_).to(torch::kFloat32);
}

// --- LoRA -----------------------------------------------------------------------------------
std::vector<std::pair<std::string, LlamaModel::Linear*>> LlamaModel::lora_sites() {
  std::vector<std::pair<std::string, Linear*>> sites;
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    Layer& layer = layers_[i];
    const std::string l = "model.layers." + std::to_string(i) + ".";
    const std::pair<const char*, Linear*> all[] = {
        {"self_attn.q_proj", &layer.q}, {"self_attn.k_proj", &layer.k}, {"self_attn.v_proj", &layer.v},
        {"self_attn.o_proj", &layer.o}, {"mlp.gate_proj", &layer.gate}, {"mlp.up_proj", &layer.up},
        {"mlp.down_proj", &layer.down}};
    for (const auto& [name, lin] : all) {
      const std::string n = name;
      const std::string target = n.substr(n.find('.') + 1);
      if (std::find(lora_spec_.targets.begin(), lora_spec_.targets.end(), target) != lora_spec_.targets.end())
        sites.emplace_back(l + n, lin);
    }
  }
  return sites;
}

void LlamaModel::add_lora(const LoraSpec& spec, std::uint64_t seed) {
  if (lora_) throw Error("llama: LoRA adapters were already added to this model");
  if (spec.rank < 1 || spec.rank > 4096) throw Error("llama: LoRA rank must be in 1-4096, got " + std::to_string(spec.rank));
  if (!std::isfinite(spec.alpha) || spec.alpha <= 0) throw Error("llama: LoRA alpha must be a positive number");
  if (!(spec.dropout >= 0 && spec.dropout < 1)) throw Error("llama: LoRA dropout must be in [0, 1)");
  if (spec.targets.empty()) throw Error("llama: LoRA needs at least one target module");
  for (const auto& t : spec.targets)
    if (std::find(kLoraTargets.begin(), kLoraTargets.end(), t) == kLoraTargets.end())
      throw Error("llama: unknown LoRA target \"" + t + "\" (known: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
  for (auto& p : parameters(true)) p.set_requires_grad(false);
  lora_spec_ = spec;
  lora_ = true;
  const auto options = embed_tokens_.options().requires_grad(false);
  std::uint64_t site_index = 0;
  for (auto& [name, lin] : lora_sites()) {
    const std::int64_t in = lin->weight.size(1), out = lin->weight.size(0);
    // kaiming_uniform_(a=sqrt(5)) on [rank, in]: bound = sqrt(6 / ((1 + 5) * in)) = 1 / sqrt(in).
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    std::vector<float> a(static_cast<size_t>(spec.rank * in));
    auto rng = random::training_rng(seed, kLoraPurpose, site_index++);
    for (auto& value : a) value = static_cast<float>(rng.uniform(-bound, bound));
    torch::Tensor a_init = torch::from_blob(a.data(), {spec.rank, in}, torch::kFloat32).to(options.device(), options.dtype());
    lin->lora_a = add(name + ".lora_A.weight", {spec.rank, in}, options);
    lin->lora_b = add(name + ".lora_B.weight", {out, spec.rank}, options);
    {
      torch::NoGradGuard no_grad;
      lin->lora_a.copy_(a_init);
      lin->lora_b.zero_();
    }
    lin->lora_a.set_requires_grad(true);
    lin->lora_b.set_requires_grad(true);
    lin->scale = spec.alpha / static_cast<double>(spec.rank);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaModel::lora_parameters() const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  if (!lora_) return out;
  for (auto& [name, lin] : const_cast<LlamaModel*>(this)->lora_sites()) {
    out.emplace_back(name + ".lora_A.weight", lin->lora_a);
    out.emplace_back(name + ".lora_B.weight", lin->lora_b);
  }
  return out;
}

void LlamaModel::load_lora(const NamedTensors& tensors, const std::string& where) {
  if (!lora_) throw Error(at(where, "the model has no LoRA adapters to load into (add_lora first)"));
  static const std::string kPeftPrefix = "base_model.model.";
  std::map<std::string, const torch::Tensor*> given;
  for (const auto& [key, t] : tensors) {
    const std::string k = key.rfind(kPeftPrefix, 0) == 0 ? key.substr(kPeftPrefix.size()) : key;
    if (!given.emplace(k, &t).second) throw Error(at(where, "adapter tensor " + quoted(key) + " given twice"));
  }
  std::vector<std::string> missing, unexpected;
  const auto expected = lora_parameters();
  std::set<std::string> names;
  for (const auto& [name, p] : expected) {
    names.insert(name);
    if (!given.count(name)) missing.push_back(name);
  }
  for (const auto& [name, t] : given)
    if (!names.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = "LoRA adapters do not match the model (rank " + std::to_string(lora_spec_.rank) + "):";
    if (!missing.empty()) msg += " missing " + std::to_string(missing.size()) + " key(s): " + list_keys(missing);
    if (!missing.empty() && !unexpected.empty()) msg += ";";
    if (!unexpected.empty()) msg += " unexpected " + std::to_string(unexpected.size()) + " key(s): " + list_keys(unexpected);
    throw Error(at(where, msg));
  }
  for (const auto& [name, p] : expected) {
    const torch::Tensor& t = *given.at(name);
    if (t.sizes() != p.sizes())
      throw Error(at(where, "adapter tensor " + quoted(name) + " has shape " + shape_string(t.sizes()) + ", expected " +
                                shape_string(p.sizes())));
    check_finite_weight(t, name, where);
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : expected) p.copy_(*given.at(name));
}

// --- folders --------------------------------------------------------------------------------
std::shared_ptr<LlamaModel> load_llama(const std::string& folder, torch::Device device, torch::ScalarType dtype) {
  if (dtype != torch::kFloat32 && dtype != torch::kBFloat16 && dtype != torch::kHalf)
    throw Error(at(folder, "weights load as float32, bfloat16 or float16 only"));
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "not a model folder (no such directory)"));
  const LlamaConfig config = read_llama_config((fs::path(folder) / "config.json").string());
  Checkpoint ckpt = open_checkpoint(folder);

  const std::vector<WeightShape> expected = llama_weight_shapes(config);
  std::set<std::string> expected_names;
  std::vector<std::string> missing, unexpected, ignored;
  for (const auto& w : expected) {
    expected_names.insert(w.name);
    if (!ckpt.tensors.count(w.name)) missing.push_back(w.name);
  }
  for (const auto& [key, entry] : ckpt.tensors) {
    if (expected_names.count(key)) continue;
    // Old checkpoints saved RoPE's buffer; a tied model's file may repeat the embedding as lm_head.
    if (ends_with(key, ".rotary_emb.inv_freq") || (config.tie_word_embeddings && key == "lm_head.weight")) ignored.push_back(key);
    else unexpected.push_back(key);
  }
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = "weights do not match the config (llama, " + std::to_string(config.num_hidden_layers) +
                      " layers, hidden " + std::to_string(config.hidden_size) +
                      (config.tie_word_embeddings ? ", tied head" : "") + "):";
    if (!missing.empty()) msg += " missing " + std::to_string(missing.size()) + " key(s): " + list_keys(missing);
    if (!missing.empty() && !unexpected.empty()) msg += ";";
    if (!unexpected.empty()) msg += " unexpected " + std::to_string(unexpected.size()) + " key(s): " + list_keys(unexpected);
    throw Error(at(folder, msg));
  }
  for (const auto& w : expected) {
    const auto& [view, file] = ckpt.tensors.at(w.name);
    if (view->shape != w.shape)
      throw Error(at(file, "tensor " + quoted(w.name) + " has shape " + shape_string(view->shape) + ", expected " +
                               shape_string(w.shape) + " from the config"));
  }
  if (!ignored.empty()) log::debug(folder + ": ignoring " + list_keys(ignored));

  auto model = std::make_shared<LlamaModel>(config, torch::TensorOptions().device(device).dtype(dtype));
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters(true)) {
      const auto& [view, file] = ckpt.tensors.at(item.key());
      torch::Tensor t = tensor_from_view(*view, file);
      check_finite_weight(t, item.key(), file);
      item.value().copy_(t);
    }
  }
  model->eval();
  log::debug(folder + ": loaded llama (" + std::to_string(config.num_hidden_layers) + " layers, hidden " +
             std::to_string(config.hidden_size) + ", " + std::to_string(config.parameter_count()) + " parameters)");
  return model;
}

std::string llama_weights_sha256(const std::string& folder) {
  bool sharded = false;
  const auto paths = weight_file_paths(folder, &sharded);
  if (!sharded) return io::sha256_file_hex(paths.front());
  std::string manifest;  // paths are sorted by file name already
  for (const auto& p : paths) manifest += io::sha256_file_hex(p) + "  " + fs::path(p).filename().string() + "\n";
  return io::sha256_hex(manifest);
}

void save_llama_folder(const std::string& folder, const LlamaModel& model, torch::ScalarType dtype) {
  io::DType file_dtype;
  std::string dtype_name;
  switch (dtype) {
    case torch::kFloat32: file_dtype = io::DType::f32; dtype_name = "float32"; break;
    case torch::kBFloat16: file_dtype = io::DType::bf16; dtype_name = "bfloat16"; break;
    case torch::kHalf: file_dtype = io::DType::f16; dtype_name = "float16"; break;
    default: throw Error(at(folder, "weights are saved as float32, bfloat16 or float16 only"));
  }
  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw Error(at(folder, "cannot create folder: " + ec.message()));
  io::NamedArrays arrays;
  for (const auto& w : llama_weight_shapes(model.config())) {
    torch::Tensor t = model.parameter(w.name).detach().to(torch::kCPU, dtype).contiguous();
    io::NdArray a;
    a.dtype = file_dtype;
    a.shape = t.sizes().vec();
    const auto* bytes = static_cast<const std::uint8_t*>(t.data_ptr());
    a.data.assign(bytes, bytes + t.nbytes());
    arrays.emplace_back(w.name, std::move(a));
  }
  io::write_safetensors_file((fs::path(folder) / kSingleFile).string(), arrays, {{"format", "pt"}});
  LlamaConfig saved = model.config();
  saved.torch_dtype = dtype_name;
  cli::write_file_atomic((fs::path(folder) / "config.json").string(), saved.to_json().dump(2) + "\n");
}

// --- decoding -------------------------------------------------------------------------------
LlamaDecoder::LlamaDecoder(LlamaModel& model) : model_(model) {}

torch::Tensor LlamaDecoder::prefill(const torch::Tensor& inputs_embeds, const torch::Tensor& attention_mask) {
  torch::NoGradGuard no_grad;
  cache_ = LlamaCache();
  torch::Tensor mask = attention_mask.defined()
                           ? attention_mask.to(torch::kLong)
                           : torch::ones({inputs_embeds.size(0), inputs_embeds.size(1)}, torch::kLong);
  // HF generate(): positions count the row's tokens; pads get 1 (they are masked anyway).
  torch::Tensor positions = mask.cumsum(-1) - 1;
  positions.masked_fill_(mask == 0, 1);
  torch::Tensor logits = model_.forward(inputs_embeds, mask, positions, &cache_, true);
  last_positions_ = positions.select(1, positions.size(1) - 1).to(torch::kCPU).contiguous();
  return logits.select(1, 0);
}

torch::Tensor LlamaDecoder::step(const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  if (!cache_.attention_mask.defined()) throw Error("llama: step() before prefill()");
  const std::int64_t rows = cache_.attention_mask.size(0);
  if (ids.dim() != 1 || ids.size(0) != rows)
    throw Error("llama: step() takes one id per row (" + std::to_string(rows) + "), got " + shape_string(ids.sizes()));
  const torch::Tensor mask = torch::cat({cache_.attention_mask, torch::ones({rows, 1}, cache_.attention_mask.options())}, 1);
  // The last column of cumsum(mask) - 1: that slot is a token, so never a pad.
  const torch::Tensor positions = (mask.sum(1, true) - 1);
  torch::Tensor logits = model_.forward(model_.embed(ids.view({rows, 1})), mask, positions, &cache_, true);
  last_positions_ = positions.view({rows}).to(torch::kCPU);
  return logits.select(1, 0);
}

void LlamaDecoder::select_rows(const torch::Tensor& index) {
  const torch::Tensor cpu = index.to(torch::kCPU, torch::kLong);
  cache_.select_rows(cpu);
  if (last_positions_.defined()) last_positions_ = last_positions_.index_select(0, cpu);
}

}  // namespace cx::model
