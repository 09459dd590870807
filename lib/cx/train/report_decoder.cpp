#include "cx/train/report_decoder.hpp"

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <utility>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/npy.hpp"
#include "cx/metrics/text.hpp"
#include "cx/model/attention.hpp"
#include "cx/random/rng.hpp"
#include "cx/train/checkpoint.hpp"
#include "cx/train/head.hpp"
#include "cx/train/loss.hpp"
#include "cx/train/optim.hpp"
#include "cx/train/tensor_io.hpp"

namespace cx::train {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

constexpr const char* kCheckpointFormat = "cx-report-decoder-checkpoint";
constexpr std::uint64_t kShufflePurpose = 41;
constexpr std::uint64_t kDropoutPurpose = 42;
constexpr double kNormEps = 1e-5;
constexpr std::int64_t kIgnore = -100;

// --- records --------------------------------------------------------------------------------------

struct Tokens {
  io::NdArray array;
  torch::ScalarType dtype = torch::kFloat32;
};

Tokens read_tokens(const io::Record& record, const std::string& field, const std::string& where) {
  const io::Field* f = record.find(field + ".npy");
  if (!f) throw Error(at(where, "no " + field + ".npy field (embed with cx-embed --emit " + field + ")"));
  Tokens t;
  t.array = io::read_npy(f->data, where + "." + field + ".npy");
  if (t.array.dtype == io::DType::f16) t.dtype = torch::kHalf;
  else if (t.array.dtype == io::DType::f32) t.dtype = torch::kFloat32;
  else throw Error(at(where + "." + field + ".npy", "expected float16 or float32 tokens"));
  return t;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

torch::Tensor tokens_tensor(Tokens& t) {
  return torch::from_blob(t.array.data.data(), t.array.shape, t.dtype);
}

// --- module pieces -------------------------------------------------------------------------------

// The parameters of a decoder of this shape, by name, in a fixed order.
std::vector<std::pair<std::string, std::vector<std::int64_t>>> parameter_shapes(const ReportDecoderShape& s,
                                                                                const MemoryLayout& m) {
  const std::int64_t d = s.d_model, f = s.ffn;
  std::vector<std::pair<std::string, std::vector<std::int64_t>>> p = {
      {"memory.proj.weight", {d, m.dim}}, {"memory.proj.bias", {d}},      {"memory.position", {m.slots(), d}},
      {"memory.norm.weight", {d}},        {"memory.norm.bias", {d}},      {"embed.tokens", {s.vocab_size, d}},
      {"embed.positions", {s.max_len, d}}};
  for (std::int64_t l = 0; l < s.layers; ++l) {
    const std::string L = "layers." + std::to_string(l) + ".";
    for (const char* norm : {"self_norm", "cross_norm", "ffn_norm"}) {
      p.push_back({L + norm + ".weight", {d}});
      p.push_back({L + norm + ".bias", {d}});
    }
    for (const char* attn : {"self_attn", "cross_attn"})
      for (const char* proj : {"q", "k", "v", "out"}) {
        p.push_back({L + attn + "." + proj + ".weight", {d, d}});
        p.push_back({L + attn + "." + proj + ".bias", {d}});
      }
    p.push_back({L + "ffn.fc1.weight", {f, d}});
    p.push_back({L + "ffn.fc1.bias", {f}});
    p.push_back({L + "ffn.fc2.weight", {d, f}});
    p.push_back({L + "ffn.fc2.bias", {d}});
  }
  p.push_back({"final_norm.weight", {d}});
  p.push_back({"final_norm.bias", {d}});
  return p;
}

torch::nn::Module& child(torch::nn::Module& m, const std::string& name) {
  auto children = m.named_children();
  if (auto* c = children.find(name)) return **c;
  return *m.register_module(name, std::make_shared<torch::nn::Module>());
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  return at::layer_norm(x, {x.size(-1)}, w, b, kNormEps);
}

// x [B, T, d] -> [B, H, T, d / H]
torch::Tensor split_heads(const torch::Tensor& x, std::int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, x.size(2) / heads}).transpose(1, 2);
}
// [B, H, T, hd] -> [B, T, H * hd]
torch::Tensor merge_heads(const torch::Tensor& x) {
  return x.transpose(1, 2).reshape({x.size(0), x.size(2), x.size(1) * x.size(3)});
}

// Inverted dropout with a mask drawn on the CPU from `gen` (the same draws on every device).
torch::Tensor dropout(const torch::Tensor& x, double p, at::Generator* gen, bool training) {
  if (!training || gen == nullptr || p <= 0) return x;
  torch::Tensor keep = torch::empty(x.sizes(), torch::kFloat32).bernoulli_(1.0 - p, *gen);
  keep.mul_(1.0 / (1.0 - p));
  return x * keep.to(x.device());
}

// Additive causal mask [T, T]: 0 on and below the diagonal, -inf above.
torch::Tensor causal_mask(std::int64_t T, const torch::Device& device) {
  return torch::full({T, T}, -std::numeric_limits<float>::infinity(), torch::TensorOptions().device(device)).triu(1);
}

// Scores, (mask), softmax, values: the differentiable reference path.
torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& mask) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
  torch::Tensor s = torch::matmul(q, k.transpose(-2, -1)) * scale;
  if (mask.defined()) s = s + mask;
  return torch::matmul(torch::softmax(s, -1), v);
}

}  // namespace

// --- memories ------------------------------------------------------------------------------------

