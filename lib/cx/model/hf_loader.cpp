#include "cx/io/json_file.hpp"
#include "cx/model/hf_loader.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/safetensors.hpp"
#include "cx/io/sha256.hpp"

namespace cx::model {
namespace fs = std::filesystem;

namespace {

constexpr const char* kSingleFile = "model.safetensors";
constexpr const char* kIndexFile = "model.safetensors.index.json";
constexpr size_t kListedKeys = 8;  // names shown per list in a key-mismatch error

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

std::string list_keys(const std::vector<std::string>& keys) {
  std::string s;
  for (size_t i = 0; i < keys.size() && i < kListedKeys; ++i) s += (i ? ", " : "") + keys[i];
  if (keys.size() > kListedKeys) s += ", ... (" + std::to_string(keys.size() - kListedKeys) + " more)";
  return s;
}

std::string join(const std::string& folder, const std::string& name) { return (fs::path(folder) / name).string(); }

// The base model's key for a checkpoint key, or "" for a key to ignore (classification head).
std::string base_key(const std::string& key) {
  static const std::string prefixes[] = {"dinov2_with_registers.", "dinov2."};
  if (key.rfind("classifier.", 0) == 0) return "";
  for (const auto& prefix : prefixes)
    if (key.rfind(prefix, 0) == 0) return key.substr(prefix.size());
  return key;
}

struct Entry {
  const io::TensorView* view;
  std::string file;
};

// The opened weight files of a folder and their tensors under base-model keys.
struct WeightSource {
  std::vector<std::shared_ptr<io::SafetensorsFile>> files;
  std::map<std::string, Entry> entries;
  std::vector<std::string> ignored;
  std::vector<WeightFile> weight_files;
  bool sharded = false;

  void add_file(const std::string& path) {
    auto file = std::make_shared<io::SafetensorsFile>(io::SafetensorsFile::open(path));
    for (const auto& [key, view] : file->tensors()) {
      std::string base = base_key(key);
      if (base.empty()) {
        ignored.push_back(key);
        continue;
      }
      auto [it, inserted] = entries.emplace(base, Entry{&view, path});
      if (!inserted)
        throw Error(at(path, "tensor " + in_quotes(key) + " duplicates one already read from " + it->second.file));
    }
    files.push_back(std::move(file));
    weight_files.push_back({path, ""});
  }
};

WeightSource open_weights(const std::string& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "not a model folder (no such directory)"));
  WeightSource source;
  const std::string single = join(folder, kSingleFile);
  const std::string index = join(folder, kIndexFile);
  if (fs::exists(single, ec)) {
    source.add_file(single);
  } else if (fs::exists(index, ec)) {
    source.sharded = true;
    const nlohmann::json j = io::read_json_file(index);
    if (!j.contains("weight_map") || !j["weight_map"].is_object() || j["weight_map"].empty())
      throw Error(at(index, "no \"weight_map\" object"));
    std::map<std::string, std::string> weight_map;  // key -> shard file name
    std::set<std::string> shards;
    for (const auto& [key, value] : j["weight_map"].items()) {
      if (!value.is_string()) throw Error(at(index, "weight_map entry " + in_quotes(key) + " is not a file name"));
      std::string name = value.get<std::string>();
      // Shards live beside the index: a path could point anywhere on the machine.
      if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
        throw Error(at(index, "weight_map entry " + in_quotes(key) + " names " + in_quotes(name) + ", not a file in the folder"));
      weight_map[key] = name;
      shards.insert(name);
    }
    for (const auto& name : shards) source.add_file(join(folder, name));
    for (const auto& [key, name] : weight_map) {
      std::string base = base_key(key);
      if (base.empty()) continue;
      auto it = source.entries.find(base);
      if (it == source.entries.end() || fs::path(it->second.file).filename() != name)
        throw Error(at(join(folder, name), "no tensor " + in_quotes(key) + " (listed in " + kIndexFile + ")"));
    }
  } else {
    std::string hint;
    if (fs::exists(join(folder, "pytorch_model.bin"), ec))
      hint = " (pytorch_model.bin is a pickle and is never read: convert it to safetensors)";
    throw Error(at(folder, std::string("no ") + kSingleFile + " or " + kIndexFile + hint));
  }
  if (!source.ignored.empty())
    log::debug(folder + ": ignoring " + std::to_string(source.ignored.size()) +
               " classification-head tensor(s): " + list_keys(source.ignored));
  return source;
}

