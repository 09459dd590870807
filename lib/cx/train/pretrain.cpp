#include "cx/train/pretrain.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <tuple>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/progress.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/safetensors.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/presets.hpp"
#include "cx/model/runtime.hpp"
#include "cx/model/vit.hpp"
#include "cx/random/rng.hpp"
#include "cx/train/checkpoint.hpp"
#include "cx/train/distributed.hpp"
#include "cx/train/loss.hpp"
#include "cx/train/masking.hpp"
#include "cx/train/optim.hpp"
#include "cx/train/schedule.hpp"
#include "cx/train/ssl_data.hpp"
#include "cx/train/ssl_head.hpp"
#include "cx/train/ssl_loss.hpp"
#include "cx/train/tensor_io.hpp"
#include "cx/util/strings.hpp"

namespace cx::train {
namespace fs = std::filesystem;

namespace {

// training_rng purposes of the loop (the loader has its own).
constexpr std::uint64_t kPurposeMasks = 0x6d61736b73ull;     // "masks"
constexpr std::uint64_t kPurposeDropPath = 0x6470617468ull;  // "dpath"
constexpr std::uint64_t kPurposeInit = 0x696e6974ull;        // "init"

struct Arch {
  std::int64_t dim, depth, heads;
};

Arch arch_of(const std::string& name) {
  static const std::map<std::string, Arch> table = {{"vit_tiny", {192, 12, 3}},
                                                    {"vit_small", {384, 12, 6}},
                                                    {"vit_base", {768, 12, 12}},
                                                    {"vit_large", {1024, 24, 16}},
                                                    {"vit_giant2", {1536, 40, 24}}};
  auto it = table.find(name);
  if (it == table.end()) throw Error("student.arch: unknown architecture " + name);
  return it->second;
}

// The student or the teacher: encoder and heads (ibot is dino when the heads are shared).
struct SslModel {
  std::shared_ptr<model::VitModel> backbone;
  std::shared_ptr<DinoHead> dino_head, ibot_head;
  bool separate_ibot = false;