MemoryLayout record_memory_layout(const io::Record& record, const MemoryOptions& options, const std::string& where) {
  MemoryLayout m;
  Tokens patch = read_tokens(record, m.field, where);
  if (patch.array.shape.size() != 3)
    throw Error(at(where + ".patch.npy", "expected [h, w, D] tokens, got " + shape_text(patch.array.shape)));
  m.grid_h = patch.array.shape[0];
  m.grid_w = patch.array.shape[1];
  m.dim = patch.array.shape[2];
  if (options.registers && record.has("reg.npy")) {
    Tokens reg = read_tokens(record, "reg", where);
    if (reg.array.shape.size() != 2 || reg.array.shape[1] != m.dim)
      throw Error(at(where + ".reg.npy", "expected [R, " + std::to_string(m.dim) + "] register tokens, got " +
                                             shape_text(reg.array.shape)));
    m.registers = reg.array.shape[0];
  }
  m.cls = options.cls;
  if (m.slots() < 1) throw Error(at(where, "no memory tokens (an empty patch grid)"));
  return m;
}

torch::Tensor record_memory(const io::Record& record, const MemoryLayout& layout, const std::string& where) {
  Tokens patch = read_tokens(record, layout.field, where);
  const std::vector<std::int64_t> want = {layout.grid_h, layout.grid_w, layout.dim};
  if (patch.array.shape != want)
    throw Error(at(where + ".patch.npy", "tokens of shape " + shape_text(patch.array.shape) + ", but the memory layout is " +
                                             layout.describe()));
  const std::int64_t S = layout.slots(), D = layout.dim, P = layout.grid_h * layout.grid_w;
  torch::Tensor out = torch::empty({S, D}, patch.dtype);
  std::int64_t row = 0;
  if (layout.cls) {
    Tokens cls = read_tokens(record, "cls", where);
    if (cls.array.shape != std::vector<std::int64_t>{D})
      throw Error(at(where + ".cls.npy", "expected [" + std::to_string(D) + "], got " + shape_text(cls.array.shape)));
    out[row++].copy_(tokens_tensor(cls));
  }
  if (layout.registers > 0) {
    if (!record.has("reg.npy")) throw Error(at(where, "no reg.npy field, but the memory layout has " +
                                                          std::to_string(layout.registers) + " register tokens"));
    Tokens reg = read_tokens(record, "reg", where);
    if (reg.array.shape != std::vector<std::int64_t>{layout.registers, D})
      throw Error(at(where + ".reg.npy", "register tokens of shape " + shape_text(reg.array.shape) +
                                             ", but the memory layout is " + layout.describe()));
    out.narrow(0, row, layout.registers).copy_(tokens_tensor(reg));
    row += layout.registers;
  }
  if (P > 0) out.narrow(0, row, P).copy_(tokens_tensor(patch).view({P, D}));
  if (!torch::isfinite(out).all().item<bool>()) throw Error(at(where, "non-finite values in the memory tokens"));
  return out;
}

ReportSet load_report_set(data::RecordSource& source, const MemoryOptions& options, bool require_text,
                          const std::string& where, const MemoryLayout* layout) {
  ReportSet s;
  s.header = source.header();
  std::vector<torch::Tensor> memories;
  io::Record r;
  torch::ScalarType dtype = torch::kFloat32;
  while (source.next(r)) {
    try {
      if (memories.empty()) {
        s.layout = layout ? *layout : record_memory_layout(r, options, r.key);
      }
      torch::Tensor m = record_memory(r, s.layout, r.key);
      if (memories.empty()) dtype = m.scalar_type();
      const io::Field* txt = r.find("txt");
      if (!txt && require_text) throw Error(at(r.key, "no .txt report to learn from"));
      s.keys.push_back(r.key);
      s.texts.push_back(txt ? txt->data : std::string());
      memories.push_back(m.to(dtype));
    } catch (const Error& e) {
      throw Error(at(where, e.what()));
    }
  }
  if (memories.empty()) throw Error(at(where, "no records"));
  s.memory = torch::stack(memories);
  return s;
}

// --- the module ----------------------------------------------------------------------------------

ReportDecoderModule::ReportDecoderModule(const ReportDecoderShape& shape, const MemoryLayout& memory)
    : shape_(shape), slots_(memory.slots()), dim_(memory.dim) {
  ReportDecoderConfig c;
  c.shape = shape;
  c.memory = memory;
  validate_report_decoder_config(c, "report decoder");
  for (const auto& [name, sizes] : parameter_shapes(shape, memory)) {
    torch::nn::Module* node = this;
    std::size_t begin = 0;
    for (std::size_t dot = name.find('.'); dot != std::string::npos; dot = name.find('.', begin)) {
      node = &child(*node, name.substr(begin, dot - begin));
      begin = dot + 1;
    }
    node->register_parameter(name.substr(begin), torch::zeros(sizes));
  }
  auto p = named_parameters(true);
  mem_w_ = p["memory.proj.weight"];
  mem_b_ = p["memory.proj.bias"];
  mem_pos_ = p["memory.position"];
  mem_norm_w_ = p["memory.norm.weight"];
  mem_norm_b_ = p["memory.norm.bias"];
  tok_ = p["embed.tokens"];
  pos_ = p["embed.positions"];
  final_w_ = p["final_norm.weight"];
  final_b_ = p["final_norm.bias"];
  for (std::int64_t l = 0; l < shape.layers; ++l) {
    const std::string L = "layers." + std::to_string(l) + ".";
    Layer y;
    y.self_norm_w = p[L + "self_norm.weight"];
    y.self_norm_b = p[L + "self_norm.bias"];
    y.cross_norm_w = p[L + "cross_norm.weight"];
    y.cross_norm_b = p[L + "cross_norm.bias"];
    y.ffn_norm_w = p[L + "ffn_norm.weight"];
    y.ffn_norm_b = p[L + "ffn_norm.bias"];
    auto attention = [&](const std::string& a) {
      return Attention{p[L + a + ".q.weight"], p[L + a + ".q.bias"], p[L + a + ".k.weight"], p[L + a + ".k.bias"],
                       p[L + a + ".v.weight"], p[L + a + ".v.bias"], p[L + a + ".out.weight"], p[L + a + ".out.bias"]};
    };
    y.self_attn = attention("self_attn");
    y.cross_attn = attention("cross_attn");
    y.fc1_w = p[L + "ffn.fc1.weight"];
    y.fc1_b = p[L + "ffn.fc1.bias"];
    y.fc2_w = p[L + "ffn.fc2.weight"];
    y.fc2_b = p[L + "ffn.fc2.bias"];
    layers_.push_back(std::move(y));
  }
}

