#include "cx/model/model_dir.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::model {

namespace fs = std::filesystem;

namespace {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool is_model_folder(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && fs::exists(p / "config.json", ec);
}

// models--org--name/snapshots/<rev>: the revision refs/main names, else the only snapshot.
std::string from_hub_cache(const fs::path& cache, const std::string& id) {
  std::error_code ec;
  std::vector<fs::path> repos;
  std::string slug = id;
  for (auto& c : slug)
    if (c == '/') c = '-';
  if (id.find('/') != std::string::npos) {
    std::string repo = "models--" + id.substr(0, id.find('/')) + "--" + id.substr(id.find('/') + 1);
    repos.push_back(cache / repo);
  } else if (fs::is_directory(cache, ec)) {
    // A bare name matches any organisation's repository of that name.
    for (auto& entry : fs::directory_iterator(cache, ec)) {
      std::string n = entry.path().filename().string();
      std::string suffix = "--" + id;
      if (n.rfind("models--", 0) == 0 && n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
        repos.push_back(entry.path());
    }
  }
  for (const auto& repo : repos) {
    fs::path snapshots = repo / "snapshots";
    if (!fs::is_directory(snapshots, ec)) continue;
    std::ifstream ref(repo / "refs" / "main");
    std::string rev;
    if (ref && std::getline(ref, rev) && is_model_folder(snapshots / rev)) return (snapshots / rev).string();
    std::vector<fs::path> snaps;
    for (auto& s : fs::directory_iterator(snapshots, ec))
      if (is_model_folder(s.path())) snaps.push_back(s.path());
    if (snaps.size() == 1) return snaps.front().string();
  }
  return "";
}

}  // namespace

std::string resolve_model_dir(const std::string& name) {
  if (name.empty()) throw UsageError("--model: no model given");
  std::error_code ec;
  if (fs::is_directory(name, ec)) {
    if (!fs::exists(fs::path(name) / "config.json", ec)) throw Error(at(name, "not a model folder: no config.json"));
    return name;
  }
  if (fs::exists(name, ec)) throw Error(at(name, "a model is a folder (config.json + model.safetensors), not a file"));

  std::vector<std::string> looked;
  std::string path_list = env("CX_MODEL_PATH");
  std::stringstream ss(path_list);
  std::string dir;
  std::string base = name.substr(name.find('/') == std::string::npos ? 0 : name.find('/') + 1);
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) continue;
    for (const fs::path& p : {fs::path(dir) / name, fs::path(dir) / base})
      if (is_model_folder(p)) return p.string();
    looked.push_back(dir);
  }
  std::string cache = env("HF_HUB_CACHE");
  if (cache.empty() && !env("HF_HOME").empty()) cache = env("HF_HOME") + "/hub";
  if (cache.empty() && !env("HOME").empty()) cache = env("HOME") + "/.cache/huggingface/hub";
  if (!cache.empty()) {
    std::string found = from_hub_cache(cache, name);
    if (!found.empty()) return found;
    looked.push_back(cache);
  }
  std::string where;
  for (const auto& l : looked) where += (where.empty() ? "" : ", ") + l;
  throw Error(at(name, "model not found: not a folder, and not in " + (where.empty() ? std::string("$CX_MODEL_PATH (unset)") : where) +
                           " (cx downloads nothing: fetch it with huggingface-cli download, or give the folder)"));
}

}  // namespace cx::model
