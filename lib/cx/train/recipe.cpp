#include "cx/train/recipe.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "cx/cli/error.hpp"
#include "cx/cli/paths.hpp"
#include "cx/util/strings.hpp"

namespace cx::train {
namespace {

using ojson = nlohmann::ordered_json;

// DINOv2's ssl_default_config.yaml (the keys cx implements), then cx's own keys, each marked "cx:".
const char* const kDefaults = R"(
student:
  arch: vit_large          # vit_tiny (192/12/3), vit_small (384/12/6), vit_base (768/12/12), vit_large (1024/24/16), vit_giant2 (1536/40/24)
  patch_size: 16
  drop_path_rate: 0.3
  drop_path_uniform: true
  layerscale: 1.0e-05
  ffn_layer: mlp           # mlp | swiglufused
  block_chunks: 0          # FSDP's chunking: no numerical effect, accepted and ignored
  qkv_bias: true
  proj_bias: true
  ffn_bias: true
  num_register_tokens: 0
  pretrained_weights: ''   # a Hugging Face folder (as --init)
  embed_dim: 0             # cx: width, 0 = the arch's
  depth: 0                 # cx: blocks, 0 = the arch's
  num_heads: 0             # cx: heads, 0 = the arch's
teacher:
  momentum_teacher: 0.992
  final_momentum_teacher: 1.0
  warmup_teacher_temp: 0.04
  teacher_temp: 0.07
  warmup_teacher_temp_epochs: 30
dino:
  loss_weight: 1.0
  head_n_prototypes: 65536
  head_bottleneck_dim: 256
  head_nlayers: 3
  head_hidden_dim: 2048
  koleo_loss_weight: 0.1
  student_temp: 0.1        # cx: DINOv2's fixed value
  center_momentum: 0.9     # cx: DINOv2's fixed value
ibot:
  loss_weight: 1.0
  mask_sample_probability: 0.5
  mask_ratio_min_max: [0.1, 0.5]
  separate_head: false
  head_n_prototypes: 65536
  head_bottleneck_dim: 256
  head_nlayers: 3
  head_hidden_dim: 2048
  student_temp: 0.1        # cx
  center_momentum: 0.9     # cx
train:
  batch_size_per_gpu: 64
  seed: 0
  num_workers: 0           # data threads; 0 = --threads
  OFFICIAL_EPOCH_LENGTH: 1250
  centering: centering     # centering | sinkhorn_knopp
  shuffle_buffer: 1024     # cx: records held for shuffling a streamed data set
  checkpoint_period: 0     # cx: steps between checkpoints, 0 = one epoch
  keep_checkpoints: 3      # cx: the latest N kept
  precision: auto          # cx: fp32 | bf16 | fp16 | auto (bf16 on CUDA and on CPUs with bf16 units, else fp32)
  activation_checkpointing: false  # cx: recompute each block's activations in the backward pass
optim:
  epochs: 100
  weight_decay: 0.04
  weight_decay_end: 0.4
  base_lr: 0.004           # for a batch of 1024 under sqrt_wrt_1024
  lr: 0.0                  # 0: set from base_lr by the scaling rule; else used as is
  warmup_epochs: 10
  min_lr: 1.0e-06
  clip_grad: 3.0
  freeze_last_layer_epochs: 1
  scaling_rule: sqrt_wrt_1024  # sqrt_wrt_1024 | none
  patch_embed_lr_mult: 0.2
  layerwise_decay: 0.9
  adamw_beta1: 0.9
  adamw_beta2: 0.999
crops:
  global_crops_scale: [0.32, 1.0]
  local_crops_number: 8
  local_crops_scale: [0.05, 0.32]
  global_crops_size: 224
  local_crops_size: 96
  global_affine: false     # cx: CXformer's random affine on the global crops
  hist_equalize: false     # cx: CXformer's histogram equalisation of each image
  color_jitter_prob: 0.8   # cx: brightness/contrast jitter (0.4, 0.4) of each crop, DINOv2's probability
  gaussian_blur: true      # cx: DINOv2's blur (kernel 9, sigma 0.1-2; as its code: global crop 2 p 0.9, locals 0.5)
  solarize_prob: 0.2       # cx: solarisation of global crop 2, DINOv2's probability
)";

std::string line_of(const YAML::Mark& mark) {
  return mark.line >= 0 ? "line " + std::to_string(mark.line + 1) + ": " : "";
}

// Valid UTF-8 without control characters: names and paths, which YAML writes back as they were.
bool plain_text(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return false;
    int extra = c < 0x80 ? 0 : (c >> 5) == 0x6 ? 1 : (c >> 4) == 0xE ? 2 : (c >> 3) == 0x1E ? 3 : -1;
    if (extra < 0 || (c >= 0x80 && c < 0xC2) || c > 0xF4 || i + static_cast<std::size_t>(extra) >= s.size() + (extra ? 0 : 1))
      return false;
    for (int k = 1; k <= extra; ++k)
      if ((static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0xC0) != 0x80) return false;
    const unsigned char c1 = extra ? static_cast<unsigned char>(s[i + 1]) : 0;
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
      return false;  // overlong forms, surrogates, beyond U+10FFFF
    i += static_cast<std::size_t>(extra) + 1;
  }
  return true;
}

