#pragma once
// Training checkpoints: what a run needs to continue where it stopped, bit for bit, in one folder
// written atomically (filled in a temporary folder beside it, renamed into place when complete):
//   state.json           {"format", "version", "step", "signature", "state", "rng", "groups", "files"},
//                        written last; "files" lists every other file of the folder with its size
//   <group>.safetensors  one per tensor group (modules, optimizer state, best weights ...), bit for bit
//   whatever `extra` writes (e.g. an encoder as a Hugging Face folder)
// A folder whose state.json is missing, unreadable or of another format, or whose listed files are
// missing or of another size, is not a checkpoint: a temporary folder or a copy cut short is never
// taken for one. The signature holds the settings a resumed run must share with the checkpoint;
// `state` and `rng` are the run's own JSON (early stopping, epochs; seeds and counters: cx's
// randomness is counter-based, so counters are all a resumed run needs).
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/model/hf_loader.hpp"

namespace cx::train {

struct Checkpoint {
  std::string format;                                  // e.g. "cx-finetune-checkpoint"
  std::int64_t step = 0;                               // updates done
  nlohmann::json signature = nlohmann::json::object();
  nlohmann::json state = nlohmann::json::object();
  nlohmann::json rng = nlohmann::json::object();
  std::map<std::string, model::NamedTensors> groups;   // written as <group>.safetensors
  std::string folder;                                  // where it was read from (read_checkpoint)

  // The tensors of a group; throws cx::Error naming the folder when the checkpoint has none.
  const model::NamedTensors& group(const std::string& name) const;
  bool has_group(const std::string& name) const { return groups.count(name) > 0; }
};

// Writes `c` to `folder` atomically (an existing checkpoint there is replaced only once the new one is
// complete); `extra`, when given, writes more files into the temporary folder before state.json.
void write_checkpoint(const std::string& folder, const Checkpoint& c,
                      const std::function<void(const std::string& temp)>& extra = {});

// Reads a checkpoint of `format` (major version 1); errors name the folder and the problem.
Checkpoint read_checkpoint(const std::string& folder, const std::string& format);

// Whether `folder` holds a complete checkpoint of `format` (never throws).
bool is_checkpoint(const std::string& folder, const std::string& format);

// The complete checkpoint of `format` with the highest step among the sub-folders of `parent`
// (hidden ones, such as the temporaries of an interrupted write, are skipped); "" when none.
std::string latest_checkpoint(const std::string& parent, const std::string& format);

// Throws cx::Error naming `where` and each setting of `now` that the checkpoint's `saved` lacks or
// holds with another value: "the checkpoint was made with other settings: batch (checkpoint 3, now 2)".
void check_signature(const nlohmann::json& saved, const nlohmann::json& now, const std::string& where);

// The parameters of one or more modules under names ("encoder." + the module's own names ...): what
// a checkpoint group holds for them, and how they are loaded back.
struct NamedParams {
  std::vector<std::string> names;
  std::vector<torch::Tensor> tensors;

  static NamedParams of(torch::nn::Module& module, const std::string& prefix = "");
  // These names with other values of the same parameters (e.g. the best epoch's copies).
  model::NamedTensors with(const std::vector<torch::Tensor>& values) const;
  model::NamedTensors current() const { return with(tensors); }
  // Copies the tensor of each name from `saved` into `values` (default: the parameters); a
  // missing name or another shape throws cx::Error naming `where`.
  void load(const model::NamedTensors& saved, const std::string& where) const { load_into(tensors, saved, where); }
  void load_into(const std::vector<torch::Tensor>& values, const model::NamedTensors& saved, const std::string& where) const;
};

}  // namespace cx::train
