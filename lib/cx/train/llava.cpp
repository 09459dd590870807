#include "cx/train/llava.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/sha256.hpp"
#include "cx/random/rng.hpp"
#include "cx/train/checkpoint.hpp"
#include "cx/train/optim.hpp"
#include "cx/train/schedule.hpp"
#include "cx/train/tensor_io.hpp"

namespace cx::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "cx-report-llava";
constexpr const char* kCheckpointFormat = "cx-report-llava-checkpoint";
constexpr std::uint64_t kShufflePurpose = 0x11A7A5u;
constexpr std::int64_t kIgnore = -100;

// The LoRA spec as llava.json records it.
nlohmann::json lora_json(const model::LoraSpec& s) {
  return {{"rank", s.rank}, {"alpha", s.alpha}, {"dropout", s.dropout}, {"targets", s.targets}};
}
model::LoraSpec lora_from_json(const nlohmann::json& j) {
  model::LoraSpec s;
  s.rank = j.at("rank").get<std::int64_t>();
  s.alpha = j.at("alpha").get<double>();
  s.dropout = j.value("dropout", 0.0);
  s.targets = j.at("targets").get<std::vector<std::string>>();
  return s;
}

// One batch as the language model reads it: embeddings [B, L, H] right-padded, the attention mask,
// and labels (the next token at each position, kIgnore where there is none to learn).
struct Batch {
  torch::Tensor embeds, mask, labels;
};

Batch make_batch(LlavaModel& m, const LlavaPromptIds& prompt, const ReportSet& set, const std::vector<std::int64_t>& rows,
                 std::int64_t max_target, const torch::Device& device) {
  auto& lm = *m.language;
  const std::int64_t P = set.memory.size(1);
  const std::int64_t eos = lm.config().eos_token_id;
  std::vector<std::vector<std::int64_t>> tails;  // after-image ids + target + EOS
  std::vector<std::int64_t> lengths;
  std::int64_t L = 0;
  const std::int64_t nb = static_cast<std::int64_t>(prompt.before.size()), na = static_cast<std::int64_t>(prompt.after.size());
  for (std::int64_t r : rows) {
    const auto& t = set.ids[static_cast<std::size_t>(r)];
    std::vector<std::int64_t> tail = prompt.after;
    const std::int64_t n = std::min<std::int64_t>(static_cast<std::int64_t>(t.size()), max_target);
    tail.insert(tail.end(), t.begin(), t.begin() + n);
    tail.push_back(eos);
    lengths.push_back(nb + P + static_cast<std::int64_t>(tail.size()));
    L = std::max(L, lengths.back());
    tails.push_back(std::move(tail));
  }
  const std::int64_t B = static_cast<std::int64_t>(rows.size());
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor ids = torch::zeros({B, L}, opts);       // text ids, 0 in image slots and padding
  torch::Tensor is_text = torch::zeros({B, L}, torch::kBool);
  torch::Tensor mask = torch::zeros({B, L}, opts);
  torch::Tensor labels = torch::full({B, L}, kIgnore, opts);
  auto ia = ids.accessor<std::int64_t, 2>();
  auto ta = is_text.accessor<bool, 2>();
  auto ma = mask.accessor<std::int64_t, 2>();
  auto la = labels.accessor<std::int64_t, 2>();
  for (std::int64_t b = 0; b < B; ++b) {
    std::int64_t pos = 0;
    for (std::int64_t id : prompt.before) ia[b][pos] = id, ta[b][pos] = true, ++pos;
    pos += P;
    const auto& tail = tails[static_cast<std::size_t>(b)];
    for (std::size_t i = 0; i < tail.size(); ++i) {
      ia[b][pos] = tail[i];
      ta[b][pos] = true;
      // Position pos predicts the token at pos + 1: targets and EOS only (the prompt is context).
      if (static_cast<std::int64_t>(i) >= na && pos >= 1) la[b][pos - 1] = tail[i];
      ++pos;
    }
    for (std::int64_t j = 0; j < lengths[static_cast<std::size_t>(b)]; ++j) ma[b][j] = 1;
  }
  torch::Tensor text = lm.embed(ids.to(device));  // [B, L, H]
  torch::Tensor index = torch::tensor(rows, opts);
  torch::Tensor image = m.projector->forward(set.memory.index_select(0, index).to(device, torch::kFloat32)).to(text.dtype());
  // Image slots nb .. nb + P - 1 take the projected patches.
  torch::Tensor embeds = torch::where(is_text.to(device).unsqueeze(-1), text,
                                      torch::cat({torch::zeros({B, nb, text.size(2)}, text.options()), image,
                                                  torch::zeros({B, L - nb - P, text.size(2)}, text.options())},
                                                 1));
  return {embeds, mask.to(device), labels.to(device)};
}