// The YAML scalar `node` as a value of the default's type, or a cx::Error naming `where` and `key`.
ojson typed_value(const YAML::Node& node, const ojson& like, const std::string& key, const std::string& where) {
  auto bad = [&](const std::string& what) {
    // An override (where == "") names only the key: its text has no lines.
    return Error(where.empty() ? key + ": " + what : where + ": " + line_of(node.Mark()) + key + ": " + what);
  };
  if (like.is_array()) {
    if (!node.IsSequence() || node.size() != like.size())
      throw bad("expected a list of " + std::to_string(like.size()) + " numbers");
    ojson out = ojson::array();
    for (std::size_t i = 0; i < node.size(); ++i) out.push_back(typed_value(node[i], like[i], key, where));
    return out;
  }
  if (!node.IsScalar()) throw bad(node.IsNull() ? "no value" : "expected a single value, not a list or section");
  const std::string s = node.Scalar();
  if (like.is_boolean()) {
    const std::string l = util::lower(s);
    if (l == "true" || l == "yes" || l == "on") return true;
    if (l == "false" || l == "no" || l == "off") return false;
    throw bad("expected true or false, not \"" + s + "\"");
  }
  if (like.is_string()) {
    if (!plain_text(s)) throw bad("expected plain text (UTF-8 without control characters)");
    return s;
  }
  // Numbers: the whole text must parse, and be finite.
  errno = 0;
  char* end = nullptr;
  if (like.is_number_integer()) {
    const long long v = std::strtoll(s.c_str(), &end, 10);
    if (!s.empty() && end && *end == '\0' && errno == 0) return static_cast<std::int64_t>(v);
    // 1e3 and 2.0 are integers too when they are whole and in range.
    const double d = std::strtod(s.c_str(), &end);
    if (!s.empty() && end && *end == '\0' && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e15)
      return static_cast<std::int64_t>(d);
    throw bad("expected an integer, not \"" + s + "\"");
  }
  const double d = std::strtod(s.c_str(), &end);
  if (s.empty() || !end || *end != '\0' || !std::isfinite(d)) throw bad("expected a finite number, not \"" + s + "\"");
  return d;
}

// Copies `node` (a mapping) onto `tree` (the same level of the defaults).
void overlay(ojson& tree, const YAML::Node& node, const std::string& prefix, const std::string& where) {
  if (!node.IsMap())
    throw Error(where + ": " + line_of(node.Mark()) + (prefix.empty() ? "the recipe" : prefix) + ": expected a section of keys");
  for (const auto& item : node) {
    if (!item.first.IsScalar()) throw Error(where + ": " + line_of(item.first.Mark()) + "a key must be plain text");
    const std::string name = item.first.Scalar();
    const std::string key = prefix.empty() ? name : prefix + "." + name;
    auto it = tree.find(name);
    if (it == tree.end()) throw Error(where + ": " + line_of(item.first.Mark()) + "unknown key " + key);
    if (it->is_object()) {
      if (item.second.IsNull()) continue;  // an empty section
      overlay(*it, item.second, key, where);
    } else {
      *it = typed_value(item.second, *it, key, where);
    }
  }
}