void ReportDecoderModule::init(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  const double sd = 0.02, residual_sd = 0.02 / std::sqrt(3.0 * static_cast<double>(shape_.layers));
  // One fixed order of draws: the parameter list.
  for (auto& p : named_parameters(true)) {
    const std::string& name = p.key();
    torch::Tensor& t = p.value();
    if (t.dim() == 1) {
      const bool norm_weight = name.find("norm.weight") != std::string::npos;
      t.fill_(norm_weight ? 1.0 : 0.0);
      continue;
    }
    const bool residual = name.find(".out.weight") != std::string::npos || name.find("fc2.weight") != std::string::npos;
    t.copy_(torch::randn(t.sizes(), gen, torch::kFloat32) * (residual ? residual_sd : sd));
  }
}

torch::Tensor ReportDecoderModule::encode(const torch::Tensor& memory, at::Generator* gen) {
  if (memory.dim() != 3 || memory.size(1) != slots_ || memory.size(2) != dim_)
    throw Error("report decoder: memory of shape " + shape_text(memory.sizes().vec()) + ", expected [B, " +
                std::to_string(slots_) + ", " + std::to_string(dim_) + "]");
  // The weights' dtype decides (a module converted to bfloat16 for generation on CUDA takes
  // standardised float32 memories as they are).
  torch::Tensor m = at::linear(memory.to(mem_w_.scalar_type()), mem_w_, mem_b_) + mem_pos_;
  return dropout(layer_norm(m, mem_norm_w_, mem_norm_b_), shape_.dropout, gen, is_training());
}

torch::Tensor ReportDecoderModule::decode(const torch::Tensor& ids, const torch::Tensor& encoded, at::Generator* gen) {
  const std::int64_t T = ids.size(1), H = shape_.heads;
  if (T < 1 || T > shape_.max_len)
    throw Error("report decoder: " + std::to_string(T) + " positions, at most " + std::to_string(shape_.max_len));
  const bool training = is_training();
  torch::Tensor x = tok_.index_select(0, ids.reshape({-1})).view({ids.size(0), T, shape_.d_model}) + pos_.narrow(0, 0, T);
  x = dropout(x, shape_.dropout, gen, training);
  const torch::Tensor mask = causal_mask(T, x.device());
  for (const Layer& y : layers_) {
    torch::Tensor h = layer_norm(x, y.self_norm_w, y.self_norm_b);
    const Attention& a = y.self_attn;
    torch::Tensor o = attend(split_heads(at::linear(h, a.q_w, a.q_b), H), split_heads(at::linear(h, a.k_w, a.k_b), H),
                             split_heads(at::linear(h, a.v_w, a.v_b), H), mask);
    x = x + dropout(at::linear(merge_heads(o), a.o_w, a.o_b), shape_.dropout, gen, training);

    h = layer_norm(x, y.cross_norm_w, y.cross_norm_b);
    const Attention& c = y.cross_attn;
    o = attend(split_heads(at::linear(h, c.q_w, c.q_b), H), split_heads(at::linear(encoded, c.k_w, c.k_b), H),
               split_heads(at::linear(encoded, c.v_w, c.v_b), H), {});
    x = x + dropout(at::linear(merge_heads(o), c.o_w, c.o_b), shape_.dropout, gen, training);

    h = layer_norm(x, y.ffn_norm_w, y.ffn_norm_b);
    h = at::linear(at::gelu(at::linear(h, y.fc1_w, y.fc1_b)), y.fc2_w, y.fc2_b);
    x = x + dropout(h, shape_.dropout, gen, training);
  }
  return at::linear(layer_norm(x, final_w_, final_b_), tok_);
}

// --- the trained decoder -------------------------------------------------------------------------

torch::Device ReportDecoder::device() const { return module->parameters().front().device(); }

torch::Tensor ReportDecoder::standardize(const torch::Tensor& memory) const {
  torch::Tensor m = memory.to(device(), torch::kFloat32);
  if (!mean.defined()) return m;
  return (m - mean.to(m.device())) / std.to(m.device());
}

torch::Tensor ReportDecoder::logits(const torch::Tensor& memory, const torch::Tensor& ids) const {
  torch::NoGradGuard no_grad;
  return module->forward(standardize(memory), ids.to(device(), torch::kInt64));
}

void write_report_decoder_files(const std::string& folder, const ReportDecoder& d) {
  model::NamedTensors tensors;
  for (const auto& p : d.module->named_parameters(true)) tensors.emplace_back(p.key(), p.value());
  if (d.mean.defined()) {
    tensors.emplace_back("standardize.mean", d.mean);
    tensors.emplace_back("standardize.std", d.std);
  }
  ReportDecoderConfig c = d.config;
  c.standardize = d.mean.defined();
  write_tensors(folder + "/decoder.safetensors", tensors, {{"format", kReportDecoderFormat}});
  cli::write_file_atomic(folder + "/decoder.json", report_decoder_config_to_json(c).dump(2) + "\n");
}

void write_report_decoder(const std::string& folder, const ReportDecoder& decoder) {
  cli::write_folder_atomic(folder, [&](const std::string& tmp) { write_report_decoder_files(tmp, decoder); });
}