  // Every parameter under the names a DINOv2 checkpoint gives them ("backbone." + HF names,
  // "dino_head.", "ibot_head.").
  NamedParams params() const {
    NamedParams p = NamedParams::of(*backbone, "backbone.");
    NamedParams d = NamedParams::of(*dino_head, "dino_head.");
    p.names.insert(p.names.end(), d.names.begin(), d.names.end());
    p.tensors.insert(p.tensors.end(), d.tensors.begin(), d.tensors.end());
    if (separate_ibot) {
      NamedParams i = NamedParams::of(*ibot_head, "ibot_head.");
      p.names.insert(p.names.end(), i.names.begin(), i.names.end());
      p.tensors.insert(p.tensors.end(), i.tensors.begin(), i.tensors.end());
    }
    return p;
  }
  void train(bool on) {
    backbone->train(on);
    dino_head->train(on);
    ibot_head->train(on);
  }
  void to(torch::Device device) {
    backbone->to(device);
    dino_head->to(device);
    if (separate_ibot) ibot_head->to(device);
  }
};

DinoHeadConfig head_config(const Recipe& r, const std::string& which, std::int64_t in_dim) {
  DinoHeadConfig c;
  c.in_dim = in_dim;
  c.out_dim = r.integer(which + ".head_n_prototypes");
  c.hidden_dim = r.integer(which + ".head_hidden_dim");
  c.bottleneck_dim = r.integer(which + ".head_bottleneck_dim");
  c.nlayers = r.integer(which + ".head_nlayers");
  return c;
}

SslModel make_model(const Recipe& r, const model::VitConfig& config) {
  SslModel m;
  m.backbone = std::make_shared<model::VitModel>(config);
  m.dino_head = std::make_shared<DinoHead>(head_config(r, "dino", config.hidden_size));
  m.separate_ibot = r.flag("ibot.separate_head");
  m.ibot_head = m.separate_ibot ? std::make_shared<DinoHead>(head_config(r, "ibot", config.hidden_size)) : m.dino_head;
  return m;
}

// DINOv2's initialisation of a ViT trained from scratch: Linear weights truncated normal (std 0.02,
// within +-2 as timm's), biases 0, LayerNorms 1/0, positions truncated normal 0.02, CLS and registers N(0, 1e-6),
// the mask token 0, layer scales at student.layerscale, the patch convolution as nn.Conv2d's default
// (uniform in +-1/sqrt(fan_in)).
void init_backbone(model::VitModel& vit, double layerscale, std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  const auto& c = vit.config();
  const double fan_in = static_cast<double>(c.num_channels * c.patch_size * c.patch_size);
  for (auto& item : vit.named_parameters(true)) {
    const std::string& name = item.key();
    torch::Tensor& p = item.value();
    torch::Tensor v;
    auto normal = [&](double sd) {
      torch::Tensor t = torch::empty(p.sizes(), torch::kFloat32);
      trunc_normal_(t, sd, -2.0, 2.0, gen);
      return t;
    };
    if (util::ends_with(name, ".lambda1")) {
      v = torch::full(p.sizes(), layerscale);
    } else if (name.find("norm") != std::string::npos) {
      v = util::ends_with(name, ".weight") ? torch::ones(p.sizes()) : torch::zeros(p.sizes());
    } else if (name == "embeddings.cls_token" || name == "embeddings.register_tokens") {
      v = torch::randn(p.sizes(), gen, torch::kFloat32).mul_(1e-6);
    } else if (name == "embeddings.mask_token") {
      v = torch::zeros(p.sizes());
    } else if (name == "embeddings.position_embeddings") {
      v = normal(0.02);
    } else if (name.find("patch_embeddings") != std::string::npos) {
      const double bound = 1.0 / std::sqrt(fan_in);
      v = torch::rand(p.sizes(), gen, torch::kFloat32).mul_(2 * bound).sub_(bound);
    } else if (util::ends_with(name, ".bias")) {
      v = torch::zeros(p.sizes());
    } else {
      v = normal(0.02);
    }
    p.copy_(v);
  }
}

// One AdamW group per (lr multiplier, wd multiplier, last layer) as DINOv2's get_params_groups fuses
// them: layer-wise decay rate^(L + 1 - layer) with layer 0 for the embeddings, i + 1 for block i and
// L + 1 for the final norm and the heads; patch embedding lr x patch_embed_lr_mult; no weight decay
// on biases, norms and layer scales (DINOv2's ".bias", "norm", "gamma").
struct GroupInfo {
  double lr_mult = 1, wd_mult = 1;
  bool last_layer = false;
};

std::vector<ParamGroup> make_groups(const NamedParams& p, std::int64_t depth, double layer_decay, double patch_mult,
                                    std::vector<GroupInfo>& infos) {
  std::map<std::tuple<double, double, bool>, std::size_t> index;
  std::vector<ParamGroup> groups;
  for (std::size_t i = 0; i < p.names.size(); ++i) {
    const std::string& n = p.names[i];
    GroupInfo g;
    std::int64_t layer = depth + 1;
    if (util::starts_with(n, "backbone.embeddings.")) {
      layer = 0;
    } else if (util::starts_with(n, "backbone.encoder.layer.")) {
      layer = std::stoll(n.substr(std::string("backbone.encoder.layer.").size())) + 1;
    }
    g.lr_mult = std::pow(layer_decay, static_cast<double>(depth + 1 - layer));
    if (n.find("patch_embeddings") != std::string::npos) g.lr_mult *= patch_mult;
    if (util::ends_with(n, ".bias") || n.find("norm") != std::string::npos || n.find("lambda1") != std::string::npos)
      g.wd_mult = 0.0;
    g.last_layer = n.find("last_layer") != std::string::npos;
    auto key = std::make_tuple(g.lr_mult, g.wd_mult, g.last_layer);
    auto it = index.find(key);
    if (it == index.end()) {
      it = index.emplace(key, groups.size()).first;
      groups.emplace_back();
      infos.push_back(g);
    }
    groups[it->second].names.push_back(n);
    groups[it->second].params.push_back(p.tensors[i]);
  }
  return groups;
}

struct Schedules {
  CosineScheduler lr, wd, momentum, teacher_temp;
  std::int64_t freeze_steps = 0;
  double last_layer_lr(std::int64_t it) const { return it < freeze_steps ? 0.0 : lr[it]; }
};

Schedules make_schedules(const Recipe& r, int world_size) {
  const std::int64_t el = r.integer("train.OFFICIAL_EPOCH_LENGTH");
  const std::int64_t total = r.integer("optim.epochs") * el;
  const std::int64_t temp_steps = r.integer("teacher.warmup_teacher_temp_epochs") * el;
  return Schedules{
      CosineScheduler(resolved_lr(r, world_size), r.number("optim.min_lr"), total, r.integer("optim.warmup_epochs") * el, 0.0),
      CosineScheduler(r.number("optim.weight_decay"), r.number("optim.weight_decay_end"), total),
      CosineScheduler(r.number("teacher.momentum_teacher"), r.number("teacher.final_momentum_teacher"), total),
      CosineScheduler(r.number("teacher.teacher_temp"), r.number("teacher.teacher_temp"), temp_steps, temp_steps,
                      r.number("teacher.warmup_teacher_temp")),
      r.integer("optim.freeze_last_layer_epochs") * el};
}

// Stochastic depth factors of one forward: per block a [B] tensor (0 dropped, 1/(1-p) kept), or none.
std::vector<torch::Tensor> drop_path_scales(const std::vector<double>& rates, std::int64_t batch, random::CounterRng& rng) {
  bool any = false;
  for (double r : rates) any = any || r > 0;
  if (!any) return {};
  std::vector<torch::Tensor> out;
  for (double p : rates) {
    torch::Tensor s = torch::empty({batch}, torch::kFloat32);
    float* d = s.data_ptr<float>();
    for (std::int64_t i = 0; i < batch; ++i) d[i] = rng.uniform() < p ? 0.0f : static_cast<float>(1.0 / (1.0 - p));
    out.push_back(s);
  }
  return out;
}

// One module's gradients clipped to max_norm as torch's clip_grad_norm_ does (the norm of the
// per-tensor norms, one host synchronisation); returns the norm before clipping.
double clip_module(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads, norms;
  for (const auto& p : params)
    if (p.grad().defined()) {
      grads.push_back(p.grad());
      norms.push_back(p.grad().norm());
    }
  if (grads.empty()) return 0.0;
  const double norm = torch::stack(norms).norm().item<double>();
  if (max_norm > 0) {
    const double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0)
      for (auto& g : grads) g.mul_(coef);
  }
  return norm;
}

double peak_rss_mib() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::string fmt(double v, int digits = 6) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}