YAML::Node load_yaml(const std::string& text, const std::string& where) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(where + ": " + line_of(e.mark) + "not valid YAML: " + e.msg);
  }
}

const ojson* find_key(const ojson& tree, const std::string& key) {
  const ojson* node = &tree;
  for (const auto& part : util::split_exact(key, '.')) {
    if (!node->is_object()) return nullptr;
    auto it = node->find(part);
    if (it == node->end()) return nullptr;
    node = &*it;
  }
  return node;
}

ojson* find_key(ojson& tree, const std::string& key) {
  return const_cast<ojson*>(find_key(static_cast<const ojson&>(tree), key));
}

void emit(YAML::Emitter& out, const ojson& v) {
  if (v.is_object()) {
    out << YAML::BeginMap;
    for (auto it = v.begin(); it != v.end(); ++it) {
      out << YAML::Key << it.key() << YAML::Value;
      emit(out, it.value());
    }
    out << YAML::EndMap;
  } else if (v.is_array()) {
    out << YAML::Flow << YAML::BeginSeq;
    for (const auto& x : v) emit(out, x);
    out << YAML::EndSeq;
  } else if (v.is_boolean()) {
    out << (v.get<bool>() ? "true" : "false");
  } else if (v.is_number_integer()) {
    out << v.get<std::int64_t>();
  } else if (v.is_number()) {
    out << v.dump();  // the shortest text that reads back to the same double ("0.0003", "1e-06", "1.0")
  } else {
    const std::string s = v.get<std::string>();
    if (s.empty())
      out << YAML::SingleQuoted << "";
    else
      out << s;
  }
}

}  // namespace

const ojson& Recipe::at(const std::string& key) const {
  const ojson* v = find_key(tree, key);
  if (!v) throw Error(source + ": the recipe has no key " + key);
  return *v;
}
double Recipe::number(const std::string& key) const { return at(key).get<double>(); }
std::int64_t Recipe::integer(const std::string& key) const { return at(key).get<std::int64_t>(); }
bool Recipe::flag(const std::string& key) const { return at(key).get<bool>(); }
std::string Recipe::text(const std::string& key) const { return at(key).get<std::string>(); }
std::pair<double, double> Recipe::range(const std::string& key) const {
  const ojson& v = at(key);
  return {v.at(0).get<double>(), v.at(1).get<double>()};
}

Recipe default_recipe() {
  static const ojson tree = [] {
    ojson t = ojson::object();
    // The defaults' own types come from their text: 1.0 is a number, 1 an integer.
    std::function<ojson(const YAML::Node&)> convert = [&](const YAML::Node& n) -> ojson {
      if (n.IsMap()) {
        ojson o = ojson::object();
        for (const auto& item : n) o[item.first.Scalar()] = convert(item.second);
        return o;
      }
      if (n.IsSequence()) {
        ojson a = ojson::array();
        for (const auto& x : n) a.push_back(convert(x));
        return a;
      }
      const std::string s = n.Scalar();
      if (n.Tag() == "!" || s.empty()) return s;  // quoted
      if (s == "true" || s == "false") return s == "true";
      char* end = nullptr;
      const long long i = std::strtoll(s.c_str(), &end, 10);
      if (*end == '\0') return static_cast<std::int64_t>(i);
      const double d = std::strtod(s.c_str(), &end);
      if (*end == '\0') return d;
      return s;
    };
    return convert(YAML::Load(kDefaults));
  }();
  return Recipe{tree, "defaults"};
}

Recipe parse_recipe(const std::string& yaml_text, const std::string& where) {
  Recipe r = default_recipe();
  r.source = where;
  YAML::Node doc = load_yaml(yaml_text, where);
  if (doc.IsNull()) return r;  // an empty file: the defaults
  overlay(r.tree, doc, "", where);
  return r;
}

