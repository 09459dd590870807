#pragma once
// cx-pretrain's recipes: DINOv2's configuration (dinov2/configs/ssl_default_config.yaml) with its keys and
// layout (student.*, teacher.*, dino.*, ibot.*, train.*, optim.*, crops.*), read from YAML with yaml-cpp.
// A recipe is the built-in defaults (DINOv2's, plus the few keys cx adds, listed by `cx-pretrain info`)
// overlaid by a preset or file, then by KEY=VALUE overrides (the value is YAML: 2e-4, true, [0.3, 1.0]).
// Every key has the type of its default (integer, number, boolean, text, or a [min, max] pair); a value of
// another type, a key that is not in the defaults, or a section given a value is refused by name.
// validate_recipe then checks ranges and choices. Torch-free (cx_core), so tools and the fuzzer read
// recipes without LibTorch.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cx::train {

struct Recipe {
  nlohmann::ordered_json tree;  // sections -> keys -> values, every key of the defaults present
  std::string source;   // "tiny", "recipe.yaml", ...: named in errors

  double number(const std::string& key) const;       // "optim.base_lr"
  std::int64_t integer(const std::string& key) const;
  bool flag(const std::string& key) const;
  std::string text(const std::string& key) const;
  std::pair<double, double> range(const std::string& key) const;
  const nlohmann::ordered_json& at(const std::string& key) const;  // throws cx::Error naming the key
};

// DINOv2's defaults with cx's additions.
Recipe default_recipe();

// The defaults overlaid by a YAML document; `where` names it in errors ("recipe.yaml: line 3: ...").
Recipe parse_recipe(const std::string& yaml_text, const std::string& where);

// A preset of share/cx/recipes/ (name without .yaml) or a YAML file. A name that is neither is a usage
// error listing the presets.
Recipe load_recipe(const std::string& name_or_file);
std::vector<std::string> recipe_presets();

// "section.key=value"; throws cx::UsageError naming the key.
void apply_override(Recipe& recipe, const std::string& assignment);

// Ranges and choices (batch > 0, temperatures > 0, scale pairs inside (0, 1] and ordered, ...): throws
// cx::Error naming the recipe and the key.
void validate_recipe(const Recipe& recipe);

// A resolved recipe saved by an earlier cx (a checkpoint's signature), with the keys added since filled
// with their defaults, which are what that cx did: so a run saved before them resumes. Keys it has keep
// their values; anything that is not a section of keys is returned as it is.
nlohmann::json recipe_with_defaults(const nlohmann::json& saved);

// The recipe as YAML, every key, in the defaults' order (what `info` prints and RUN/recipe.yaml holds);
// parse_recipe of it gives the same tree.
std::string recipe_to_yaml(const Recipe& recipe);

}  // namespace cx::train
