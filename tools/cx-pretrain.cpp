// cx-pretrain: DINOv2/CXformer self-supervised pretraining of a ViT with registers. See man/cx-pretrain.1.
#include <cstdio>
#include <csignal>
#include <filesystem>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/tool.hpp"
#include "cx/model/runtime.hpp"
#include "cx/train/distributed.hpp"
#include "cx/train/pretrain.hpp"
#include "cx/train/recipe.hpp"

namespace {

// KEY=VALUE (a dotted recipe key before "="), else a stream.
bool is_assignment(const std::string& arg) {
  const auto eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  const std::string key = arg.substr(0, eq);
  return key.find('.') != std::string::npos && key.find('/') == std::string::npos;
}

}  // namespace

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-pretrain", "Self-supervised pretraining of a ViT encoder (DINOv2 / CXformer recipe)");
  auto& app = tool.app();
  app.require_subcommand(1);

  auto* train = app.add_subcommand("train", "Pretrain (or continue pretraining) an encoder on record streams");
  std::string recipe_name, run = "run", init, init_heads;
  std::int64_t max_steps = -1;
  bool resume = false;
  int nproc = 0;
  std::vector<std::string> args;
  train->add_option("--recipe", recipe_name,
                    "A preset (cxformer-small, cxformer-base, dinov2-vits14, tiny) or a YAML file with DINOv2's keys");
  train->add_option("-o,--output", run, "The run folder: recipe.yaml, log.tsv, checkpoints/")->capture_default_str();
  train->add_option("--init", init, "Start from this Hugging Face encoder folder (CXformer, DINOv2, RAD-DINO weights)");
  train->add_option("--init-heads", init_heads,
                    "Start the DINO/iBOT heads from this safetensors file (dino_head.*, ibot_head.*; default: "
                    "ssl_heads.safetensors of --init when present)");
  train->add_option("--max-steps", max_steps,
                    "End this invocation after step N with a checkpoint (0: write the initialisation)")
      ->check(CLI::Range(std::int64_t(0), std::int64_t(1) << 40));
  train->add_flag("--resume", resume, "Continue the run in -o from its latest checkpoint, with its saved recipe");
  train->add_option("--nproc", nproc, "Spawn and watch N local ranks (Gloo on CPU, NCCL on CUDA)")
      ->check(CLI::Range(1, 1024));
  train->add_option("args", args, "KEY=VALUE recipe overrides (e.g. optim.base_lr=2e-4) and streams (- for stdin)");
  tool.add_threads_option(train);
  tool.add_device_option(train);

  auto* exp = app.add_subcommand("export", "Write a run's encoder as a Hugging Face Dinov2WithRegistersModel folder");
  std::string export_run_dir, export_out;
  bool export_student = false;
  exp->add_option("run", export_run_dir, "A run folder (its latest checkpoint) or one checkpoint folder")->required();
  exp->add_option("-o,--output", export_out, "The folder to write")->required();
  exp->add_flag("--student", export_student, "Export the student (default: the teacher, as DINOv2 evaluates)");

  auto* info = app.add_subcommand("info", "Print a run's resolved recipe, derived values and progress");
  std::string info_target;
  info->add_option("run", info_target, "A run folder, or with --recipe nothing");
  std::string info_recipe;
  std::vector<std::string> info_overrides;
  info->add_option("--recipe", info_recipe, "Print this recipe resolved (with KEY=VALUE overrides) instead of a run's");
  info->add_option("--set", info_overrides, "KEY=VALUE overrides for --recipe");

  return tool.run(argc, argv, [&]() -> int {
    if (info->parsed()) {
      if (!info_recipe.empty()) {
        cx::train::Recipe r = cx::train::load_recipe(info_recipe);
        for (const auto& a : info_overrides) cx::train::apply_override(r, a);
        cx::train::validate_recipe(r);
        std::string s = cx::train::recipe_to_yaml(r);
        std::fwrite(s.data(), 1, s.size(), stdout);
        return cx::kExitOk;
      }
      if (info_target.empty()) throw cx::UsageError("info: give a run folder, or --recipe NAME");
      std::string s = cx::train::run_info(info_target);
      std::fwrite(s.data(), 1, s.size(), stdout);
      return cx::kExitOk;
    }
    if (exp->parsed()) {
      const std::string used = cx::train::export_run(export_run_dir, export_out, export_student);
      cx::log::info("wrote " + export_out + " (" + std::string(export_student ? "student" : "teacher") + " of " + used + ")");
      return cx::kExitOk;
    }

    // train
    std::vector<std::string> overrides, streams;
    for (const auto& a : args) (is_assignment(a) ? overrides : streams).push_back(a);
    if (resume && (!recipe_name.empty() || !overrides.empty()))
      throw cx::UsageError("--resume continues with the run's saved recipe: drop --recipe and KEY=VALUE overrides");
    if (!resume && recipe_name.empty()) throw cx::UsageError("train: give --recipe NAME|FILE (e.g. --recipe tiny)");
    if (nproc > 1) {
      // The parent only spawns and watches; each rank runs this command without --nproc.
      std::vector<std::string> child;
      child.push_back(std::filesystem::canonical("/proc/self/exe").string());
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--nproc") {
          ++i;
          continue;
        }
        if (a.rfind("--nproc=", 0) == 0) continue;
        child.push_back(a);
      }
      return cx::train::dist::run_local_ranks(nproc, child);
    }
    cx::train::PretrainOptions o;
    if (!resume) {
      o.recipe = cx::train::load_recipe(recipe_name);
      for (const auto& a : overrides) cx::train::apply_override(o.recipe, a);
      cx::train::validate_recipe(o.recipe);
    }
    o.run = run;
    o.init = init;
    o.init_heads = init_heads;
    o.max_steps = max_steps;
    o.resume = resume;
    o.inputs = tool.inputs_or_stdin(streams);
    cx::model::set_threads(tool.threads());
    o.device = cx::model::parse_device(tool.common().device);
    o.threads = tool.threads();
    o.progress = !tool.common().quiet;
    const cx::train::PretrainResult r = cx::train::pretrain(o);
    if (r.stop_signal != 0) {
      if (r.checkpoint.empty()) return 128 + r.stop_signal;  // a rank other than 0: rank 0 says it
      cx::log::always("stopped by signal " + std::to_string(r.stop_signal) + " after step " + std::to_string(r.step) + " of " +
                      std::to_string(r.total) + "; checkpoint " + r.checkpoint + "; --resume continues");
      return 128 + r.stop_signal;
    }
    if (r.data_ended)
      throw cx::Error("the data ended after step " + std::to_string(r.step) + " of " + std::to_string(r.total) +
                      " (a pipe is read once); checkpoint " + r.checkpoint + "; --resume with a stream file continues");
    cx::log::info("step " + std::to_string(r.step) + " of " + std::to_string(r.total) + "; checkpoint " + r.checkpoint);
    return cx::kExitOk;
  });
}
