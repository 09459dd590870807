#pragma once
// Finding a model folder from what a user types after --model:
//   a path to a folder                      used as it is
//   a name ("CXformer-small") or a hub id   ("m42-health/CXformer-small") looked up, in order, in
//     each folder of $CX_MODEL_PATH (colon-separated; <dir>/<name> or <dir>/<org>/<name>), then in
//     the Hugging Face hub cache ($HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub:
//     models--<org>--<name>/snapshots/<revision from refs/main, else the only snapshot>).
// Nothing is downloaded. Not found: a cx::Error listing where it looked.
#include <string>

namespace cx::model {

std::string resolve_model_dir(const std::string& name_or_path);

}  // namespace cx::model