ReportDecoder load_report_decoder(const std::string& folder, const torch::Device& device) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "not a report decoder folder (no such folder)"));
  const std::string json_path = folder + "/decoder.json";
  if (!fs::exists(json_path, ec)) throw Error(at(folder, "not a report decoder folder (no decoder.json)"));
  ReportDecoder d;
  d.config = read_report_decoder_config(json_path);
  const std::string file = folder + "/decoder.safetensors";
  if (!fs::exists(file, ec)) throw Error(at(folder, "no decoder.safetensors (the weights)"));
  // Every tensor checked against decoder.json before the module is built, so what is allocated
  // is bounded by the file actually present.
  std::map<std::string, torch::Tensor> present;
  for (auto& [name, t] : read_tensors(file)) present.emplace(name, std::move(t));
  auto expected = parameter_shapes(d.config.shape, d.config.memory);
  if (d.config.standardize) {
    expected.push_back({"standardize.mean", {d.config.memory.dim}});
    expected.push_back({"standardize.std", {d.config.memory.dim}});
  }
  for (const auto& [name, sizes] : expected) {
    auto it = present.find(name);
    if (it == present.end()) throw Error(at(file, "no tensor " + name));
    if (it->second.sizes().vec() != sizes)
      throw Error(at(file, name + " has shape " + shape_text(it->second.sizes().vec()) + ", but decoder.json implies " +
                               shape_text(sizes)));
  }
  if (present.size() != expected.size())
    for (const auto& [name, t] : present)
      if (std::none_of(expected.begin(), expected.end(), [&](const auto& e) { return e.first == name; }))
        throw Error(at(file, "unexpected tensor " + name + " (not part of the decoder decoder.json describes)"));
  d.module = std::make_shared<ReportDecoderModule>(d.config.shape, d.config.memory);
  {
    torch::NoGradGuard no_grad;
    for (auto& p : d.module->named_parameters(true)) p.value().copy_(present.at(p.key()));
  }
  if (d.config.standardize) {
    d.mean = present.at("standardize.mean").to(torch::kFloat32);
    d.std = present.at("standardize.std").to(torch::kFloat32);
    if (!(d.std > 0).all().item<bool>()) throw Error(at(file, "standardize.std has values that are not positive"));
  }
  d.module->to(device);
  d.module->eval();
  return d;
}

// --- decoding ------------------------------------------------------------------------------------

ReportDecoderCache::ReportDecoderCache(const ReportDecoder& decoder)
    : decoder_(decoder), max_len_(decoder.config.shape.max_len) {}

torch::Tensor ReportDecoderCache::start(const torch::Tensor& memory) {
  torch::NoGradGuard no_grad;
  auto& m = *decoder_.module;
  const auto& s = m.shape();
  const std::int64_t H = s.heads, hd = s.d_model / s.heads;
  torch::Tensor encoded = m.encode(decoder_.standardize(memory));
  rows_ = encoded.size(0);
  length_ = 0;
  self_k_.clear();
  self_v_.clear();
  cross_k_.clear();
  cross_v_.clear();
  const auto options = encoded.options();
  for (const auto& y : m.layers()) {
    const auto& c = y.cross_attn;
    cross_k_.push_back(split_heads(at::linear(encoded, c.k_w, c.k_b), H).contiguous());
    cross_v_.push_back(split_heads(at::linear(encoded, c.v_w, c.v_b), H).contiguous());
    self_k_.push_back(torch::zeros({rows_, H, max_len_, hd}, options));
    self_v_.push_back(torch::zeros({rows_, H, max_len_, hd}, options));
  }
  torch::Tensor bos = torch::full({rows_}, decoder_.config.tokens.bos, torch::TensorOptions().dtype(torch::kInt64));
  return forward_position(bos);
}

torch::Tensor ReportDecoderCache::step(const torch::Tensor& ids) {
  if (self_k_.empty()) throw Error("report decoder: step() before start()");
  if (length_ >= max_len_)
    throw Error("report decoder: all " + std::to_string(max_len_) + " positions are used (generate at most " +
                std::to_string(max_len_ - 1) + " tokens)");
  if (ids.dim() != 1 || ids.size(0) != rows_)
    throw Error("report decoder: step() with " + std::to_string(ids.numel()) + " ids for " + std::to_string(rows_) + " rows");
  return forward_position(ids);
}

torch::Tensor ReportDecoderCache::forward_position(const torch::Tensor& ids) {
  torch::NoGradGuard no_grad;
  auto& m = *decoder_.module;
  const auto& s = m.shape();
  const std::int64_t H = s.heads, t = length_;
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.d_model / H));
  torch::Tensor idx = ids.to(m.token_embedding().device(), torch::kInt64);
  if (idx.numel() > 0 && (idx.min().item<std::int64_t>() < 0 || idx.max().item<std::int64_t>() >= s.vocab_size))
    throw Error("report decoder: a token id outside the vocabulary of " + std::to_string(s.vocab_size));
  torch::Tensor x = (m.token_embedding().index_select(0, idx) + m.position_embedding()[t]).unsqueeze(1);  // [B, 1, d]
  for (std::size_t l = 0; l < m.layers().size(); ++l) {
    const auto& y = m.layers()[l];
    torch::Tensor h = layer_norm(x, y.self_norm_w, y.self_norm_b);
    const auto& a = y.self_attn;
    torch::Tensor q = split_heads(at::linear(h, a.q_w, a.q_b), H);
    self_k_[l].select(2, t).copy_(split_heads(at::linear(h, a.k_w, a.k_b), H).squeeze(2));
    self_v_[l].select(2, t).copy_(split_heads(at::linear(h, a.v_w, a.v_b), H).squeeze(2));
    torch::Tensor o = model::attention(q, self_k_[l].narrow(2, 0, t + 1), self_v_[l].narrow(2, 0, t + 1), scale);
    x = x + at::linear(merge_heads(o), a.o_w, a.o_b);

    h = layer_norm(x, y.cross_norm_w, y.cross_norm_b);
    const auto& c = y.cross_attn;
    o = model::attention(split_heads(at::linear(h, c.q_w, c.q_b), H), cross_k_[l], cross_v_[l], scale);
    x = x + at::linear(merge_heads(o), c.o_w, c.o_b);

    h = layer_norm(x, y.ffn_norm_w, y.ffn_norm_b);
    x = x + at::linear(at::gelu(at::linear(h, y.fc1_w, y.fc1_b)), y.fc2_w, y.fc2_b);
  }
  ++length_;
  return at::linear(layer_norm(x, m.final_norm_weight(), m.final_norm_bias()), m.token_embedding())
      .squeeze(1)
      .to(torch::kFloat32);
}