// One error line listing every missing and unexpected key, or a wrong shape; nothing when all match.
void check_weights(const std::vector<WeightShape>& expected,
                   const std::map<std::string, std::pair<std::vector<std::int64_t>, std::string>>& given,
                   const std::string& where, const VitConfig& config) {
  std::vector<std::string> missing, unexpected;
  std::set<std::string> expected_names;
  for (const auto& w : expected) {
    expected_names.insert(w.name);
    if (!given.count(w.name)) missing.push_back(w.name);
  }
  for (const auto& [name, info] : given)
    if (!expected_names.count(name)) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty()) {
    std::string msg = "weights do not match the config (" + config.model_type + ", " +
                      std::to_string(config.num_hidden_layers) + " layers, hidden " +
                      std::to_string(config.hidden_size) + (config.use_swiglu_ffn ? ", SwiGLU" : "") + "):";
    if (!missing.empty()) msg += " missing " + std::to_string(missing.size()) + " key(s): " + list_keys(missing);
    if (!missing.empty() && !unexpected.empty()) msg += ";";
    if (!unexpected.empty())
      msg += " unexpected " + std::to_string(unexpected.size()) + " key(s): " + list_keys(unexpected);
    throw Error(at(where, msg));
  }
  for (const auto& w : expected) {
    const auto& [shape, file] = given.at(w.name);
    if (shape != w.shape)
      throw Error(at(file.empty() ? where : file, "tensor " + in_quotes(w.name) + " has shape " + shape_string(shape) +
                                                      ", expected " + shape_string(w.shape) + " from the config"));
  }
}

torch::ScalarType scalar_type(io::DType dtype, const std::string& where) {
  switch (dtype) {
    case io::DType::f32: return torch::kFloat32;
    case io::DType::f16: return torch::kFloat16;
    case io::DType::bf16: return torch::kBFloat16;
    case io::DType::f64: return torch::kFloat64;
    default: break;
  }
  throw Error(at(where, "dtype " + io::dtype_safetensors_name(dtype) + " is not a floating-point weight type (F32, F16, BF16)"));
}

io::DType io_dtype(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat32: return io::DType::f32;
    case torch::kFloat16: return io::DType::f16;
    case torch::kBFloat16: return io::DType::bf16;
    default: break;
  }
  throw Error("save_hf_folder: weights can be saved as float32, float16 or bfloat16 only");
}

std::string dtype_config_name(torch::Dtype dtype) {
  switch (dtype) {
    case torch::kFloat16: return "float16";
    case torch::kBFloat16: return "bfloat16";
    default: return "float32";
  }
}

std::string model_id_for(const std::string& folder, const VitConfig& config) {
  const std::string& name = config.name_or_path;
  // save_pretrained records the path it loaded from; a local path says nothing to a reader elsewhere.
  if (!name.empty() && name[0] != '/' && name[0] != '.' && name[0] != '~' && !fs::exists(name)) return name;
  fs::path p = fs::absolute(folder).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}

}  // namespace

torch::Tensor tensor_from_view(const io::TensorView& view, const std::string& where) {
  torch::Tensor t = torch::empty(view.shape, torch::TensorOptions().dtype(scalar_type(view.dtype, where)));
  if (static_cast<std::size_t>(t.nbytes()) != view.nbytes)
    throw Error(at(where, "tensor byte size does not match its shape"));
  if (view.nbytes) std::memcpy(t.data_ptr(), view.data, view.nbytes);
  return t;
}

void check_finite_weight(const torch::Tensor& t, const std::string& key, const std::string& where) {
  const torch::Tensor bad = torch::isfinite(t).logical_not();
  const std::int64_t n = bad.sum().item<std::int64_t>();
  if (n > 0)
    throw Error(at(where, "tensor " + in_quotes(key) + " holds " + std::to_string(n) +
                              " non-finite value(s) (NaN or inf): the weights are damaged"));
}

NamedTensors read_hf_weights(const std::string& folder) {
  WeightSource source = open_weights(folder);
  NamedTensors out;
  for (const auto& [key, entry] : source.entries) {
    torch::Tensor t = tensor_from_view(*entry.view, entry.file);
    check_finite_weight(t, key, entry.file);
    out.emplace_back(key, std::move(t));
  }
  return out;
}

