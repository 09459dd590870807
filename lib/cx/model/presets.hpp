#pragma once
// Named encoder shapes for making new models (cx-model init, benchmarks, tests):
//   tiny    hidden 64, 4 layers, 4 heads, 4 registers, patch 14, 112 x 112 (phantom demos, tests)
//   small   ViT-S/14 with 4 registers at 518 (CXformer-small, dinov2-with-registers-small)
//   base    ViT-B/14 with 4 registers at 518 (CXformer-base, dinov2-with-registers-base)
// and the preprocessor_config.json that goes with them (BitImageProcessor: shortest edge and
// crop at the model's image size, bicubic, ImageNet mean and std).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cx/model/config.hpp"

namespace cx::model {

const std::vector<std::string>& preset_names();
VitConfig preset_config(const std::string& name);  // cx::UsageError for an unknown name
nlohmann::json preprocessor_config_for(const VitConfig& config);

}  // namespace cx::model