void ReportDecoderCache::select_rows(const torch::Tensor& index) {
  if (self_k_.empty()) throw Error("report decoder: select_rows() before start()");
  torch::Tensor idx = index.to(self_k_.front().device(), torch::kInt64);
  if (idx.dim() != 1) throw Error("report decoder: select_rows() needs a 1-d index");
  if (idx.numel() > 0 && (idx.min().item<std::int64_t>() < 0 || idx.max().item<std::int64_t>() >= rows_))
    throw Error("report decoder: select_rows() index outside the " + std::to_string(rows_) + " rows");
  for (auto* v : {&self_k_, &self_v_, &cross_k_, &cross_v_})
    for (auto& t : *v) t = t.index_select(0, idx);
  rows_ = idx.size(0);
}

std::vector<std::vector<std::int64_t>> greedy_decode(const ReportDecoder& decoder, const torch::Tensor& memory,
                                                     std::int64_t max_new_tokens) {
  ReportDecoderCache cache(decoder);
  torch::Tensor logits = cache.start(memory);
  const std::int64_t B = cache.rows();
  const std::int64_t n =
      max_new_tokens <= 0 || max_new_tokens > cache.max_new_tokens() ? cache.max_new_tokens() : max_new_tokens;
  const std::int64_t eos = decoder.config.tokens.eos;
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(B));
  std::vector<std::int64_t> live(static_cast<std::size_t>(B));  // input row of each cache row
  for (std::int64_t i = 0; i < B; ++i) live[static_cast<std::size_t>(i)] = i;
  for (std::int64_t k = 0; k < n && !live.empty(); ++k) {
    // The argmax on the host, so that ties surely go to the lower id (as model::generate picks).
    const torch::Tensor host = logits.to(torch::kCPU, torch::kFloat32).contiguous();
    const std::int64_t V = host.size(1);
    std::vector<std::int64_t> nd(live.size());
    for (std::size_t r = 0; r < live.size(); ++r) {
      const float* row = host.data_ptr<float>() + static_cast<std::int64_t>(r) * V;
      std::int64_t best = 0;
      for (std::int64_t v = 1; v < V; ++v)
        if (row[v] > row[best]) best = v;
      nd[r] = best;
    }
    std::vector<std::int64_t> keep, keep_rows, fed;
    for (std::size_t r = 0; r < live.size(); ++r) {
      if (nd[r] == eos) continue;
      out[static_cast<std::size_t>(live[r])].push_back(nd[r]);
      keep.push_back(static_cast<std::int64_t>(r));
      keep_rows.push_back(live[r]);
      fed.push_back(nd[r]);
    }
    if (keep.empty() || k + 1 == n) break;
    if (keep.size() != live.size())
      cache.select_rows(torch::tensor(keep, torch::TensorOptions().dtype(torch::kInt64)));
    live = std::move(keep_rows);
    logits = cache.step(torch::tensor(fed, torch::TensorOptions().dtype(torch::kInt64)));
  }
  return out;
}

// --- training ------------------------------------------------------------------------------------

torch::Tensor label_smoothed_loss(const torch::Tensor& logits, const torch::Tensor& targets, double smoothing,
                                  std::int64_t ignore) {
  const std::int64_t V = logits.size(-1);
  return F::cross_entropy(logits.reshape({-1, V}), targets.reshape({-1}),
                          F::CrossEntropyFuncOptions().ignore_index(ignore).label_smoothing(smoothing));
}

void teacher_forcing_batch(const std::vector<std::vector<std::int64_t>>& ids, const ReportTokenIds& tokens,
                           std::int64_t max_len, torch::Tensor& input, torch::Tensor& target) {
  const auto N = static_cast<std::int64_t>(ids.size());
  std::int64_t L = 1;
  for (const auto& s : ids) L = std::max(L, std::min(max_len, static_cast<std::int64_t>(s.size()) + 1));
  const std::int64_t pad = tokens.pad >= 0 ? tokens.pad : tokens.eos;
  input = torch::full({N, L}, pad, torch::kInt64);
  target = torch::full({N, L}, kIgnore, torch::kInt64);
  auto in = input.accessor<std::int64_t, 2>();
  auto tg = target.accessor<std::int64_t, 2>();
  for (std::int64_t i = 0; i < N; ++i) {
    const auto& s = ids[static_cast<std::size_t>(i)];
    const auto n = static_cast<std::int64_t>(s.size());
    in[i][0] = tokens.bos;
    for (std::int64_t j = 0; j < L; ++j) {
      if (j + 1 < L && j < n) in[i][j + 1] = s[static_cast<std::size_t>(j)];
      if (j < n) tg[i][j] = s[static_cast<std::size_t>(j)];
      else if (j == n) tg[i][j] = tokens.eos;
    }
  }
}

StopMetric parse_stop_metric(const std::string& name) {
  if (name == "loss") return StopMetric::loss;
  if (name == "bleu") return StopMetric::bleu;
  throw UsageError("--stop-on " + name + ": expected loss or bleu");
}

std::string stop_metric_name(StopMetric m) { return m == StopMetric::bleu ? "bleu" : "loss"; }