std::vector<std::string> recipe_presets() {
  std::vector<std::string> names;
  std::error_code ec;
  const std::string dir = share_dir() + "/recipes";
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    if (util::ends_with(f, ".yaml")) names.push_back(f.substr(0, f.size() - 5));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Recipe load_recipe(const std::string& name_or_file) {
  std::string path = name_or_file;
  std::string where = name_or_file;
  const bool looks_like_file = name_or_file.find('/') != std::string::npos || util::ends_with(name_or_file, ".yaml") ||
                               util::ends_with(name_or_file, ".yml");
  if (!looks_like_file) {
    path = share_dir() + "/recipes/" + name_or_file + ".yaml";
    if (!std::filesystem::exists(path)) {
      if (std::filesystem::exists(name_or_file)) {
        path = name_or_file;
      } else {
        throw UsageError("--recipe " + name_or_file + ": no such preset (" + util::join(recipe_presets(), ", ") +
                         ") or file");
      }
    }
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(where + ": cannot read the recipe");
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (1u << 20)) throw Error(where + ": a recipe of more than 1 MiB is not a recipe");
  return parse_recipe(text.str(), where);
}

void apply_override(Recipe& recipe, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) throw UsageError(assignment + ": expected KEY=VALUE (e.g. optim.base_lr=2e-4)");
  const std::string key = util::trim(assignment.substr(0, eq));
  const std::string value = assignment.substr(eq + 1);
  ojson* slot = find_key(recipe.tree, key);
  if (!slot) throw UsageError(assignment + ": unknown key " + key);
  if (slot->is_object()) throw UsageError(assignment + ": " + key + " is a section; set one of its keys");
  YAML::Node node;
  try {
    node = YAML::Load(value);
  } catch (const YAML::Exception& e) {
    throw UsageError(assignment + ": the value is not valid YAML: " + e.msg);
  }
  try {
    *slot = typed_value(node, *slot, key, "");
  } catch (const Error& e) {
    throw UsageError("override " + std::string(e.what()));
  }
}