void load_weights(VitModel& model, const NamedTensors& weights, const std::string& where) {
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::string>> given;
  std::map<std::string, const torch::Tensor*> by_name;
  for (const auto& [key, tensor] : weights) {
    std::string base = base_key(key);
    if (base.empty()) continue;
    given[base] = {tensor.sizes().vec(), ""};
    by_name[base] = &tensor;
  }
  check_weights(vit_weight_shapes(model.config()), given, where, model.config());
  torch::NoGradGuard no_grad;
  for (auto& item : model.named_parameters(true)) item.value().copy_(*by_name.at(item.key()));
}

LoadedVit load_hf_vit(const std::string& folder, const LoadOptions& options) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "not a model folder (no such directory)"));
  LoadedVit out;
  out.folder = folder;
  out.config = read_vit_config(join(folder, "config.json"));
  WeightSource source = open_weights(folder);

  std::map<std::string, std::pair<std::vector<std::int64_t>, std::string>> given;
  for (const auto& [key, entry] : source.entries) given[key] = {entry.view->shape, entry.file};
  check_weights(vit_weight_shapes(out.config), given, folder, out.config);

  out.model = std::make_shared<VitModel>(out.config);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : out.model->named_parameters(true)) {
      const Entry& entry = source.entries.at(item.key());
      torch::Tensor t = tensor_from_view(*entry.view, entry.file);
      check_finite_weight(t, item.key(), entry.file);
      item.value().copy_(t);
    }
  }
  out.model->to(options.device, options.dtype);
  out.model->eval();

  out.weight_files = source.weight_files;
  if (options.hash) {
    for (auto& f : out.weight_files) f.sha256 = io::sha256_file_hex(f.path);
    if (!source.sharded) {
      out.weights_sha256 = out.weight_files.front().sha256;
    } else {
      std::vector<std::pair<std::string, std::string>> lines;
      for (const auto& f : out.weight_files) lines.emplace_back(fs::path(f.path).filename().string(), f.sha256);
      std::sort(lines.begin(), lines.end());
      std::string manifest;
      for (const auto& [name, hex] : lines) manifest += hex + "  " + name + "\n";
      out.weights_sha256 = io::sha256_hex(manifest);
    }
  }
  out.model_id = model_id_for(folder, out.config);
  log::debug(folder + ": loaded " + out.config.model_type + " (" + std::to_string(out.config.num_hidden_layers) +
             " layers, hidden " + std::to_string(out.config.hidden_size) + ") as " + out.model_id +
             (out.weights_sha256.empty() ? "" : ", sha256 " + out.weights_sha256));
  return out;
}

void save_hf_folder(const std::string& folder, const VitConfig& config, const NamedTensors& weights, torch::Dtype dtype) {
  const io::DType file_dtype = io_dtype(dtype);
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::string>> given;
  for (const auto& [key, tensor] : weights) {
    if (given.count(key)) throw Error(at(folder, "weight " + in_quotes(key) + " given twice"));
    given[key] = {tensor.sizes().vec(), ""};
  }
  check_weights(vit_weight_shapes(config), given, folder, config);

  std::error_code ec;
  fs::create_directories(folder, ec);
  if (ec) throw Error(at(folder, "cannot create folder: " + ec.message()));

  io::NamedArrays arrays;
  arrays.reserve(weights.size());
  for (const auto& [key, tensor] : weights) {
    torch::Tensor t = tensor.detach().to(torch::kCPU, dtype).contiguous();
    io::NdArray a;
    a.dtype = file_dtype;
    a.shape = t.sizes().vec();
    const auto* bytes = static_cast<const std::uint8_t*>(t.data_ptr());
    a.data.assign(bytes, bytes + t.nbytes());
    arrays.emplace_back(key, std::move(a));
  }
  io::write_safetensors_file(join(folder, kSingleFile), arrays, {{"format", "pt"}});

  VitConfig saved = config;
  saved.dtype = dtype_config_name(dtype);
  cli::write_file_atomic(join(folder, "config.json"), vit_config_to_json(saved).dump(2) + "\n");
}

void save_hf_folder(const std::string& folder, const VitModel& model, torch::Dtype dtype) {
  NamedTensors weights;
  for (const auto& item : model.named_parameters(true)) weights.emplace_back(item.key(), item.value());
  save_hf_folder(folder, model.config(), weights, dtype);
}

NamedTensors random_vit_weights(const VitConfig& config, std::uint64_t seed) {
  VitModel model(config);
  model.init_random(seed);
  NamedTensors weights;
  for (const auto& item : model.named_parameters(true)) weights.emplace_back(item.key(), item.value().detach());
  return weights;
}

}  // namespace cx::model