// Mean cross-entropy over the labelled positions, and their count.
std::pair<torch::Tensor, std::int64_t> batch_loss(LlavaModel& m, const Batch& b) {
  torch::Tensor logits = m.language->forward(b.embeds, b.mask, torch::Tensor(), nullptr, false);  // [B, L, V]
  const std::int64_t V = logits.size(2);
  torch::Tensor flat = logits.reshape({-1, V});
  torch::Tensor target = b.labels.reshape({-1});
  const std::int64_t n = target.ne(kIgnore).sum().item<std::int64_t>();
  torch::Tensor loss = torch::nn::functional::cross_entropy(
      flat, target, torch::nn::functional::CrossEntropyFuncOptions().ignore_index(kIgnore).reduction(torch::kMean));
  return {loss, n};
}

void set_trainable(LlavaModel& m, const LlavaOptions& o) {
  for (auto& p : m.language->parameters()) p.set_requires_grad(false);
  if (o.stage >= 2 && o.full)
    for (auto& p : m.language->parameters()) p.set_requires_grad(true);
  if (o.stage >= 2 && !o.full)
    for (auto& [name, p] : m.language->lora_parameters()) p.set_requires_grad(true);
  for (auto& p : m.projector->parameters()) p.set_requires_grad(true);
}

// The language model's trained tensors for checkpoints and the folder: LoRA adapters, or every weight.
model::NamedTensors language_trained(const LlavaModel& m, bool full) {
  model::NamedTensors out;
  if (full) {
    for (const auto& item : m.language->named_parameters()) out.emplace_back(item.key(), item.value());
  } else {
    for (const auto& [name, t] : m.language->lora_parameters()) out.emplace_back(name, t);
  }
  return out;
}

// Copies `saved` into the tensors of `into` by name (checkpoint.hpp's NamedParams: a missing or
// misshapen tensor names `where`); weights read from a folder are checked finite first.
void load_named(const model::NamedTensors& into, const model::NamedTensors& saved, const std::string& where, bool check_finite) {
  if (check_finite)
    for (const auto& [name, t] : saved) model::check_finite_weight(t, name, where);
  NamedParams p;
  for (const auto& [name, t] : into) {
    p.names.push_back(name);
    p.tensors.push_back(t);
  }
  p.load(saved, where);
}

std::vector<ParamGroup> param_groups(LlavaModel& m, const LlavaOptions& o) {
  std::vector<ParamGroup> groups;
  ParamGroup proj = param_group(*m.projector, o.projector_lr > 0 ? o.projector_lr : o.lr, o.weight_decay, "projector.");
  groups.push_back(proj);
  if (o.stage >= 2) {
    ParamGroup lm;
    lm.lr = o.lr;
    lm.weight_decay = o.weight_decay;
    for (auto& [name, t] : language_trained(m, o.full)) {
      lm.names.push_back("language." + name);
      lm.params.push_back(t);
    }
    groups.push_back(lm);
  }
  return groups;
}


nlohmann::json signature_of(const LlavaModel& m, const ReportSet& train, const LlavaOptions& o) {
  return {{"stage", o.stage},
          {"full", o.full},
          {"lora", lora_json(o.lora)},
          {"epochs", o.epochs},
          {"batch", o.batch},
          {"lr", o.lr},
          {"projector_lr", o.projector_lr},
          {"warmup", o.warmup},
          {"weight_decay", o.weight_decay},
          {"clip", o.clip},
          {"max_target_tokens", o.max_target_tokens},
          {"seed", o.seed},
          {"records", train.rows()},
          {"base_sha256", m.info.at("base_model").at("sha256")}};
}

}  // namespace

// --- template -------------------------------------------------------------------------------------