void validate_recipe(const Recipe& r) {
  auto num = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return std::string(buf);
  };
  auto fail = [&](const std::string& key, const std::string& what) { return Error(r.source + ": " + key + ": " + what); };
  auto positive = [&](const std::string& key) {
    if (!(r.number(key) > 0)) throw fail(key, "must be > 0");
  };
  auto at_least = [&](const std::string& key, std::int64_t lo, std::int64_t hi) {
    const std::int64_t v = r.integer(key);
    if (v < lo || v > hi) throw fail(key, std::to_string(v) + " is outside " + std::to_string(lo) + "-" + std::to_string(hi));
  };
  auto within = [&](const std::string& key, double lo, double hi) {
    const double v = r.number(key);
    if (!(v >= lo && v <= hi)) throw fail(key, num(v) + " is outside [" + num(lo) + ", " +
                                                   num(hi) + "]");
  };
  auto choice = [&](const std::string& key, const std::set<std::string>& ok) {
    if (!ok.count(r.text(key))) {
      std::vector<std::string> names(ok.begin(), ok.end());
      throw fail(key, "\"" + r.text(key) + "\" is not one of " + util::join(names, ", "));
    }
  };
  choice("student.arch", {"vit_tiny", "vit_small", "vit_base", "vit_large", "vit_giant2"});
  choice("student.ffn_layer", {"mlp", "swiglufused", "swiglu"});
  choice("train.centering", {"centering", "sinkhorn_knopp"});
  choice("train.precision", {"auto", "fp32", "bf16", "fp16"});
  choice("optim.scaling_rule", {"sqrt_wrt_1024", "none"});
  at_least("student.patch_size", 1, 1024);
  at_least("student.num_register_tokens", 0, 1024);
  at_least("student.embed_dim", 0, 16384);
  at_least("student.depth", 0, 512);
  at_least("student.num_heads", 0, 16384);
  at_least("student.block_chunks", 0, 1024);
  within("student.drop_path_rate", 0, 0.99);
  if (!r.flag("student.proj_bias") || !r.flag("student.ffn_bias"))
    throw fail("student.proj_bias", "a Dinov2WithRegistersModel has biases on the projection and the MLP; they must be true");
  for (const char* s : {"dino", "ibot"}) {
    const std::string p = s;
    at_least(p + ".head_n_prototypes", 1, 1 << 20);
    at_least(p + ".head_bottleneck_dim", 1, 16384);
    at_least(p + ".head_nlayers", 1, 16);
    at_least(p + ".head_hidden_dim", 1, 65536);
    within(p + ".loss_weight", 0, 1e6);
    positive(p + ".student_temp");
    within(p + ".center_momentum", 0, 1);
  }
  within("dino.koleo_loss_weight", 0, 1e6);
  within("ibot.mask_sample_probability", 0, 1);
  within("crops.color_jitter_prob", 0, 1);
  within("crops.solarize_prob", 0, 1);
  const auto ratio = r.range("ibot.mask_ratio_min_max");
  if (!(ratio.first >= 0 && ratio.first <= ratio.second && ratio.second <= 1))
    throw fail("ibot.mask_ratio_min_max", "expected 0 <= min <= max <= 1");
  within("teacher.momentum_teacher", 0, 1);
  within("teacher.final_momentum_teacher", 0, 1);
  positive("teacher.warmup_teacher_temp");
  positive("teacher.teacher_temp");
  at_least("teacher.warmup_teacher_temp_epochs", 0, 1 << 30);
  at_least("train.batch_size_per_gpu", 1, 1 << 20);
  at_least("train.num_workers", 0, 1024);
  at_least("train.OFFICIAL_EPOCH_LENGTH", 1, std::int64_t(1) << 40);
  at_least("train.shuffle_buffer", 1, std::int64_t(1) << 24);
  at_least("train.checkpoint_period", 0, std::int64_t(1) << 40);
  at_least("train.keep_checkpoints", 1, 1 << 20);
  at_least("optim.epochs", 1, 1 << 20);
  at_least("optim.warmup_epochs", 0, 1 << 20);
  at_least("optim.freeze_last_layer_epochs", 0, 1 << 20);
  if (r.integer("optim.warmup_epochs") > r.integer("optim.epochs"))
    throw fail("optim.warmup_epochs", "is longer than optim.epochs");
  if (r.integer("teacher.warmup_teacher_temp_epochs") > r.integer("optim.epochs"))
    throw fail("teacher.warmup_teacher_temp_epochs", "is longer than optim.epochs");
  within("optim.weight_decay", 0, 1e3);
  within("optim.weight_decay_end", 0, 1e3);
  positive("optim.base_lr");
  within("optim.lr", 0, 1e3);
  within("optim.min_lr", 0, 1e3);
  within("optim.clip_grad", 0, 1e9);
  within("optim.patch_embed_lr_mult", 0, 1e3);
  within("optim.layerwise_decay", 0, 1);
  within("optim.adamw_beta1", 0, 0.999999);
  within("optim.adamw_beta2", 0, 0.999999999);
  for (const char* k : {"crops.global_crops_scale", "crops.local_crops_scale"}) {
    const auto s = r.range(k);
    if (!(s.first > 0 && s.first <= s.second && s.second <= 1)) throw fail(k, "expected 0 < min <= max <= 1");
  }
  at_least("crops.local_crops_number", 0, 64);
  at_least("crops.global_crops_size", 1, 16384);
  at_least("crops.local_crops_size", 1, 16384);
}

nlohmann::json recipe_with_defaults(const nlohmann::json& saved) {
  if (!saved.is_object()) return saved;
  nlohmann::json out = nlohmann::json::parse(default_recipe().tree.dump());
  for (auto section = saved.begin(); section != saved.end(); ++section) {
    if (section.value().is_object() && out.contains(section.key()) && out[section.key()].is_object()) {
      for (auto key = section.value().begin(); key != section.value().end(); ++key)
        out[section.key()][key.key()] = key.value();
    } else {
      out[section.key()] = section.value();
    }
  }
  return out;
}

std::string recipe_to_yaml(const Recipe& recipe) {
  YAML::Emitter out;
  emit(out, recipe.tree);
  return std::string(out.c_str()) + "\n";
}

}  // namespace cx::train
