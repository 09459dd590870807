#include "cx/train/dataset.hpp"

#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "cx/cli/error.hpp"
#include "cx/io/npy.hpp"
#include "cx/util/strings.hpp"

namespace cx::train {

Target apply_policy(data::LabelValue value, const LabelPolicy& policy) {
  const std::optional<bool> t = data::binary_target(value, policy);
  return {t.value_or(false) ? 1.0f : 0.0f, t.has_value()};
}

std::vector<std::string> choose_labels(const nlohmann::json& header, const std::string& list, const std::string& preset,
                                       const std::string& where) {
  if (!list.empty() && !preset.empty()) throw UsageError("--labels and --preset exclude each other");
  std::vector<std::string> labels;
  if (!list.empty()) {
    for (std::string& name : util::split_list(list)) {
      for (const auto& seen : labels)
        if (seen == name) throw UsageError("--labels: '" + name + "' given twice");
      labels.push_back(std::move(name));
    }
    if (labels.empty()) throw UsageError("--labels: no label names given");
    return labels;
  }
  if (!preset.empty()) return data::load_label_set(preset).classes;
  if (header.contains("labels") && header["labels"].is_array())
    for (const auto& l : header["labels"])
      if (l.is_string()) labels.push_back(l.get<std::string>());
  if (labels.empty())
    throw Error(at(where, "the stream header declares no labels: name them with --labels A,B or --preset NAME"));
  return labels;
}

std::vector<data::LabelValue> record_labels(const io::Record& record, const std::vector<std::string>& labels) {
  std::vector<data::LabelValue> values(labels.size(), data::LabelValue::blank);
  const io::Field* f = record.find("json");
  if (!f) return values;
  nlohmann::json j = nlohmann::json::parse(f->data, nullptr, false);
  if (j.is_discarded()) throw Error(at(record.key + ".json", "not valid JSON"));
  if (!j.is_object() || !j.contains("labels") || j["labels"].is_null()) return values;
  const auto& l = j["labels"];
  if (!l.is_object()) throw Error(at(record.key + ".json", "\"labels\" is not an object"));
  for (std::size_t i = 0; i < labels.size(); ++i) {
    auto it = l.find(labels[i]);
    if (it != l.end()) values[i] = data::label_from_json(*it, record.key + ".json: labels." + labels[i]);
  }
  return values;
}

FeatureSet load_features(data::RecordSource& source, const std::string& field, const std::vector<std::string>& labels,
                         const std::string& where) {
  // Rows are gathered in chunks and copied once into the final tensor, chunk by chunk, each freed
  // after its copy: the resident peak stays near one copy of the data.
  constexpr std::int64_t kChunkRows = 1024;
  const std::string name = field + ".npy";
  const auto L = static_cast<std::int64_t>(labels.size());
  FeatureSet set;
  set.header = source.header();
  std::vector<std::unique_ptr<std::vector<float>>> chunks;
  std::vector<std::int8_t> truth;
  std::int64_t F = -1, n = 0;
  io::Record record;
  while (source.next(record)) {
    // A record's problem is named with the stream it came from: "<stream>: <key>.cx5.npy: ...".
    try {
      const io::Field* f = record.find(name);
      if (!f) throw Error(at(record.key, "no " + name + " field (embed the stream with cx-embed --emit " + field + ")"));
      io::NdArray a = io::read_npy(f->data, record.key + "." + name);
      if (a.shape.size() != 1) throw Error(at(record.key + "." + name, "expected a vector [F], got " + std::to_string(a.shape.size()) + " dimensions"));
      if (F < 0) F = a.shape[0];
      if (a.shape[0] != F)
        throw Error(at(record.key + "." + name, "has " + std::to_string(a.shape[0]) + " values, earlier records " + std::to_string(F)));
      if (n % kChunkRows == 0) {
        chunks.push_back(std::make_unique<std::vector<float>>());
        chunks.back()->reserve(static_cast<std::size_t>(kChunkRows * F));
      }
      auto& chunk = *chunks.back();
      const std::size_t at_row = chunk.size();
      if (a.dtype == io::DType::f32) {
        const float* p = a.as<float>();
        chunk.insert(chunk.end(), p, p + F);
      } else {
        std::vector<float> v = a.to_floats();
        chunk.insert(chunk.end(), v.begin(), v.end());
      }
      // A NaN feature would train a NaN head with exit 0.
      for (std::size_t k = at_row; k < chunk.size(); ++k)
        if (!std::isfinite(chunk[k]))
          throw Error(at(record.key + "." + name, "holds non-finite values (NaN or inf)"));
      for (auto v : record_labels(record, labels)) truth.push_back(data::label_code(v));
    } catch (const Error& e) {
      throw Error(at(where, e.what()));
    }
    set.keys.push_back(record.key);
    ++n;
  }
  if (n == 0) throw Error(at(where, "no records"));
  set.x = torch::empty({n, F}, torch::kFloat32);
  float* dst = set.x.data_ptr<float>();
  for (auto& chunk : chunks) {
    std::memcpy(dst, chunk->data(), chunk->size() * sizeof(float));
    dst += chunk->size();
    chunk.reset();
  }
  set.truth = torch::from_blob(truth.data(), {n, L}, torch::kInt8).clone();
  return set;
}

void make_targets(const torch::Tensor& truth, const LabelPolicy& policy, torch::Tensor& y, torch::Tensor& mask) {
  torch::Tensor t = truth.contiguous();
  y = torch::zeros(t.sizes(), torch::kFloat32);
  mask = torch::zeros(t.sizes(), torch::kFloat32);
  const std::int8_t* s = t.data_ptr<std::int8_t>();
  float* py = y.data_ptr<float>();
  float* pm = mask.data_ptr<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    Target target = apply_policy(data::label_from_code(s[i]), policy);
    py[i] = target.value;
    pm[i] = target.used ? 1.0f : 0.0f;
  }
}

}  // namespace cx::train
