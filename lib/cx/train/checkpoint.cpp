#include "cx/io/json_file.hpp"
#include "cx/train/checkpoint.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/train/head.hpp"
#include "cx/train/tensor_io.hpp"

namespace cx::train {

namespace fs = std::filesystem;

namespace {

constexpr int kVersionMajor = 1;
constexpr const char* kState = "state.json";

// The state.json of `folder`, checked as the header says; throws cx::Error naming the problem.
nlohmann::json read_state(const std::string& folder, const std::string& format) {
  const std::string path = folder + "/" + kState;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "no such checkpoint folder"));
  if (!fs::exists(path, ec)) throw Error(at(folder, "not a complete checkpoint (no state.json)"));
  nlohmann::json j = io::read_json_file(path);
  io::check_format(j, path, format, kVersionMajor);
  if (!j.contains("step") || !j["step"].is_number_integer()) throw Error(at(path, "no step"));
  if (!j.contains("files") || !j["files"].is_object()) throw Error(at(path, "no file list"));
  for (auto it = j["files"].begin(); it != j["files"].end(); ++it) {
    std::error_code ec;
    // Files of the checkpoint only: a name leaving the folder would make us look elsewhere.
    const fs::path rel(it.key());
    bool outside = rel.empty() || rel.is_absolute();
    for (const auto& part : rel) outside = outside || part == "..";
    if (outside) throw Error(at(path, "file '" + it.key() + "' is not inside the checkpoint folder"));
    const fs::path p = fs::path(folder) / it.key();
    const auto size = fs::file_size(p, ec);
    if (ec) throw Error(at(folder, "not a complete checkpoint (" + it.key() + " is missing)"));
    if (!it.value().is_number_unsigned() || size != it.value().get<std::uintmax_t>())
      throw Error(at(folder, "not a complete checkpoint (" + it.key() + " has " + std::to_string(size) + " bytes, state.json says " +
                                 it.value().dump() + ")"));
  }
  return j;
}

}  // namespace

const model::NamedTensors& Checkpoint::group(const std::string& name) const {
  auto it = groups.find(name);
  if (it == groups.end()) throw Error(at(folder.empty() ? format : folder, "the checkpoint has no " + name + ".safetensors"));
  return it->second;
}

void write_checkpoint(const std::string& folder, const Checkpoint& c, const std::function<void(const std::string& temp)>& extra) {
  write_folder_atomic(folder, [&](const std::string& tmp) {
    nlohmann::json group_names = nlohmann::json::array();
    for (const auto& [name, tensors] : c.groups) {
      if (name.empty() || name.find('/') != std::string::npos || name == "state")
        throw Error(at(folder, "checkpoint group name '" + name + "' is not a plain file name"));
      write_tensors(tmp + "/" + name + ".safetensors", tensors, {{"format", c.format}});
      group_names.push_back(name);
    }
    if (extra) extra(tmp);
    nlohmann::json files = nlohmann::json::object();
    for (const auto& e : fs::recursive_directory_iterator(tmp))
      if (e.is_regular_file()) files[fs::relative(e.path(), tmp).generic_string()] = static_cast<std::uint64_t>(e.file_size());
    const nlohmann::json state = {{"format", c.format},
                                  {"version", std::to_string(kVersionMajor) + ".0"},
                                  {"step", c.step},
                                  {"signature", c.signature},
                                  {"state", c.state},
                                  {"rng", c.rng},
                                  {"groups", group_names},
                                  {"files", files}};
    cli::write_file_atomic(tmp + "/" + kState, state.dump(2) + "\n");
  });
}

Checkpoint read_checkpoint(const std::string& folder, const std::string& format) {
  const nlohmann::json j = read_state(folder, format);
  Checkpoint c;
  c.format = format;
  c.folder = folder;
  c.step = j["step"].get<std::int64_t>();
  c.signature = j.value("signature", nlohmann::json::object());
  c.state = j.value("state", nlohmann::json::object());
  c.rng = j.value("rng", nlohmann::json::object());
  for (const auto& g : j.value("groups", nlohmann::json::array())) {
    if (!g.is_string()) throw Error(at(folder + "/" + kState, "a group name is not a string"));
    const std::string name = g.get<std::string>();
    // The names a checkpoint writes (one file name, no folder part); anything else is refused.
    if (name.empty() || name.find('/') != std::string::npos || name == "state" || name == "." || name == "..")
      throw Error(at(folder + "/" + kState, "group name '" + name + "' is not a file name of the checkpoint"));
    c.groups[name] = read_tensors(folder + "/" + name + ".safetensors");
  }
  return c;
}

bool is_checkpoint(const std::string& folder, const std::string& format) {
  try {
    read_state(folder, format);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

std::string latest_checkpoint(const std::string& parent, const std::string& format) {
  std::error_code ec;
  std::string best;
  std::int64_t best_step = -1;
  for (fs::directory_iterator it(parent, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name[0] == '.' || !it->is_directory()) continue;
    try {
      const std::int64_t step = read_state(it->path().string(), format)["step"].get<std::int64_t>();
      if (step > best_step || (step == best_step && it->path().string() < best)) {
        best_step = step;
        best = it->path().string();
      }
    } catch (const std::exception&) {
    }
  }
  return best;
}

void check_signature(const nlohmann::json& saved, const nlohmann::json& now, const std::string& where) {
  std::string list;
  for (auto it = now.begin(); it != now.end(); ++it) {
    const std::string& k = it.key();
    if (saved.contains(k) && saved[k] == it.value()) continue;
    list += (list.empty() ? "" : ", ") + k + " (checkpoint " + (saved.contains(k) ? saved[k].dump() : "absent") + ", now " +
            it.value().dump() + ")";
  }
  if (!list.empty()) throw Error(at(where, "the checkpoint was made with other settings: " + list));
}

NamedParams NamedParams::of(torch::nn::Module& module, const std::string& prefix) {
  NamedParams p;
  for (const auto& item : module.named_parameters(true)) {
    p.names.push_back(prefix + item.key());
    p.tensors.push_back(item.value());
  }
  return p;
}

model::NamedTensors NamedParams::with(const std::vector<torch::Tensor>& values) const {
  model::NamedTensors out;
  for (std::size_t i = 0; i < names.size(); ++i) out.emplace_back(names[i], values[i]);
  return out;
}

void NamedParams::load_into(const std::vector<torch::Tensor>& values, const model::NamedTensors& saved,
                            const std::string& where) const {
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < names.size(); ++i) {
    const torch::Tensor* found = nullptr;
    for (const auto& [k, t] : saved)
      if (k == names[i]) found = &t;
    if (!found || !found->sizes().equals(values[i].sizes()))
      throw Error(at(where, "no tensor " + names[i] + " of the model's shape"));
    values[i].copy_(*found);
  }
}

}  // namespace cx::train
