// cx-pretrain's recipe reader (train/recipe.cpp, in cx_core): a YAML document overlaid on DINOv2's
// defaults, validated, written back as YAML and read again (the round trip must give the same tree),
// and the first line of the input tried as a KEY=VALUE override.
#include "common.hpp"
#include "cx/train/recipe.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  cx::fuzz::run([&] {
    cx::train::Recipe r = cx::train::parse_recipe(text, "recipe.yaml");
    const std::string line = text.substr(0, text.find('\n'));
    try {
      cx::train::apply_override(r, line);
    } catch (const cx::UsageError&) {
    }
    try {
      cx::train::validate_recipe(r);
    } catch (const cx::Error&) {
    }
    const cx::train::Recipe back = cx::train::parse_recipe(cx::train::recipe_to_yaml(r), "round-trip");
    if (back.tree != r.tree) {
      CX_FUZZ_REPORT("the YAML round trip changed the recipe:\n%s\n", cx::train::recipe_to_yaml(r).c_str());
      std::abort();
    }
  });
  return 0;
}
