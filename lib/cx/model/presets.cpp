#include "cx/model/presets.hpp"

#include "cx/cli/error.hpp"

namespace cx::model {

const std::vector<std::string>& preset_names() {
  static const std::vector<std::string> names = {"tiny", "small", "base"};
  return names;
}

VitConfig preset_config(const std::string& name) {
  VitConfig c = vit_small_registers_config();
  if (name == "small") return c;
  if (name == "base") {
    c.hidden_size = 768;
    c.num_attention_heads = 12;
    return c;
  }
  if (name == "tiny") {
    c.hidden_size = 64;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 4;
    c.image_size = 112;
    return c;
  }
  throw UsageError("unknown preset '" + name + "' (tiny, small, base)");
}

nlohmann::json preprocessor_config_for(const VitConfig& config) {
  return {{"image_processor_type", "BitImageProcessor"},
          {"do_resize", true},
          {"size", {{"shortest_edge", config.image_size}}},
          {"resample", 3},
          {"do_center_crop", true},
          {"crop_size", {{"height", config.image_size}, {"width", config.image_size}}},
          {"do_rescale", true},
          {"rescale_factor", 1.0 / 255.0},
          {"do_normalize", true},
          {"image_mean", {0.485, 0.456, 0.406}},
          {"image_std", {0.229, 0.224, 0.225}},
          {"do_convert_rgb", true}};
}

}  // namespace cx::model