const char* const kLogHeader =
    "step\tepoch\tloss\tdino_local_crops_loss\tdino_global_crops_loss\tkoleo_loss\tibot_loss\tlr\tlast_layer_lr\twd\t"
    "momentum\tteacher_temp\tgrad_norm\timages_per_s\tpeak_rss_mib\tseconds\n";

// Keeps the log's rows up to `step` (a resumed run rewrites what it redoes).
void trim_log(const std::string& path, std::int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  bool first = true;
  while (std::getline(in, line)) {
    if (first) {
      kept += line + "\n";
      first = false;
      continue;
    }
    const auto tab = line.find('\t');
    if (tab == std::string::npos) continue;
    try {
      if (std::stoll(line.substr(0, tab)) <= step) kept += line + "\n";
    } catch (...) {
    }
  }
  cli::write_file_atomic(path, kept.empty() ? std::string(kLogHeader) : kept);
}

model::Precision recipe_precision(const Recipe& r, const torch::Device& device) {
  const std::string p = r.text("train.precision");
  if (p == "fp32") return model::Precision::f32;
  if (p == "bf16") return model::parse_precision("bf16", device);
  if (p == "fp16") return model::parse_precision("f16", device);
  if (device.is_cuda()) return model::Precision::bf16;
  return model::cpu_bf16().available ? model::Precision::bf16 : model::Precision::f32;
}

void prune_checkpoints(const std::string& parent, std::int64_t keep) {
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    if (!util::starts_with(name, "step-") || !is_checkpoint(e.path().string(), kPretrainCheckpointFormat)) continue;
    try {
      found.emplace_back(std::stoll(name.substr(5)), e.path().string());
    } catch (...) {
    }
  }
  std::sort(found.begin(), found.end());
  for (std::size_t i = 0; i + static_cast<std::size_t>(keep) < found.size(); ++i) fs::remove_all(found[i].second, ec);
}

std::string checkpoint_name(std::int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step-%09lld", static_cast<long long>(step));
  return buf;
}

model::NamedTensors to_cpu(const model::NamedTensors& t) {
  model::NamedTensors out;
  for (const auto& [k, v] : t) out.emplace_back(k, v.detach().to(torch::kCPU).contiguous());
  return out;
}

// The tensors of `group` whose names start with `prefix`, the prefix removed.
model::NamedTensors strip(const model::NamedTensors& group, const std::string& prefix) {
  model::NamedTensors out;
  for (const auto& [k, v] : group)
    if (util::starts_with(k, prefix)) out.emplace_back(k.substr(prefix.size()), v);
  return out;
}

void check_init_matches(const Recipe& r, const model::VitConfig& have, const std::string& where) {
  const model::VitConfig want = recipe_vit_config(r);
  std::vector<std::string> diffs;
  auto cmp = [&](const char* what, std::int64_t a, std::int64_t b) {
    if (a != b) diffs.push_back(std::string(what) + " " + std::to_string(b) + " (recipe " + std::to_string(a) + ")");
  };
  cmp("hidden_size", want.hidden_size, have.hidden_size);
  cmp("num_hidden_layers", want.num_hidden_layers, have.num_hidden_layers);
  cmp("num_attention_heads", want.num_attention_heads, have.num_attention_heads);
  cmp("patch_size", want.patch_size, have.patch_size);
  cmp("num_register_tokens", want.num_register_tokens, have.num_register_tokens);
  if (want.use_swiglu_ffn != have.use_swiglu_ffn) diffs.push_back("ffn_layer");
  if (!diffs.empty())
    throw Error(where + ": the encoder differs from the recipe's student: " + util::join(diffs, ", ") +
                " (choose the matching --recipe or set student.* to it)");
}

}  // namespace

model::VitConfig recipe_vit_config(const Recipe& r) {
  Arch a = arch_of(r.text("student.arch"));
  if (r.integer("student.embed_dim") > 0) a.dim = r.integer("student.embed_dim");
  if (r.integer("student.depth") > 0) a.depth = r.integer("student.depth");
  if (r.integer("student.num_heads") > 0) a.heads = r.integer("student.num_heads");
  if (a.dim % a.heads != 0)
    throw Error(r.source + ": student: width " + std::to_string(a.dim) + " is not a multiple of " +
                std::to_string(a.heads) + " heads");
  model::VitConfig c;
  c.num_register_tokens = r.integer("student.num_register_tokens");
  c.model_type = c.num_register_tokens > 0 ? "dinov2_with_registers" : "dinov2";
  c.hidden_size = a.dim;
  c.num_hidden_layers = a.depth;
  c.num_attention_heads = a.heads;
  c.patch_size = r.integer("student.patch_size");
  c.image_size = r.integer("crops.global_crops_size");
  if (c.image_size < c.patch_size)
    throw Error(r.source + ": crops.global_crops_size " + std::to_string(c.image_size) + " is smaller than a patch");
  if (r.integer("crops.local_crops_number") > 0 && r.integer("crops.local_crops_size") < c.patch_size)
    throw Error(r.source + ": crops.local_crops_size " + std::to_string(r.integer("crops.local_crops_size")) +
                " is smaller than a patch");
  c.use_swiglu_ffn = r.text("student.ffn_layer") != "mlp";
  c.layerscale_value = r.number("student.layerscale");
  c.qkv_bias = r.flag("student.qkv_bias");
  c.dtype = "float32";
  return c;
}

