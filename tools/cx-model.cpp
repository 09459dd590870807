// cx-model: make and inspect encoder folders (Hugging Face layout). See man/cx-model.1.
#include <cstdio>
#include <filesystem>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/model_dir.hpp"
#include "cx/model/presets.hpp"

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-model", "Make and inspect ViT encoder folders (Hugging Face layout)");
  auto& app = tool.app();
  app.require_subcommand(1);

  auto* init = app.add_subcommand("init", "Write a new encoder folder with seeded random weights");
  std::string preset = "tiny", config_path, out_dir, dtype = "f32";
  init->add_option("folder", out_dir, "The folder to write (config.json, model.safetensors, preprocessor_config.json)")->required();
  init->add_option("--preset", preset, "tiny, small (ViT-S/14, 4 registers, 518) or base (ViT-B/14)")->capture_default_str();
  init->add_option("--config", config_path, "A config.json to take the shape from instead of a preset");
  init->add_option("--dtype", dtype, "Weight precision on disk")->check(CLI::IsMember({"f32", "f16", "bf16"}))->capture_default_str();
  tool.add_seed_option(0, init);

  auto* info = app.add_subcommand("info", "Print a model folder's shape, parameter count and weight hash as JSON");
  std::string model;
  info->add_option("model", model, "A model folder or name (as cx-embed --model)")->required();

  auto* fwd = app.add_subcommand("forward", "Run an encoder on pixel values from a .npy file; write last_hidden_state as .npy");
  std::string fwd_model, fwd_pixels, fwd_out;
  fwd->add_option("--model", fwd_model, "A model folder or name (as cx-embed --model)")->required();
  fwd->add_option("--pixel-values", fwd_pixels, "float32 .npy of shape [B, C, H, W], already normalised")->required();
  fwd->add_option("-o,--output", fwd_out, "The .npy to write: last_hidden_state [B, 1 + registers + patches, hidden]")->required();

  return tool.run(argc, argv, [&]() -> int {
    if (fwd->parsed()) {
      cx::model::LoadedVit loaded = cx::model::load_hf_vit(cx::model::resolve_model_dir(fwd_model));
      cx::io::NdArray x = cx::io::read_npy(cx::io::read_file_bytes(fwd_pixels), fwd_pixels);
      if (x.dtype != cx::io::DType::f32 || x.shape.size() != 4)
        throw cx::Error(fwd_pixels + ": expected float32 [B, C, H, W]");
      torch::Tensor pixels = torch::from_blob(x.as<float>(), x.shape, torch::kFloat32).clone();
      torch::NoGradGuard no_grad;
      torch::Tensor y = loaded.model->forward(pixels).last_hidden_state.contiguous().to(torch::kCPU, torch::kFloat32);
      std::vector<float> v(y.data_ptr<float>(), y.data_ptr<float>() + y.numel());
      cx::cli::write_file_atomic(fwd_out, cx::io::write_npy(cx::io::NdArray::from_floats(v, y.sizes().vec())));
      return cx::kExitOk;
    }
    if (init->parsed()) {
      cx::model::VitConfig config =
          config_path.empty() ? cx::model::preset_config(preset) : cx::model::read_vit_config(config_path);
      auto weights = cx::model::random_vit_weights(config, tool.common().seed);
      torch::Dtype td = dtype == "f16" ? torch::kHalf : dtype == "bf16" ? torch::kBFloat16 : torch::kFloat32;
      auto fill = [&](const std::string& dir) {
        cx::model::save_hf_folder(dir, config, weights, td);
        cx::cli::write_file_atomic(dir + "/preprocessor_config.json",
                                   cx::model::preprocessor_config_for(config).dump(2) + "\n");
      };
      // A new folder appears whole or not at all (a full disk leaves nothing behind); into an
      // existing folder the three files are written one by one, each atomically, beside the rest.
      std::error_code ec;
      if (std::filesystem::exists(out_dir, ec)) fill(out_dir);
      else cx::cli::write_folder_atomic(out_dir, fill);
      cx::log::info("wrote " + out_dir + " (" + config.model_type + ", hidden " + std::to_string(config.hidden_size) +
                    ", " + std::to_string(config.num_hidden_layers) + " layers, seed " + std::to_string(tool.common().seed) + ")");
      return cx::kExitOk;
    }
    std::string folder = cx::model::resolve_model_dir(model);
    cx::model::LoadedVit loaded = cx::model::load_hf_vit(folder);
    std::int64_t params = 0;
    for (const auto& p : loaded.model->parameters()) params += p.numel();
    const auto& c = loaded.config;
    nlohmann::json j = {{"folder", folder},
                        {"id", loaded.model_id},
                        {"sha256", loaded.weights_sha256},
                        {"model_type", c.model_type},
                        {"hidden_size", c.hidden_size},
                        {"num_hidden_layers", c.num_hidden_layers},
                        {"num_attention_heads", c.num_attention_heads},
                        {"num_register_tokens", c.num_register_tokens},
                        {"patch_size", c.patch_size},
                        {"image_size", c.image_size},
                        {"use_swiglu_ffn", c.use_swiglu_ffn},
                        {"parameters", params}};
    std::string s = j.dump(2) + "\n";
    std::fwrite(s.data(), 1, s.size(), stdout);
    return cx::kExitOk;
  });
}
