#include "cx/train/report_retrieve.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/npy.hpp"
#include "cx/text/reports.hpp"
#include "cx/train/tensor_io.hpp"

namespace cx::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "cx-report-retrieval";
constexpr int kVersionMajor = 1;
constexpr int kVersionMinor = 0;
constexpr const char* kReportsFile = "reports.jsonl";
constexpr const char* kEmbeddingsFile = "embeddings.safetensors";

std::vector<double> npy_values(const io::Record& record, const std::string& field, const std::string& where,
                               std::vector<std::int64_t>& shape) {
  const io::Field* f = record.find(field);
  if (!f) throw Error(at(where, "no " + field + " field"));
  io::NdArray a = io::read_npy(f->data, where + "." + field);
  if (a.dtype != io::DType::f16 && a.dtype != io::DType::f32 && a.dtype != io::DType::f64)
    throw Error(at(where + "." + field, "expected float tokens"));
  shape = a.shape;
  const std::vector<float> v = a.to_floats();
  return std::vector<double>(v.begin(), v.end());
}

// x / |x| in float64, stored as float32; a zero vector stays zero. Non-finite values are refused.
torch::Tensor normalised(const std::vector<double>& x, const std::string& where) {
  double ss = 0;
  for (double v : x) {
    if (!std::isfinite(v)) throw Error(at(where, "non-finite values in the embedding"));
    ss += v * v;
  }
  const double n = std::sqrt(ss);
  torch::Tensor out = torch::empty({static_cast<std::int64_t>(x.size())}, torch::kFloat32);
  float* o = out.data_ptr<float>();
  for (std::size_t i = 0; i < x.size(); ++i) o[i] = n > 0 ? static_cast<float>(x[i] / n) : 0.0f;
  return out;
}

// JSON text of a string that may not be UTF-8 (keys and report text from outside): invalid bytes
// become U+FFFD rather than an exception without a file name.
std::string json_line(const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); }

}  // namespace

std::string retrieval_feature_of(const io::Record& record, const std::string& where) {
  if (record.has("cls.npy")) return "cls";
  if (record.has("patch.npy")) return "patch_mean";
  throw Error(at(where, "no cls.npy or patch.npy to retrieve by (embed with cx-embed --emit cls or patch)"));
}

torch::Tensor retrieval_embedding(const io::Record& record, const std::string& feature, const std::string& where) {
  std::vector<std::int64_t> shape;
  if (feature == "cls") {
    std::vector<double> v = npy_values(record, "cls.npy", where, shape);
    if (shape.size() != 1 || shape[0] < 1) throw Error(at(where + ".cls.npy", "expected a [D] vector"));
    return normalised(v, where + ".cls.npy");
  }
  if (feature == "patch_mean") {
    std::vector<double> v = npy_values(record, "patch.npy", where, shape);
    if (shape.size() != 3 || shape[2] < 1 || shape[0] * shape[1] < 1)
      throw Error(at(where + ".patch.npy", "expected [h, w, D] tokens"));
    const std::int64_t P = shape[0] * shape[1], D = shape[2];
    std::vector<double> mean(static_cast<std::size_t>(D), 0.0);
    for (std::int64_t p = 0; p < P; ++p)
      for (std::int64_t d = 0; d < D; ++d) mean[static_cast<std::size_t>(d)] += v[static_cast<std::size_t>(p * D + d)];
    for (double& m : mean) m /= static_cast<double>(P);
    return normalised(mean, where + ".patch.npy");
  }
  throw Error(at(where, "unknown retrieval feature \"" + feature + "\" (cls or patch_mean)"));
}

RetrievalIndex build_retrieval_index(data::RecordSource& source, const std::string& where, const std::string& section) {
  RetrievalIndex index;
  const auto& header = source.header();
  if (header.contains("model") && header["model"].is_object()) index.encoder = header["model"];
  std::vector<torch::Tensor> rows;
  io::Record r;
  while (source.next(r)) {
    try {
      if (rows.empty()) index.feature = retrieval_feature_of(r, r.key);
      torch::Tensor e = retrieval_embedding(r, index.feature, r.key);
      if (rows.empty()) index.dim = e.size(0);
      if (e.size(0) != index.dim)
        throw Error(at(r.key, "an embedding of " + std::to_string(e.size(0)) + " values, the first record's has " +
                                  std::to_string(index.dim)));
      const io::Field* t = r.find("txt");
      if (!t) throw Error(at(r.key, "no .txt report to retrieve"));
      std::string text = section.empty() ? t->data : text::report_section(t->data, section);
      index.keys.push_back(r.key);
      index.texts.push_back(std::move(text));
      rows.push_back(std::move(e));
    } catch (const Error& e) {
      throw Error(at(where, e.what()));
    }
  }
  if (rows.empty()) throw Error(at(where, "no records"));
  index.embeddings = torch::stack(rows).contiguous();
  return index;
}

Neighbour nearest(const RetrievalIndex& index, const torch::Tensor& query) {
  if (index.size() < 1) throw Error("retrieval: the index is empty");
  torch::Tensor q = query.to(torch::kCPU, torch::kFloat32).contiguous();
  if (q.dim() != 1 || q.size(0) != index.dim)
    throw Error("retrieval: a query of " + std::to_string(q.numel()) + " values for an index of " + std::to_string(index.dim));
  const std::int64_t N = index.size(), D = index.dim;
  const torch::Tensor E = index.embeddings.to(torch::kCPU, torch::kFloat32).contiguous();
  if (E.dim() != 2 || E.size(0) != N || E.size(1) != D) throw Error("retrieval: embeddings disagree with the index's size");
  const float* e = E.data_ptr<float>();
  const float* qd = q.data_ptr<float>();
  std::vector<double> sim(static_cast<std::size_t>(N));
  at::parallel_for(0, N, 256, [&](std::int64_t b, std::int64_t end) {
    for (std::int64_t i = b; i < end; ++i) {
      const float* row = e + i * D;
      double s = 0;
      for (std::int64_t d = 0; d < D; ++d) s += static_cast<double>(row[d]) * static_cast<double>(qd[d]);
      sim[static_cast<std::size_t>(i)] = s;
    }
  });
  Neighbour best{0, sim[0]};
  for (std::int64_t i = 1; i < N; ++i)
    if (sim[static_cast<std::size_t>(i)] > best.similarity) best = {i, sim[static_cast<std::size_t>(i)]};
  return best;
}