double resolved_lr(const Recipe& r, int world_size) {
  if (r.number("optim.lr") > 0) return r.number("optim.lr");
  const double base = r.number("optim.base_lr");
  if (r.text("optim.scaling_rule") == "sqrt_wrt_1024")
    return base * std::sqrt(static_cast<double>(r.integer("train.batch_size_per_gpu") * world_size) / 1024.0);
  return base;
}

std::string latest_run_checkpoint(const std::string& run) {
  return latest_checkpoint(run + "/checkpoints", kPretrainCheckpointFormat);
}

PretrainResult pretrain(const PretrainOptions& o) {
  const dist::Env env = dist::read_env();
  const bool main_rank = env.rank == 0;
  const std::string ckpt_dir = o.run + "/checkpoints";

  // --- the recipe: the run's own when resuming ---
  Recipe recipe = o.recipe;
  std::string resume_from;
  if (o.resume) {
    resume_from = latest_run_checkpoint(o.run);
    if (resume_from.empty()) throw Error(o.run + ": no checkpoint to resume (start the run without --resume)");
    const std::string saved = o.run + "/recipe.yaml";
    std::ifstream in(saved);
    if (!in) throw Error(saved + ": cannot read the run's recipe");
    std::stringstream text;
    text << in.rdbuf();
    recipe = parse_recipe(text.str(), saved);
  } else if (!latest_run_checkpoint(o.run).empty()) {
    throw Error(o.run + ": holds a run already (" + latest_run_checkpoint(o.run) +
                "); --resume continues it, or choose another -o");
  }
  validate_recipe(recipe);

  const torch::Device device = dist::rank_device(o.device, env, static_cast<std::int64_t>(torch::cuda::device_count()));
  const model::Precision precision = recipe_precision(recipe, device);
  const std::uint64_t seed = static_cast<std::uint64_t>(recipe.integer("train.seed"));
  const std::int64_t batch = recipe.integer("train.batch_size_per_gpu");
  const std::int64_t n_local = recipe.integer("crops.local_crops_number");
  const std::int64_t el = recipe.integer("train.OFFICIAL_EPOCH_LENGTH");
  const std::int64_t total = recipe.integer("optim.epochs") * el;
  const std::int64_t period = recipe.integer("train.checkpoint_period") > 0 ? recipe.integer("train.checkpoint_period") : el;
  const bool sinkhorn = recipe.text("train.centering") == "sinkhorn_knopp";

  // --- process group ---
  auto group = dist::Group::create(env, device, std::chrono::seconds(300));
  const int world = group->size();
  AllReduceSum all_reduce;
  if (world > 1) all_reduce = [group](torch::Tensor& t) { group->all_reduce_sum(t); };

  // --- models ---
  model::VitConfig config = recipe_vit_config(recipe);
  Checkpoint resumed;
  if (o.resume) {
    resumed = read_checkpoint(resume_from, kPretrainCheckpointFormat);
    config = model::parse_vit_config(resumed.state.at("encoder_config"), resume_from + "/state.json");
  }
  std::string init_sha;
  model::NamedTensors init_weights;
  if (!o.init.empty() && !o.resume) {
    model::LoadOptions lo;
    lo.hash = true;
    model::LoadedVit loaded = model::load_hf_vit(o.init, lo);
    check_init_matches(recipe, loaded.config, o.init + "/config.json");
    config = loaded.config;
    init_sha = loaded.weights_sha256;
    init_weights = NamedParams::of(*loaded.model).current();
  } else if (!o.init.empty()) {
    throw UsageError("--init starts a run; --resume continues one from its checkpoint");
  }
  SslModel student = make_model(recipe, config);
  SslModel teacher = make_model(recipe, config);
  if (!init_weights.empty()) {
    model::load_weights(*student.backbone, init_weights, o.init);
  } else {
    init_backbone(*student.backbone, recipe.number("student.layerscale"), seed);
  }
  student.dino_head->init_random(random::mix64(seed ^ kPurposeInit) + 1);
  if (student.separate_ibot) student.ibot_head->init_random(random::mix64(seed ^ kPurposeInit) + 2);
  std::string heads_file = o.init_heads;
  if (heads_file.empty() && !o.init.empty() && fs::exists(o.init + "/ssl_heads.safetensors"))
    heads_file = o.init + "/ssl_heads.safetensors";
  if (!heads_file.empty() && !o.resume) {
    const model::NamedTensors heads = read_tensors(heads_file);
    NamedParams::of(*student.dino_head).load(strip(heads, "dino_head."), heads_file + " (dino_head)");
    if (student.separate_ibot) NamedParams::of(*student.ibot_head).load(strip(heads, "ibot_head."), heads_file + " (ibot_head)");
  }
  student.to(device);
  teacher.to(device);
  NamedParams sp = student.params(), tp = teacher.params();
  {
    torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < sp.tensors.size(); ++i) tp.tensors[i].copy_(sp.tensors[i]);
  }
  for (auto& t : tp.tensors) t.set_requires_grad(false);
  student.train(true);
  teacher.train(false);

  // --- optimizer, losses, schedules ---
  std::vector<GroupInfo> infos;
  AdamW opt(make_groups(sp, config.num_hidden_layers, recipe.number("optim.layerwise_decay"),
                        recipe.number("optim.patch_embed_lr_mult"), infos),
            recipe.number("optim.adamw_beta1"), recipe.number("optim.adamw_beta2"), 1e-8);
  DinoLoss dino_loss(recipe.integer("dino.head_n_prototypes"), recipe.number("dino.student_temp"),
                     recipe.number("dino.center_momentum"));
  IbotPatchLoss ibot_loss(student.separate_ibot ? recipe.integer("ibot.head_n_prototypes") : recipe.integer("dino.head_n_prototypes"),
                          recipe.number("ibot.student_temp"), recipe.number("ibot.center_momentum"));
  dino_loss.center = dino_loss.center.to(device);
  ibot_loss.center = ibot_loss.center.to(device);
  const Schedules sched = make_schedules(recipe, world);

  const std::int64_t depth = config.num_hidden_layers;
  std::vector<double> drop_rates(static_cast<std::size_t>(depth), recipe.number("student.drop_path_rate"));
  if (!recipe.flag("student.drop_path_uniform"))
    for (std::int64_t i = 0; i < depth; ++i)
      drop_rates[static_cast<std::size_t>(i)] =
          depth > 1 ? recipe.number("student.drop_path_rate") * static_cast<double>(i) / static_cast<double>(depth - 1) : 0.0;

  // --- data ---
  SslLoaderOptions lo;
  lo.batch_size = batch;
  lo.shuffle_buffer = recipe.integer("train.shuffle_buffer");
  lo.seed = seed;
  lo.threads = recipe.integer("train.num_workers") > 0 ? static_cast<int>(recipe.integer("train.num_workers")) : o.threads;
  lo.rank = env.rank;
  lo.world_size = world;
  lo.crops.global_size = recipe.integer("crops.global_crops_size");
  lo.crops.local_size = recipe.integer("crops.local_crops_size");
  lo.crops.local_number = n_local;
  std::tie(lo.crops.global_scale_min, lo.crops.global_scale_max) = recipe.range("crops.global_crops_scale");
  std::tie(lo.crops.local_scale_min, lo.crops.local_scale_max) = recipe.range("crops.local_crops_scale");
  lo.crops.global_affine = recipe.flag("crops.global_affine");
  // Blur as DINOv2's code applies it (its GaussianBlur(p) keeps the image with probability p, so the
  // paper's 1.0 / 0.1 / 0.5 become never / 0.9 / 0.5): the models CXformer and DINOv2 published were
  // trained this way.
  const bool blur = recipe.flag("crops.gaussian_blur");
  lo.crops.blur_p_global1 = 0.0;
  lo.crops.blur_p_global2 = blur ? 0.9 : 0.0;
  lo.crops.blur_p_local = blur ? 0.5 : 0.0;
  lo.crops.jitter_p = recipe.number("crops.color_jitter_prob");
  lo.crops.solarize_p_global2 = recipe.number("crops.solarize_prob");
  lo.crops.hist_equalize = recipe.flag("crops.hist_equalize");
  SslLoader loader(o.inputs, lo);

  // --- signature and resume ---
  nlohmann::json signature;
  signature["recipe"] = nlohmann::json::parse(recipe.tree.dump());
  signature["world_size"] = world;
  signature["init_sha256"] = init_sha;
  std::int64_t step = 0;
  if (o.resume) {
    const Checkpoint& c = resumed;
    nlohmann::json saved_sig = c.signature;
    signature["init_sha256"] = saved_sig.value("init_sha256", "");
    // A run an earlier cx saved lacks the recipe keys added since; their defaults are what it did.
    if (saved_sig.contains("recipe")) saved_sig["recipe"] = recipe_with_defaults(saved_sig["recipe"]);
    check_signature(saved_sig, signature, resume_from);
    sp.load(c.group("student"), resume_from + "/student.safetensors");
    tp.load(c.group("teacher"), resume_from + "/teacher.safetensors");
    opt.load_state(c.group("optimizer"), resume_from + "/optimizer.safetensors");
    for (const auto& [k, v] : c.group("loss")) {
      if (k == "dino_center") dino_loss.center.copy_(v);
      if (k == "ibot_center") ibot_loss.center.copy_(v);
    }
    loader.seek(c.state.at("data"));
    step = c.step;
    init_sha = signature["init_sha256"].get<std::string>();
  }

  // --- run folder (rank 0) ---
  const std::string log_path = o.run + "/log.tsv";
  std::FILE* log = nullptr;
  if (main_rank) {
    fs::create_directories(ckpt_dir);
    if (!o.resume) cli::write_file_atomic(o.run + "/recipe.yaml", recipe_to_yaml(recipe));
    if (o.resume) trim_log(log_path, step);
    const bool fresh = !fs::exists(log_path) || fs::file_size(log_path) == 0;
    log = std::fopen(log_path.c_str(), "a");
    if (!log) throw Error(log_path + ": cannot write the log");
    if (fresh) std::fputs(kLogHeader, log);
    std::fflush(log);
  }
  struct CloseLog {
    std::FILE*& f;
    ~CloseLog() {
      if (f) std::fclose(f);
    }
  } close_log{log};

  PretrainResult result;
  result.total = total;
  auto save = [&](std::int64_t at_step) {
    if (!main_rank) return;
    Checkpoint c;
    c.format = kPretrainCheckpointFormat;
    c.step = at_step;
    c.signature = signature;
    c.state["data"] = loader.position();
    c.state["encoder_config"] = nlohmann::json::parse(model::vit_config_to_json(config).dump());
    c.state["epoch_length"] = el;
    c.state["total_steps"] = total;
    c.state["init"] = o.init;
    c.groups["student"] = to_cpu(sp.current());
    c.groups["teacher"] = to_cpu(tp.current());
    c.groups["optimizer"] = to_cpu(opt.state());
    c.groups["loss"] = to_cpu({{"dino_center", dino_loss.center}, {"ibot_center", ibot_loss.center}});
    const std::string folder = ckpt_dir + "/" + checkpoint_name(at_step);
    write_checkpoint(folder, c);
    prune_checkpoints(ckpt_dir, recipe.integer("train.keep_checkpoints"));
    result.checkpoint = folder;
  };

  const std::int64_t end = o.max_steps >= 0 ? std::min(o.max_steps, total) : total;
  cli::enable_graceful_stop();
  if (step >= end) {
    if (!o.resume || o.max_steps == 0) save(step);
    result.step = step;
    if (result.checkpoint.empty()) result.checkpoint = resume_from;
    return result;
  }
  if (main_rank && o.init.empty() && !o.resume && util::starts_with(recipe.source, "cxformer"))
    log::warn("starting " + recipe.source +
              " from random weights: CXformer continues from facebook/dinov2-with-registers-* (--init FOLDER)");

  // What each step reads from the recipe, looked up once.
  const double mask_p = recipe.number("ibot.mask_sample_probability");
  const auto mask_ratio = recipe.range("ibot.mask_ratio_min_max");
  const double koleo_w = recipe.number("dino.koleo_loss_weight"), ibot_w = recipe.number("ibot.loss_weight");
  const double dino_w = recipe.number("dino.loss_weight"), clip = recipe.number("optim.clip_grad");
  const bool checkpoint_blocks = recipe.flag("train.activation_checkpointing");
  // The student's modules, clipped one by one as DINOv2 clips each.
  std::vector<torch::Tensor> backbone_params, dino_head_params, ibot_head_params;
  for (std::size_t i = 0; i < sp.names.size(); ++i) {
    if (util::starts_with(sp.names[i], "backbone.")) backbone_params.push_back(sp.tensors[i]);
    else if (util::starts_with(sp.names[i], "dino_head.")) dino_head_params.push_back(sp.tensors[i]);
    else ibot_head_params.push_back(sp.tensors[i]);
  }
  std::vector<bool> is_last_layer;
  for (const auto& n : sp.names) is_last_layer.push_back(n.find("last_layer") != std::string::npos);

  std::unique_ptr<cli::Progress> progress;
  if (main_rank && o.progress) progress = std::make_unique<cli::Progress>("steps", end - step);
  const std::int64_t prefix = 1 + config.num_register_tokens;
  const std::int64_t grid = recipe.integer("crops.global_crops_size") / config.patch_size;

  while (step < end) {
    const auto t0 = std::chrono::steady_clock::now();
    SslBatch b;
    if (!loader.next(b)) {
      result.data_ended = true;
      break;
    }
    const std::int64_t it = step;
    const double lr = sched.lr[it], wd = sched.wd[it], mom = sched.momentum[it], temp = sched.teacher_temp[it];
    const double ll_lr = sched.last_layer_lr(it);
    for (std::size_t g = 0; g < infos.size(); ++g)
      opt.set_group(g, (infos[g].last_layer ? ll_lr : lr) * infos[g].lr_mult, wd * infos[g].wd_mult);

    torch::Tensor global = b.global.to(device), local = b.local.defined() ? b.local.to(device) : torch::Tensor();
    const std::int64_t B2 = global.size(0);  // 2 x images
    const std::int64_t B = B2 / 2;
    auto mask_rng = random::training_rng(seed, kPurposeMasks, static_cast<std::uint64_t>(it), random::mix64(static_cast<std::uint64_t>(env.rank)));
    CollatedMasks masks = collate_masks(B2, grid, grid, mask_p, mask_ratio.first, mask_ratio.second, mask_rng);
    torch::Tensor mask_idx = masks.indices.to(device), mask_w = masks.weights.to(device);
    const std::int64_t n_masked = masks.count();
    torch::Tensor n_masked_all = torch::full({1}, static_cast<double>(n_masked), torch::kFloat64);
    if (world > 1) group->all_reduce_sum(n_masked_all);
    const auto n_masked_total = static_cast<std::int64_t>(n_masked_all.item<double>());

    // --- teacher ---
    torch::Tensor t_dino_probs, t_ibot_probs;
    {
      torch::NoGradGuard no_grad;
      model::AutocastGuard autocast(precision, device);
      model::VitOutput out = teacher.backbone->forward(global);
      // In crop order; dino_multicrop_loss pairs each student crop with the other crop's teacher.
      torch::Tensor cls = out.last_hidden_state.select(1, 0);
      torch::Tensor t_dino = teacher.dino_head->forward(cls).to(torch::kFloat32);
      torch::Tensor t_ibot;
      if (n_masked_total > 0 && n_masked > 0) {
        torch::Tensor patches = out.last_hidden_state.narrow(1, prefix, out.last_hidden_state.size(1) - prefix);
        torch::Tensor sel = patches.reshape({-1, patches.size(2)}).index_select(0, mask_idx);
        t_ibot = teacher.ibot_head->forward(sel).to(torch::kFloat32);
      } else {
        t_ibot = torch::empty({0, ibot_loss.center.size(-1)}, torch::TensorOptions().device(device).dtype(torch::kFloat32));
      }
      if (sinkhorn) {
        t_dino_probs = dino_loss.sinkhorn_knopp_teacher(t_dino, temp, 3, all_reduce, world);
        if (n_masked_total > 0) t_ibot_probs = ibot_loss.sinkhorn_knopp_teacher(t_ibot, temp, n_masked_total, 3, all_reduce);
      } else {
        t_dino_probs = dino_loss.softmax_center_teacher(t_dino, temp);
        dino_loss.update_center(t_dino, all_reduce, world);
        if (n_masked_total > 0) {
          t_ibot_probs = ibot_loss.softmax_center_teacher(t_ibot, temp);
          ibot_loss.update_center(t_ibot, all_reduce, world);
        }
      }
    }

    // --- student ---
    auto dp_rng = random::training_rng(seed, kPurposeDropPath, static_cast<std::uint64_t>(it), random::mix64(static_cast<std::uint64_t>(env.rank)));
    torch::Tensor loss, l_dino_local, l_dino_global, l_koleo, l_ibot;
    {
      model::AutocastGuard autocast(precision, device);
      model::VitForwardOptions go;
      go.masks = masks.masks;
      go.drop_path_scales = drop_path_scales(drop_rates, B2, dp_rng);
      go.checkpoint_blocks = checkpoint_blocks;
      model::VitOutput g = student.backbone->forward(global, go);
      torch::Tensor g_cls = g.last_hidden_state.select(1, 0);
      const torch::Tensor zero = torch::zeros({}, torch::TensorOptions().device(device).dtype(torch::kFloat32));
      torch::Tensor s_dino_g, s_dino_l;
      if (n_local > 0 && local.defined()) {
        model::VitForwardOptions lo2;
        lo2.drop_path_scales = drop_path_scales(drop_rates, local.size(0), dp_rng);
        lo2.checkpoint_blocks = go.checkpoint_blocks;
        model::VitOutput l = student.backbone->forward(local, lo2);
        // The DINO head once over the global and the local crops' CLS tokens, as DINOv2 concatenates
        // them: its weights (and the weight-normalised prototypes) are read, cast and differentiated
        // once per step instead of twice. Each row's logits are the same up to float rounding.
        torch::Tensor s_dino = student.dino_head->forward(torch::cat({g_cls, l.last_hidden_state.select(1, 0)}, 0))
                                   .to(torch::kFloat32);
        s_dino_g = s_dino.narrow(0, 0, B2);
        s_dino_l = s_dino.narrow(0, B2, s_dino.size(0) - B2);
      } else {
        s_dino_g = student.dino_head->forward(g_cls).to(torch::kFloat32);
      }
      const DinoMulticropLoss dl = dino_multicrop_loss(dino_loss, s_dino_g, s_dino_l, t_dino_probs, n_local);
      l_dino_local = dl.local;
      l_dino_global = dl.global;
      l_koleo = zero;
      if (koleo_w > 0) {
        auto parts = g_cls.to(torch::kFloat32).chunk(2, 0);
        l_koleo = koleo_w * (koleo_loss(parts[0]) + koleo_loss(parts[1]));
      }
      l_ibot = zero;
      if (n_masked > 0 && t_ibot_probs.defined()) {
        torch::Tensor patches = g.last_hidden_state.narrow(1, prefix, g.last_hidden_state.size(1) - prefix);
        torch::Tensor sel = patches.reshape({-1, patches.size(2)}).index_select(0, mask_idx);
        torch::Tensor s_ibot = student.ibot_head->forward(sel).to(torch::kFloat32);
        l_ibot = ibot_w * ibot_loss.forward_masked(s_ibot, t_ibot_probs, masks.masks.to(device), mask_w);
      }
      l_dino_local = dino_w * l_dino_local;
      l_dino_global = dino_w * l_dino_global;
      loss = l_dino_local + l_dino_global + l_koleo + l_ibot;
    }
    check_finite_loss(loss.item<double>(), "step " + std::to_string(it + 1));
    // Undefined, not zeroed (a pass less over every gradient); parameters the batch did not reach
    // get zeros below.
    opt.zero_grad(/*set_to_none=*/true);
    loss.backward();

    // Frozen prototypes: no gradient (the optimizer skips them) while the last layer's lr is 0. Every
    // other parameter has a gradient, zero where this batch did not reach it (an iBOT head without
    // masked patches on this rank), as DINOv2's flat sharded parameters have: the same update on every
    // rank and for every world size.
    const bool frozen = it < sched.freeze_steps;
    for (std::size_t i = 0; i < sp.names.size(); ++i) {
      if (frozen && is_last_layer[i])
        sp.tensors[i].mutable_grad() = torch::Tensor();
      else if (!sp.tensors[i].grad().defined())
        sp.tensors[i].mutable_grad() = torch::zeros_like(sp.tensors[i]);
    }
    if (world > 1) {
      std::vector<torch::Tensor> grads;
      for (auto& p : sp.tensors)
        if (p.grad().defined()) grads.push_back(p.grad());
      group->all_reduce_sum(grads);
      for (auto& g2 : grads) g2.div_(static_cast<double>(world));
    }
    const double n1 = clip_module(backbone_params, clip), n2 = clip_module(dino_head_params, clip),
                 n3 = clip_module(ibot_head_params, clip);
    const double grad_norm = std::sqrt(n1 * n1 + n2 * n2 + n3 * n3);
    opt.step();
    {
      torch::NoGradGuard no_grad;
      for (std::size_t i = 0; i < tp.tensors.size(); ++i) tp.tensors[i].mul_(mom).add_(sp.tensors[i].detach(), 1.0 - mom);
    }
    ++step;

    // --- log, stop requests, checkpoints ---
    torch::Tensor terms = torch::stack({loss.detach(), l_dino_local.detach(), l_dino_global.detach(), l_koleo.detach(),
                                        l_ibot.detach()})
                              .to(torch::kCPU, torch::kFloat64);
    torch::Tensor flags = torch::full({1}, static_cast<double>(cli::stop_requested()), torch::kFloat64);
    if (world > 1) {
      group->all_reduce_sum(terms);
      terms.div_(static_cast<double>(world));
      group->all_reduce_sum(flags);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (main_rank) {
      const auto* v = terms.data_ptr<double>();
      std::string row = std::to_string(step) + "\t" + fmt(static_cast<double>(it) / static_cast<double>(el), 6);
      for (int k = 0; k < 5; ++k) row += "\t" + fmt(v[k], 7);
      row += "\t" + fmt(lr) + "\t" + fmt(ll_lr) + "\t" + fmt(wd) + "\t" + fmt(mom, 8) + "\t" + fmt(temp) + "\t" +
             fmt(grad_norm) + "\t" + fmt(static_cast<double>(B * world) / seconds, 4) + "\t" + fmt(peak_rss_mib(), 6) +
             "\t" + fmt(seconds, 4) + "\n";
      std::fputs(row.c_str(), log);
      std::fflush(log);
      if (progress) progress->add(1);
      log::debug("step " + std::to_string(step) + "/" + std::to_string(total) + ": loss " + fmt(v[0], 6) + " (dino local " +
                fmt(v[1], 5) + ", global " + fmt(v[2], 5) + ", koleo " + fmt(v[3], 5) + ", ibot " + fmt(v[4], 5) + "), lr " +
                fmt(lr, 4));
    }
    const bool stop = flags.item<double>() != 0;
    if (stop || step == end || step % period == 0) save(step);
    if (stop) {
      result.stop_signal = cli::stop_requested() ? cli::stop_requested() : SIGTERM;
      break;
    }
  }
  if (progress) progress->finish();
  if (result.data_ended && main_rank) save(step);
  result.step = step;
  return result;
}