std::string LlavaTemplate::before_image() const {
  if (name == "plain") return "";
  return system + " USER: ";
}

std::string LlavaTemplate::after_image() const {
  if (name == "plain") return "";
  return "\n" + question + " ASSISTANT:";
}

nlohmann::json LlavaTemplate::to_json() const { return {{"name", name}, {"system", system}, {"question", question}}; }

LlavaTemplate LlavaTemplate::from_json(const nlohmann::json& j, const std::string& where) {
  LlavaTemplate t;
  try {
    t.name = j.at("name").get<std::string>();
    t.system = j.value("system", std::string());
    t.question = j.value("question", std::string());
  } catch (const nlohmann::json::exception& e) {
    throw Error(at(where, std::string("template: ") + e.what()));
  }
  if (t.name != "plain" && t.name != "vicuna_v1") throw Error(at(where, "unknown template \"" + t.name + "\""));
  return t;
}

LlavaTemplate llava_template(const std::string& name) {
  LlavaTemplate t;
  if (name != "vicuna_v1" && name != "plain") throw UsageError("--template " + name + ": unknown (vicuna_v1, plain)");
  t.name = name;
  return t;
}

LlavaPromptIds llava_prompt_ids(const LlavaTemplate& t, const text::Tokenizer& tokenizer) {
  LlavaPromptIds p;
  p.before = tokenizer.encode(t.before_image(), true);
  const std::string after = t.after_image();
  if (!after.empty()) p.after = tokenizer.encode(after, false);
  return p;
}

// --- projector ------------------------------------------------------------------------------------

LlavaProjector::LlavaProjector(std::int64_t in, std::int64_t hidden) : in_(in), hidden_(hidden) {
  fc1_ = register_module("fc1", torch::nn::Linear(in, hidden));
  fc2_ = register_module("fc2", torch::nn::Linear(hidden, hidden));
}

torch::Tensor LlavaProjector::forward(const torch::Tensor& x) {
  return fc2_->forward(torch::gelu(fc1_->forward(x)));
}

void LlavaProjector::init(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (auto* fc : {&fc1_, &fc2_}) {
    auto& w = (*fc)->weight;
    auto& b = (*fc)->bias;
    // Kaiming uniform with a = sqrt(5) gives bound 1/sqrt(fan_in), for the weight and the bias alike.
    const double bound = 1.0 / std::sqrt(static_cast<double>(w.size(1)));
    w.copy_(torch::rand(w.sizes(), gen, torch::kFloat32) * (2 * bound) - bound);
    b.copy_(torch::rand(b.sizes(), gen, torch::kFloat32) * (2 * bound) - bound);
  }
}

model::NamedTensors LlavaProjector::named() const {
  return {{"model.mm_projector.0.bias", fc1_->bias},
          {"model.mm_projector.0.weight", fc1_->weight},
          {"model.mm_projector.2.bias", fc2_->bias},
          {"model.mm_projector.2.weight", fc2_->weight}};
}

void LlavaProjector::load(const model::NamedTensors& t, const std::string& where) { load_named(named(), t, where, true); }

// --- model ----------------------------------------------------------------------------------------