Neighbour nearest_report(const RetrievalIndex& index, const io::Record& record, const std::string& where) {
  torch::Tensor q = retrieval_embedding(record, index.feature, where);
  if (q.size(0) != index.dim)
    throw Error(at(where, "an embedding of " + std::to_string(q.size(0)) + " values, but the index holds " +
                              std::to_string(index.dim)));
  return nearest(index, q);
}

void write_retrieval_index(const std::string& folder, const RetrievalIndex& index) {
  if (static_cast<std::int64_t>(index.texts.size()) != index.size() || !index.embeddings.defined() ||
      index.embeddings.size(0) != index.size())
    throw Error(at(folder, "retrieval index with inconsistent keys, texts and embeddings"));
  cli::write_folder_atomic(folder, [&](const std::string& tmp) {
    {
      std::ofstream out(tmp + "/" + kReportsFile, std::ios::binary);
      for (std::int64_t i = 0; i < index.size(); ++i)
        out << json_line({{"key", index.keys[static_cast<std::size_t>(i)]}, {"text", index.texts[static_cast<std::size_t>(i)]}})
            << '\n';
      out.flush();
      if (!out) throw Error(at(tmp + "/" + kReportsFile, "write failed"));
    }
    write_tensors(tmp + "/" + kEmbeddingsFile, {{"embeddings", index.embeddings}}, {{"format", kFormat}});
    const nlohmann::json j = {{"format", kFormat},
                              {"version", std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor)},
                              {"feature", index.feature},
                              {"dim", index.dim},
                              {"records", index.size()},
                              {"similarity", "cosine, exact, ties to the lower index"},
                              {"encoder", index.encoder},
                              {"reports", kReportsFile},
                              {"embeddings", kEmbeddingsFile}};
    cli::write_file_atomic(tmp + "/retrieval.json", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  });
}

RetrievalIndex load_retrieval_index(const std::string& folder) {
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "not a retrieval index folder (no such folder)"));
  const std::string json_path = folder + "/retrieval.json";
  if (!fs::exists(json_path, ec)) throw Error(at(folder, "not a retrieval index folder (no retrieval.json)"));
  const nlohmann::json j = io::read_json_file(json_path);
  io::check_format(j, json_path, kFormat, kVersionMajor);
  RetrievalIndex index;
  std::int64_t records = 0;
  try {
    index.feature = j.at("feature").get<std::string>();
    index.dim = j.at("dim").get<std::int64_t>();
    records = j.at("records").get<std::int64_t>();
    if (j.contains("encoder") && j["encoder"].is_object()) index.encoder = j["encoder"];
  } catch (const nlohmann::json::exception& e) {
    throw Error(at(json_path, std::string("bad field: ") + e.what()));
  }
  if (index.feature != "cls" && index.feature != "patch_mean")
    throw Error(at(json_path, "unknown feature \"" + index.feature + "\" (cls or patch_mean)"));
  if (index.dim < 1 || index.dim > 65536) throw Error(at(json_path, "\"dim\" must be in 1-65536"));
  if (records < 1) throw Error(at(json_path, "\"records\" must be at least 1"));

  const std::string emb_path = folder + "/" + kEmbeddingsFile;
  if (!fs::exists(emb_path, ec)) throw Error(at(folder, std::string("no ") + kEmbeddingsFile));
  torch::Tensor emb;
  for (auto& [name, t] : read_tensors(emb_path))
    if (name == "embeddings") emb = t;
  if (!emb.defined()) throw Error(at(emb_path, "no tensor embeddings"));
  if (emb.dim() != 2 || emb.size(0) != records || emb.size(1) != index.dim)
    throw Error(at(emb_path, "embeddings of shape [" + std::to_string(emb.size(0)) + (emb.dim() > 1 ? ", " + std::to_string(emb.size(1)) : "") +
                                 "], but retrieval.json says " + std::to_string(records) + " x " + std::to_string(index.dim)));
  index.embeddings = emb.to(torch::kFloat32).contiguous();

  const std::string rep_path = folder + "/" + kReportsFile;
  std::ifstream in(rep_path, std::ios::binary);
  if (!in) throw Error(at(folder, std::string("no ") + kReportsFile));
  std::string line;
  std::int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (n > records) throw Error(at(rep_path, "more than the " + std::to_string(records) + " reports retrieval.json says"));
    const std::string where = rep_path + ":" + std::to_string(n);
    const nlohmann::json r = io::parse_json(line, where);
    if (!r.contains("key") || !r["key"].is_string() || !r.contains("text") || !r["text"].is_string())
      throw Error(at(where, "expected {\"key\": string, \"text\": string}"));
    index.keys.push_back(r["key"].get<std::string>());
    index.texts.push_back(r["text"].get<std::string>());
  }
  if (n != records)
    throw Error(at(rep_path, std::to_string(n) + " reports, but retrieval.json says " + std::to_string(records)));
  return index;
}

}  // namespace cx::train