std::string export_run(const std::string& run_or_checkpoint, const std::string& out_folder, bool student) {
  std::string folder = run_or_checkpoint;
  if (!is_checkpoint(folder, kPretrainCheckpointFormat)) {
    folder = latest_run_checkpoint(run_or_checkpoint);
    if (folder.empty()) throw Error(run_or_checkpoint + ": no cx-pretrain checkpoint in this run");
  }
  const Checkpoint c = read_checkpoint(folder, kPretrainCheckpointFormat);
  const model::VitConfig config = model::parse_vit_config(c.state.at("encoder_config"), folder + "/state.json");
  const std::string which = student ? "student" : "teacher";
  const model::NamedTensors& all = c.group(which);
  const model::NamedTensors backbone = strip(all, "backbone.");
  model::NamedTensors heads;
  for (const auto& [k, v] : all)
    if (!util::starts_with(k, "backbone.")) heads.emplace_back(k, v);
  cli::write_folder_atomic(out_folder, [&](const std::string& temp) {
    model::save_hf_folder(temp, config, backbone, torch::kFloat32);
    cli::write_file_atomic(temp + "/preprocessor_config.json", model::preprocessor_config_for(config).dump(2) + "\n");
    write_tensors(temp + "/ssl_heads.safetensors", heads);
  });
  return folder;
}