LlavaModel new_llava(const std::string& lm_folder, const std::string& tokenizer_path, std::int64_t memory_dim,
                     const LlavaTemplate& prompt, const std::string& init, const torch::Device& device, std::uint64_t seed) {
  LlavaModel m;
  if (!init.empty()) {
    m = load_llava(init, device);
    if (m.projector->in() != memory_dim)
      throw Error(at(init, "its projector takes " + std::to_string(m.projector->in()) + " channels, the stream's tokens have " +
                               std::to_string(memory_dim)));
    m.prompt = prompt;
    m.info["template"] = prompt.to_json();
    return m;
  }
  m.language = model::load_llama(lm_folder, device, torch::kFloat32);
  m.tokenizer = std::make_shared<const text::Tokenizer>(text::Tokenizer::load(tokenizer_path.empty() ? lm_folder : tokenizer_path));
  if (m.tokenizer->vocab_size() > m.language->config().vocab_size)
    throw Error(at(tokenizer_path.empty() ? lm_folder : tokenizer_path,
                   "the tokenizer has " + std::to_string(m.tokenizer->vocab_size()) + " pieces, the language model " +
                       std::to_string(m.language->config().vocab_size)));
  m.projector = std::make_shared<LlavaProjector>(memory_dim, m.language->config().hidden_size);
  m.projector->init(seed);
  m.projector->to(device);
  m.prompt = prompt;
  m.info = {{"format", kFormat},
            {"version", "1.0"},
            {"base_model",
             {{"path", fs::absolute(lm_folder).lexically_normal().string()},
              {"sha256", model::llama_weights_sha256(lm_folder)},
              {"config", m.language->config().to_json()}}},
            {"tokenizer", {{"path", fs::absolute(tokenizer_path.empty() ? lm_folder : tokenizer_path).lexically_normal().string()},
                           {"sha256", m.tokenizer->sha256()}}},
            {"template", prompt.to_json()},
            {"feature", "patch"},
            {"projector", {{"type", "mlp2x_gelu"}, {"in", memory_dim}, {"hidden", m.language->config().hidden_size}}},
            {"tuning", "projector"},
            {"lora", nullptr},
            {"stage", 0}};
  return m;
}

double llava_loss(LlavaModel& m, const ReportSet& set, std::int64_t batch) {
  torch::NoGradGuard no_grad;
  m.language->eval();
  const auto prompt = llava_prompt_ids(m.prompt, *m.tokenizer);
  const auto device = m.projector->parameters().front().device();
  double sum = 0;
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < set.rows(); i += batch) {
    std::vector<std::int64_t> rows;
    for (std::int64_t r = i; r < std::min(set.rows(), i + batch); ++r) rows.push_back(r);
    const Batch b = make_batch(m, prompt, set, rows, 1 << 20, device);
    auto [loss, n] = batch_loss(m, b);
    sum += loss.item<double>() * static_cast<double>(n);
    count += n;
  }
  return count > 0 ? sum / static_cast<double>(count) : std::nan("");
}