namespace {

// Per-channel mean and standard deviation over every memory token of the set, in blocks of records
// converted to float32, sums in float64.
void fit_memory_channels(const torch::Tensor& x, torch::Tensor& mean, torch::Tensor& sd) {
  constexpr std::int64_t kBlock = 64;
  const std::int64_t N = x.size(0), D = x.size(2);
  const double count = static_cast<double>(N * x.size(1));
  torch::Tensor sum = torch::zeros({D}, torch::kFloat64);
  for (std::int64_t b = 0; b < N; b += kBlock)
    sum += x.narrow(0, b, std::min(kBlock, N - b)).to(torch::kFloat32).sum(std::vector<std::int64_t>{0, 1}).to(torch::kFloat64);
  const torch::Tensor m = (sum / count).to(torch::kFloat32);
  torch::Tensor ss = torch::zeros({D}, torch::kFloat64);
  for (std::int64_t b = 0; b < N; b += kBlock) {
    torch::Tensor d = x.narrow(0, b, std::min(kBlock, N - b)).to(torch::kFloat32) - m;
    ss += (d * d).sum(std::vector<std::int64_t>{0, 1}).to(torch::kFloat64);
  }
  torch::Tensor s = (ss / count).sqrt();
  const double floor = std::max(s.max().item<double>() * 1e-6, 1e-12);
  mean = m;
  sd = s.clamp_min(floor).to(torch::kFloat32);
}

void check_ids(const ReportSet& set, std::int64_t vocab, const std::string& name) {
  if (static_cast<std::int64_t>(set.ids.size()) != set.rows())
    throw Error(name + ": token ids for " + std::to_string(set.ids.size()) + " of " + std::to_string(set.rows()) + " records");
  for (std::size_t i = 0; i < set.ids.size(); ++i)
    for (std::int64_t t : set.ids[i])
      if (t < 0 || t >= vocab)
        throw Error(at(name, set.keys[i] + ": token id " + std::to_string(t) + " outside the vocabulary of " +
                                 std::to_string(vocab)));
}

// FNV-1a over the records' keys and token ids: a resumed run must see the same training reports.
std::string ids_fingerprint(const ReportSet& set) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto byte = [&](unsigned char c) {
    h ^= c;
    h *= 0x100000001b3ull;
  };
  for (std::size_t i = 0; i < set.ids.size(); ++i) {
    for (char c : set.keys[i]) byte(static_cast<unsigned char>(c));
    byte(0);
    for (std::int64_t t : set.ids[i])
      for (int b = 0; b < 8; ++b) byte(static_cast<unsigned char>(static_cast<std::uint64_t>(t) >> (8 * b)));
    byte(0xff);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::vector<std::string> bleu_tokens(const std::vector<std::int64_t>& ids, const ReportTrainOptions& o) {
  if (o.detokenize) return metrics::coco_tokenize(o.detokenize(ids));
  std::vector<std::string> t;
  t.reserve(ids.size());
  for (std::int64_t i : ids) t.push_back(std::to_string(i));
  return t;
}

struct Validation {
  double loss = std::nan("");
  double bleu4 = std::nan("");
  nlohmann::json report() const {
    auto num = [](double v) { return std::isnan(v) ? nlohmann::json() : nlohmann::json(v); };
    return {{"loss", num(loss)}, {"bleu4", num(bleu4)}};
  }
};

class Trainer {
 public:
  Trainer(const ReportSet& train, const ReportSet* val, const ReportTrainOptions& o, ReportDecoder& d)
      : train_(train), val_(val), o_(o), d_(d) {
    teacher_forcing_batch(train.ids, o.tokens, o.shape.max_len, train_in_, train_tg_);
    for (const auto& s : train.ids) train_len_.push_back(std::min(o.shape.max_len, static_cast<std::int64_t>(s.size()) + 1));
    if (val) teacher_forcing_batch(val->ids, o.tokens, o.shape.max_len, val_in_, val_tg_);
  }

  // The batch of rows `idx` trimmed to its longest sequence.
  std::pair<torch::Tensor, torch::Tensor> batch(const torch::Tensor& in, const torch::Tensor& tg,
                                                const std::vector<std::int64_t>& lengths, const std::vector<std::int64_t>& idx) const {
    std::int64_t L = 1;
    for (std::int64_t i : idx) L = std::max(L, lengths[static_cast<std::size_t>(i)]);
    torch::Tensor rows = torch::tensor(idx, torch::TensorOptions().dtype(torch::kInt64));
    return {in.index_select(0, rows).narrow(1, 0, L).to(o_.device), tg.index_select(0, rows).narrow(1, 0, L).to(o_.device)};
  }

  torch::Tensor train_loss(const std::vector<std::int64_t>& idx, at::Generator* gen) {
    auto [in, tg] = batch(train_in_, train_tg_, train_len_, idx);
    torch::Tensor rows = torch::tensor(idx, torch::TensorOptions().dtype(torch::kInt64));
    torch::Tensor memory = d_.standardize(train_.memory.index_select(0, rows));
    return label_smoothed_loss(d_.module->forward(memory, in, gen), tg, o_.label_smoothing);
  }

  Validation validate(bool bleu) {
    torch::NoGradGuard no_grad;
    d_.module->eval();
    Validation v;
    const std::int64_t N = val_->rows();
    std::vector<std::int64_t> val_len;
    for (const auto& s : val_->ids) val_len.push_back(std::min(o_.shape.max_len, static_cast<std::int64_t>(s.size()) + 1));
    double sum = 0, count = 0;
    metrics::BleuStats total;
    for (std::int64_t b = 0; b < N; b += o_.batch) {
      std::vector<std::int64_t> idx;
      for (std::int64_t i = b; i < std::min(N, b + o_.batch); ++i) idx.push_back(i);
      auto [in, tg] = batch(val_in_, val_tg_, val_len, idx);
      torch::Tensor memory = val_->memory.narrow(0, b, static_cast<std::int64_t>(idx.size()));
      torch::Tensor z = d_.module->forward(d_.standardize(memory), in);
      const std::int64_t V = z.size(-1);
      sum += F::cross_entropy(z.reshape({-1, V}), tg.reshape({-1}),
                              F::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(torch::kSum))
                 .item<double>();
      count += (tg != kIgnore).sum().item<double>();
      if (bleu) {
        auto hyps = greedy_decode(d_, memory, o_.val_max_new_tokens);
        for (std::size_t i = 0; i < hyps.size(); ++i) {
          metrics::BleuStats s = metrics::bleu_stats(bleu_tokens(hyps[i], o_),
                                                     {bleu_tokens(val_->ids[static_cast<std::size_t>(b) + i], o_)});
          total.testlen += s.testlen;
          total.reflen += s.reflen;
          for (int n = 0; n < 4; ++n) {
            total.guess[static_cast<std::size_t>(n)] += s.guess[static_cast<std::size_t>(n)];
            total.correct[static_cast<std::size_t>(n)] += s.correct[static_cast<std::size_t>(n)];
          }
        }
      }
    }
    v.loss = count > 0 ? sum / count : std::nan("");
    if (bleu) v.bleu4 = metrics::bleu_from_stats(total)[3];
    d_.module->train();
    return v;
  }

 private:
  const ReportSet& train_;
  const ReportSet* val_;
  const ReportTrainOptions& o_;
  ReportDecoder& d_;
  torch::Tensor train_in_, train_tg_, val_in_, val_tg_;
  std::vector<std::int64_t> train_len_;
};

}  // namespace

ReportTrainResult train_report_decoder(const ReportSet& train, const ReportSet* val, const ReportTrainOptions& o,
                                       const std::function<void(const ReportTrainProgress&)>& on_progress) {
  if (o.batch < 1 || o.epochs < 1) throw UsageError("--batch and --epochs must be at least 1");
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw UsageError("--lr must be a positive number");
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay)) throw UsageError("--weight-decay must be at least 0");
  if (!(o.warmup >= 0 && o.warmup <= 1)) throw UsageError("--warmup must be a fraction in [0, 1]");
  if (!(o.label_smoothing >= 0 && o.label_smoothing < 1)) throw UsageError("--label-smoothing must be in [0, 1)");
  if (!(o.clip >= 0) || !std::isfinite(o.clip)) throw UsageError("--clip must be at least 0");
  if (o.patience < 0) throw UsageError("--patience must be at least 0");
  if (o.stop_after < 0 || o.checkpoint_every < 0) throw UsageError("--stop-after and --checkpoint-every must be at least 0");
  if (o.stop_after > 0 && o.checkpoint_dir.empty()) throw UsageError("--stop-after needs a checkpoint folder (--checkpoint DIR)");
  const std::int64_t N = train.rows();
  if (N < 1) throw Error("no training records");

  ReportDecoder d;
  ReportDecoderConfig& c = d.config;
  c.shape = o.shape;
  c.tokens = o.tokens;
  c.memory = train.layout;
  c.standardize = o.standardize;
  c.tokenizer = o.tokenizer;
  try {
    validate_report_decoder_config(c, "");
  } catch (const Error& e) {
    throw UsageError(std::string("report decoder: ") + e.what());
  }
  check_ids(train, c.shape.vocab_size, "training set");
  if (val) {
    if (val->layout != train.layout)
      throw Error("the validation memories (" + val->layout.describe() + ") differ from the training memories (" +
                  train.layout.describe() + ")");
    check_same_encoder(train.header, val->header);
    check_ids(*val, c.shape.vocab_size, "validation set");
  }
  if (train.header.contains("model") && train.header["model"].is_object()) c.encoder = train.header["model"];
  if (o.standardize) fit_memory_channels(train.memory, d.mean, d.std);

  d.module = std::make_shared<ReportDecoderModule>(c.shape, c.memory);
  d.module->init(o.seed);
  d.module->to(o.device);
  d.module->train();
  if (d.mean.defined()) {
    d.mean = d.mean.to(o.device);
    d.std = d.std.to(o.device);
  }

  const NamedParams params = NamedParams::of(*d.module);
  ParamGroup decay, no_decay;
  decay.lr = no_decay.lr = o.lr;
  decay.weight_decay = o.weight_decay;
  for (std::size_t i = 0; i < params.names.size(); ++i) {
    ParamGroup& g = params.tensors[i].dim() >= 2 ? decay : no_decay;
    g.names.push_back(params.names[i]);
    g.params.push_back(params.tensors[i]);
  }
  AdamW opt({decay, no_decay});

  const std::int64_t per_epoch = (N + o.batch - 1) / o.batch;
  const std::int64_t total = per_epoch * o.epochs;
  const LrSchedule schedule = LrSchedule::with_warmup_fraction(o.schedule, total, o.warmup);
  const bool validating = val != nullptr && val->rows() > 0;

  nlohmann::json signature = {{"task", "report-decoder"},
                              {"decoder", {{"vocab_size", c.shape.vocab_size},
                                           {"d_model", c.shape.d_model},
                                           {"layers", c.shape.layers},
                                           {"heads", c.shape.heads},
                                           {"ffn", c.shape.ffn},
                                           {"max_len", c.shape.max_len},
                                           {"dropout", c.shape.dropout}}},
                              {"tokens", {{"bos", c.tokens.bos}, {"eos", c.tokens.eos}, {"pad", c.tokens.pad}}},
                              {"memory", c.memory.describe()},
                              {"records", N},
                              {"reports_fnv1a", ids_fingerprint(train)},
                              {"validation_records", validating ? val->rows() : 0},
                              {"epochs", o.epochs},
                              {"batch", o.batch},
                              {"steps", total},
                              {"lr", o.lr},
                              {"weight_decay", o.weight_decay},
                              {"schedule", schedule_name(o.schedule)},
                              {"warmup", o.warmup},
                              {"label_smoothing", o.label_smoothing},
                              {"clip", o.clip},
                              {"patience", o.patience},
                              {"stop_metric", stop_metric_name(o.stop_metric)},
                              {"val_max_new_tokens", o.val_max_new_tokens},
                              {"standardize", o.standardize},
                              {"seed", o.seed}};

  // Early stopping (higher is better: -loss or BLEU-4).
  EarlyStopping stopping(o.patience);
  std::int64_t start = 0;

  if (!o.resume.empty()) {
    const Checkpoint ck = read_checkpoint(o.resume, kCheckpointFormat);
    check_signature(ck.signature, signature, o.resume);
    params.load(ck.group("model"), o.resume + "/model.safetensors");
    opt.load_state(ck.group("optimizer"), o.resume + "/optimizer.safetensors");
    start = ck.step;
    stopping.load_state(ck.state.value("early_stopping", nlohmann::json()), o.resume + "/state.json");
    if (ck.has_group("best")) {
      std::vector<torch::Tensor> best = snapshot(params.tensors);
      params.load_into(best, ck.group("best"), o.resume + "/best.safetensors");
      stopping.set_best(std::move(best));
    }
    if (opt.steps() != start) throw Error(at(o.resume, "optimizer step count disagrees with state.json"));
  }

  auto write_checkpoint_at = [&](std::int64_t step) {
    Checkpoint ck;
    ck.format = kCheckpointFormat;
    ck.step = step;
    ck.signature = signature;
    ck.state = {{"total_steps", total},
                {"epoch", step / per_epoch},
                {"early_stopping", stopping.state()}};
    ck.rng = {{"kind", "counter (splitmix64 of seed, purpose, epoch | step)"}, {"seed", o.seed}};
    ck.groups["model"] = params.current();
    ck.groups["optimizer"] = opt.state();
    if (stopping.have_best()) ck.groups["best"] = params.with(stopping.best());
    write_checkpoint(o.checkpoint_dir, ck);
  };

  Trainer trainer(train, val, o, d);
  ReportTrainResult result;
  bool stopped_early = false;
  std::int64_t cached_epoch = -1;
  std::vector<std::int64_t> perm;
  std::int64_t step = start;
  for (; step < total; ++step) {
    const std::int64_t epoch = step / per_epoch, pos = step % per_epoch;
    if (epoch != cached_epoch) {
      perm = random::permutation(N, random::training_rng(o.seed, kShufflePurpose, static_cast<std::uint64_t>(epoch)));
      cached_epoch = epoch;
    }
    const std::int64_t begin = pos * o.batch, count = std::min(o.batch, N - begin);
    std::vector<std::int64_t> idx(perm.begin() + begin, perm.begin() + begin + count);
    // Counter-based: the dropout masks of a step depend on (seed, step) alone.
    at::Generator gen = at::detail::createCPUGenerator(
        random::training_rng(o.seed, kDropoutPurpose, static_cast<std::uint64_t>(step)).next());
    torch::Tensor loss = trainer.train_loss(idx, &gen);
    const double loss_value = loss.item<double>();
    check_finite_loss(loss_value, "step " + std::to_string(step + 1));
    opt.zero_grad();
    loss.backward();
    if (o.clip > 0) torch::nn::utils::clip_grad_norm_(params.tensors, o.clip);
    opt.step(schedule(step));

    ReportTrainProgress progress;
    progress.step = step + 1;
    progress.total = total;
    progress.loss = loss_value;
    if (validating && pos == per_epoch - 1) {
      const Validation v = trainer.validate(o.stop_metric == StopMetric::bleu);
      const double metric = o.stop_metric == StopMetric::bleu ? v.bleu4 : -v.loss;
      progress.epoch = stopping.validations() + 1;
      progress.val_loss = v.loss;
      progress.val_bleu4 = v.bleu4;
      progress.best = stopping.update(metric, progress.epoch, params.tensors, v.report());
    }
    if (on_progress) on_progress(progress);
    const std::int64_t done = step + 1;
    const bool stop_here = o.stop_after > 0 && done >= o.stop_after && done < total;
    const bool early = stopping.should_stop();
    if (!o.checkpoint_dir.empty() && ((o.checkpoint_every > 0 && done % o.checkpoint_every == 0) || stop_here))
      write_checkpoint_at(done);
    if (early) {
      stopped_early = true;
      ++step;
      break;
    }
    if (stop_here) {
      d.module->eval();
      result.decoder = d;
      result.finished = false;
      result.steps_done = done;
      return result;
    }
  }

  stopping.restore_best(params.tensors);
  const bool have_best = stopping.have_best();
  d.module->eval();
  if (validating) {
    // The kept weights' validation metrics; BLEU-4 as well when the run stopped on the loss.
    nlohmann::json report = stopping.best_report();
    if (o.stop_metric == StopMetric::loss || !have_best) {
      const Validation v = trainer.validate(true);
      if (!have_best) report = v.report();
      report["bleu4"] = std::isnan(v.bleu4) ? nlohmann::json() : nlohmann::json(v.bleu4);
    }
    d.module->eval();
    report["records"] = val->rows();
    report["loss_is"] = "mean token cross-entropy, teacher forced, no label smoothing";
    report["bleu4_is"] = "corpus BLEU-4 of greedy decoding (metrics/text)";
    c.metrics["val"] = report;
  }
  d.module->to(torch::kCPU);
  if (d.mean.defined()) {
    d.mean = d.mean.to(torch::kCPU);
    d.std = d.std.to(torch::kCPU);
  }
  c.training = signature;
  c.training.erase("task");
  c.training["optimizer"] = "AdamW";
  c.training["loss"] = "label-smoothed cross-entropy over report tokens (padding ignored)";
  c.training["steps_done"] = step;
  c.training["stopped_early"] = stopped_early;
  c.training["best_epoch"] = have_best ? nlohmann::json(stopping.best_epoch()) : nlohmann::json();
  c.training["parameters"] = c.parameter_count();
  result.decoder = d;
  result.finished = true;
  result.steps_done = step;
  return result;
}

}  // namespace cx::train