std::string run_info(const std::string& run) {
  const std::string saved = run + "/recipe.yaml";
  std::ifstream in(saved);
  if (!in) throw Error(saved + ": cannot read (is " + run + " a cx-pretrain run?)");
  std::stringstream text;
  text << in.rdbuf();
  const Recipe r = parse_recipe(text.str(), saved);
  std::ostringstream out;
  out << "# recipe (" << saved << ")\n" << recipe_to_yaml(r);
  const std::string ckpt = latest_run_checkpoint(run);
  int world = 1;
  std::int64_t step = 0;
  if (!ckpt.empty()) {
    const Checkpoint c = read_checkpoint(ckpt, kPretrainCheckpointFormat);
    world = c.signature.value("world_size", 1);
    step = c.step;
  }
  const std::int64_t el = r.integer("train.OFFICIAL_EPOCH_LENGTH");
  const std::int64_t total = r.integer("optim.epochs") * el;
  const model::VitConfig vc = recipe_vit_config(r);
  out << "# derived\n";
  out << "world_size: " << world << "\n";
  out << "lr: " << fmt(resolved_lr(r, world), 8) << "\n";
  out << "total_steps: " << total << "\n";
  out << "images_per_step: " << r.integer("train.batch_size_per_gpu") * world << "\n";
  out << "encoder: " << vc.model_type << " " << vc.hidden_size << " wide, " << vc.num_hidden_layers << " blocks, "
      << vc.num_attention_heads << " heads, patch " << vc.patch_size << ", " << vc.num_register_tokens << " registers\n";
  out << "# progress\n";
  out << "step: " << step << "\n";
  out << "checkpoint: " << (ckpt.empty() ? "none" : ckpt) << "\n";
  return out.str();
}

}  // namespace cx::train