LlavaTrainResult train_llava(LlavaModel& m, const ReportSet& train, const ReportSet* val, const LlavaOptions& o,
                             const std::function<void(const LlavaEpoch&)>& on_epoch) {
  if (train.rows() == 0) throw Error("no training records");
  if (o.stage >= 2 && !o.full && m.info.value("tuning", std::string()) != "lora") {
    m.language->add_lora(o.lora, o.seed);
    m.info["lora"] = lora_json(o.lora);
  }
  m.info["tuning"] = o.stage < 2 ? "projector" : (o.full ? "full" : "lora");
  m.info["stage"] = o.stage;
  const torch::Device device = o.device;
  set_trainable(m, o);
  AdamW optimizer(param_groups(m, o));
  std::vector<torch::Tensor> trained;  // what the gradient clipping sees: every trained tensor
  for (const auto& g : optimizer.groups()) trained.insert(trained.end(), g.params.begin(), g.params.end());
  const auto prompt = llava_prompt_ids(m.prompt, *m.tokenizer);
  const std::int64_t per_epoch = (train.rows() + o.batch - 1) / o.batch;
  const std::int64_t total = per_epoch * o.epochs;
  const auto warmup = static_cast<std::int64_t>(std::ceil(o.warmup * static_cast<double>(total)));
  const nlohmann::json signature = signature_of(m, train, o);

  LlavaTrainResult result;
  std::int64_t step = 0;
  double epoch_sum = 0;
  std::int64_t epoch_count = 0;
  nlohmann::json epochs_log = nlohmann::json::array();
  if (o.resume && !o.checkpoint_dir.empty()) {
    const std::string latest = latest_checkpoint(o.checkpoint_dir, kCheckpointFormat);
    if (!latest.empty()) {
      Checkpoint c = read_checkpoint(latest, kCheckpointFormat);
      check_signature(c.signature, signature, latest);
      m.projector->load(c.group("projector"), latest);
      if (o.stage >= 2) load_named(language_trained(m, o.full), c.group("language"), latest, false);
      optimizer.load_state(c.group("optimizer"), latest);
      step = c.step;
      epoch_sum = c.state.at("epoch_loss_sum").get<double>();
      epoch_count = c.state.at("epoch_loss_count").get<std::int64_t>();
      epochs_log = c.state.at("epochs");
    }
  }
  auto save = [&](std::int64_t at_step) {
    if (o.checkpoint_dir.empty()) return;
    Checkpoint c;
    c.format = kCheckpointFormat;
    c.step = at_step;
    c.signature = signature;
    c.state = {{"epoch_loss_sum", epoch_sum}, {"epoch_loss_count", epoch_count}, {"epochs", epochs_log}};
    c.groups["projector"] = m.projector->named();
    if (o.stage >= 2) c.groups["language"] = language_trained(m, o.full);
    c.groups["optimizer"] = optimizer.state();
    char name[32];
    std::snprintf(name, sizeof name, "step-%09lld", static_cast<long long>(at_step));
    fs::create_directories(o.checkpoint_dir);
    write_checkpoint(o.checkpoint_dir + "/" + name, c);
  };

  while (step < total) {
    const std::int64_t epoch = step / per_epoch;
    const std::int64_t within = step % per_epoch;
    const auto order = random::permutation(train.rows(), random::training_rng(o.seed, kShufflePurpose, static_cast<std::uint64_t>(epoch)));
    std::vector<std::int64_t> rows;
    for (std::int64_t i = within * o.batch; i < std::min(train.rows(), (within + 1) * o.batch); ++i)
      rows.push_back(order[static_cast<std::size_t>(i)]);
    m.language->train();
    m.projector->train();
    const Batch b = make_batch(m, prompt, train, rows, o.max_target_tokens, device);
    auto [loss, n] = batch_loss(m, b);
    const double value = loss.item<double>();
    if (!std::isfinite(value)) throw Error("training diverged (loss " + std::to_string(value) + " at update " + std::to_string(step + 1) + "); nothing was written");
    optimizer.zero_grad();
    loss.backward();
    if (o.clip > 0) torch::nn::utils::clip_grad_norm_(trained, o.clip);
    optimizer.step(lr_scale(Schedule::cosine, step, total, warmup));
    epoch_sum += value * static_cast<double>(n);
    epoch_count += n;
    ++step;
    if (step % per_epoch == 0) {
      LlavaEpoch e;
      e.epoch = static_cast<int>(step / per_epoch);
      e.step = step;
      e.total = total;
      e.train_loss = epoch_count > 0 ? epoch_sum / static_cast<double>(epoch_count) : std::nan("");
      if (val) e.val_loss = llava_loss(m, *val, o.batch);
      epochs_log.push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"val_loss", val ? nlohmann::json(e.val_loss) : nlohmann::json()}});
      epoch_sum = 0;
      epoch_count = 0;
      result.epochs.push_back(e);
      if (on_epoch) on_epoch(e);
    }
    if (o.checkpoint_every > 0 && step % o.checkpoint_every == 0 && step < total) save(step);
    if (o.stop_after > 0 && step >= o.stop_after && step < total) {
      save(step);
      result.steps_done = step;
      return result;
    }
  }
  m.language->eval();
  m.projector->eval();
  for (auto& p : m.language->parameters()) p.set_requires_grad(false);
  for (auto& p : m.projector->parameters()) p.set_requires_grad(false);
  m.info["training"] = {{"updates", total}, {"epochs", epochs_log}, {"settings", signature}};
  result.finished = true;
  result.steps_done = step;
  return result;
}

// --- folder ---------------------------------------------------------------------------------------

void write_llava(const std::string& folder, const LlavaModel& m) {
  write_tensors(folder + "/projector.safetensors", m.projector->named());
  const std::string tuning = m.info.value("tuning", std::string("projector"));
  if (tuning == "lora") write_tensors(folder + "/adapter_model.safetensors", language_trained(m, false));
  if (tuning == "full") write_tensors(folder + "/language_model.safetensors", language_trained(m, true));
  cli::write_file_atomic(folder + "/llava.json", m.info.dump(2) + "\n");
}

LlavaModel load_llava(const std::string& folder, const torch::Device& device) {
  const std::string json_path = folder + "/llava.json";
  if (!fs::exists(json_path)) throw Error(at(folder, "no llava.json: not a cx-report LLaVA folder"));
  LlavaModel m;
  m.info = io::read_json_file(json_path);
  io::check_format(m.info, json_path, kFormat, 1);
  std::string lm_folder, tok_path, sha, tuning;
  std::int64_t in = 0;
  try {
    lm_folder = m.info.at("base_model").at("path").get<std::string>();
    sha = m.info.at("base_model").at("sha256").get<std::string>();
    tok_path = m.info.at("tokenizer").at("path").get<std::string>();
    in = m.info.at("projector").at("in").get<std::int64_t>();
    tuning = m.info.at("tuning").get<std::string>();
    m.prompt = LlavaTemplate::from_json(m.info.at("template"), json_path);
  } catch (const nlohmann::json::exception& e) {
    throw Error(at(json_path, std::string("malformed: ") + e.what()));
  }
  if (in <= 0 || in > 65536) throw Error(at(json_path, "projector.in out of range"));
  if (!fs::exists(lm_folder)) throw Error(at(folder, "its base language model " + lm_folder + " is not there"));
  const std::string now = model::llama_weights_sha256(lm_folder);
  if (now != sha)
    throw Error(at(folder, "was trained on base weights " + sha.substr(0, 12) + "..., " + lm_folder + " now holds " + now.substr(0, 12) +
                               "...: not the same language model"));
  m.language = model::load_llama(lm_folder, device, torch::kFloat32);
  m.tokenizer = std::make_shared<const text::Tokenizer>(text::Tokenizer::load(tok_path));
  if (m.info.at("tokenizer").contains("sha256") && m.tokenizer->sha256() != m.info["tokenizer"]["sha256"].get<std::string>())
    throw Error(at(folder, "its tokenizer " + tok_path + " has changed since training"));
  m.projector = std::make_shared<LlavaProjector>(in, m.language->config().hidden_size);
  m.projector->to(device);
  m.projector->load(read_tensors(folder + "/projector.safetensors"), folder + "/projector.safetensors");
  if (tuning == "lora") {
    m.language->add_lora(lora_from_json(m.info.at("lora")), 0);
    m.language->load_lora(read_tensors(folder + "/adapter_model.safetensors"), folder + "/adapter_model.safetensors");
  } else if (tuning == "full") {
    const std::string path = folder + "/language_model.safetensors";
    load_named(language_trained(m, true), read_tensors(path), path, true);
  } else if (tuning != "projector") {
    throw Error(at(json_path, "unknown tuning \"" + tuning + "\""));
  }
  m.language->eval();
  m.projector->eval();
  for (auto& p : m.language->parameters()) p.set_requires_grad(false);
  for (auto& p : m.projector->parameters()) p.set_requires_grad(false);
  return m;
}

// --- generation -----------------------------------------------------------------------------------

std::vector<std::string> llava_generate(LlavaModel& m, const torch::Tensor& patches, const model::SearchOptions& search) {
  torch::NoGradGuard no_grad;
  const auto prompt = llava_prompt_ids(m.prompt, *m.tokenizer);
  const auto device = m.projector->parameters().front().device();
  const std::int64_t B = patches.size(0);
  const std::int64_t nb = static_cast<std::int64_t>(prompt.before.size()), na = static_cast<std::int64_t>(prompt.after.size());
  const auto opts = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor before = torch::tensor(prompt.before, opts).to(device).unsqueeze(0);
  torch::Tensor text_before = m.language->embed(before).expand({B, nb, -1});
  torch::Tensor image = m.projector->forward(patches.to(device, torch::kFloat32)).to(text_before.dtype());
  std::vector<torch::Tensor> parts = {text_before, image};
  if (na > 0) parts.push_back(m.language->embed(torch::tensor(prompt.after, opts).to(device).unsqueeze(0)).expand({B, na, -1}));
  // Every row has the same length here, so no padding is needed; the mask is all ones.
  torch::Tensor embeds = torch::cat(parts, 1).contiguous();
  torch::Tensor mask = torch::ones({B, embeds.size(1)}, opts.device(device));
  model::LlamaDecoder decoder(*m.language);
  torch::Tensor first = decoder.prefill(embeds, mask);
  model::SearchOptions s = search;
  s.eos_id = m.language->config().eos_token_id;
  const auto ids = model::generate(decoder, first, s);
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (const auto& row : ids) out.push_back(m.tokenizer->decode(row, true));
  return out;
}

}  // namespace cx::train
