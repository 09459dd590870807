#include "cx/train/head.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/model/gemm.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/safetensors.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/train/tensor_io.hpp"

namespace cx::train {

namespace fs = std::filesystem;

namespace {
constexpr const char* kFormat = "cx-head";
constexpr int kVersionMajor = 1;
constexpr int kVersionMinor = 0;
}  // namespace

HeadType parse_head_type(const std::string& name) {
  if (name == "linear") return HeadType::linear;
  if (name == "mlp") return HeadType::mlp;
  throw UsageError("--head " + name + ": expected linear or mlp");
}

Task parse_task(const std::string& name) {
  if (name == "multilabel") return Task::multilabel;
  if (name == "binary") return Task::binary;
  if (name == "multiclass") return Task::multiclass;
  throw UsageError("--task " + name + ": expected multilabel, binary or multiclass");
}

std::string head_type_name(HeadType t) { return t == HeadType::mlp ? "mlp" : "linear"; }

std::string task_name(Task t) {
  switch (t) {
    case Task::binary: return "binary";
    case Task::multiclass: return "multiclass";
    case Task::multilabel: break;
  }
  return "multilabel";
}

HeadModule::HeadModule(HeadShape shape) : shape_(shape) {
  if (shape_.in < 1 || shape_.out < 1 || (shape_.type == HeadType::mlp && shape_.hidden < 1))
    throw Error("head: invalid shape in " + std::to_string(shape_.in) + ", hidden " + std::to_string(shape_.hidden) +
                ", out " + std::to_string(shape_.out));
  if (shape_.type == HeadType::linear) {
    auto node = register_module("linear", std::make_shared<torch::nn::Module>());
    w1_ = node->register_parameter("weight", torch::zeros({shape_.out, shape_.in}));
    b1_ = node->register_parameter("bias", torch::zeros({shape_.out}));
  } else {
    auto fc1 = register_module("fc1", std::make_shared<torch::nn::Module>());
    auto fc2 = register_module("fc2", std::make_shared<torch::nn::Module>());
    w1_ = fc1->register_parameter("weight", torch::zeros({shape_.hidden, shape_.in}));
    b1_ = fc1->register_parameter("bias", torch::zeros({shape_.hidden}));
    w2_ = fc2->register_parameter("weight", torch::zeros({shape_.out, shape_.hidden}));
    b2_ = fc2->register_parameter("bias", torch::zeros({shape_.out}));
  }
}

torch::Tensor HeadModule::forward(const torch::Tensor& x) {
  torch::Tensor h = model::linear(x, w1_, b1_);
  if (shape_.type == HeadType::linear) return h;
  return model::linear(at::gelu(h), w2_, b2_);
}

void HeadModule::init(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  if (shape_.type == HeadType::linear) {
    w1_.copy_(0.01 * torch::randn(w1_.sizes(), gen, torch::kFloat32));
    b1_.zero_();
  } else {
    w1_.copy_(std::sqrt(2.0 / static_cast<double>(shape_.in)) * torch::randn(w1_.sizes(), gen, torch::kFloat32));
    b1_.zero_();
    w2_.copy_(0.01 * torch::randn(w2_.sizes(), gen, torch::kFloat32));
    b2_.zero_();
  }
}

Standardizer Standardizer::fit(const torch::Tensor& x) {
  // Two passes over blocks of rows, float32 column sums of each block accumulated in float64.
  // No full-size temporary (a float64 copy, or torch's std(0), costs seconds per 100,000 x 1,920
  // in conversion and first-touch page faults); the one block buffer is reused. A block sum's
  // float32 rounding (relative ~1e-6 over 4,096 rows) is far below what standardising needs.
  constexpr std::int64_t kBlock = 4096;
  const std::int64_t n = x.size(0), f = x.size(1);
  torch::Tensor sum = torch::zeros({f}, torch::kFloat64);
  for (std::int64_t b = 0; b < n; b += kBlock) sum += x.narrow(0, b, std::min(kBlock, n - b)).sum(0).to(torch::kFloat64);
  torch::Tensor mean = (sum / static_cast<double>(n)).to(torch::kFloat32);
  torch::Tensor buffer = torch::empty({std::min(kBlock, n), f}, torch::kFloat32);
  torch::Tensor ss = torch::zeros({f}, torch::kFloat64);
  for (std::int64_t b = 0; b < n; b += kBlock) {
    const std::int64_t len = std::min(kBlock, n - b);
    torch::Tensor d = buffer.narrow(0, 0, len);
    at::sub_out(d, x.narrow(0, b, len), mean);
    d.mul_(d);
    ss += d.sum(0).to(torch::kFloat64);
  }
  torch::Tensor sd = (ss / static_cast<double>(n)).sqrt();
  Standardizer s;
  s.mean = mean;
  const double floor = std::max(sd.max().item<double>() * 1e-6, 1e-12);
  s.std = sd.clamp_min(floor).to(torch::kFloat32);
  return s;
}

torch::Tensor Standardizer::apply(const torch::Tensor& x) const {
  if (!defined()) return x;
  return (x - mean.to(x.device())) / std.to(x.device());
}

torch::Tensor Head::logits(const torch::Tensor& features) const {
  torch::NoGradGuard no_grad;
  const torch::Device device = module->parameters().front().device();
  return module->forward(standardizer.apply(features.to(device)));
}

torch::Tensor Head::probabilities(const torch::Tensor& features) const {
  torch::Tensor z = logits(features);
  return info.task == Task::multiclass ? torch::softmax(z, 1) : torch::sigmoid(z);
}

void HeadRecord::write_to(nlohmann::json& j) const {
  j["encoder"] = encoder;
  j["training"] = training;
  j["metrics"] = metrics;
  if (!encoder_folder.empty()) j["encoder_folder"] = encoder_folder;
  if (!preprocess.is_null()) j["preprocess"] = preprocess;
}

void HeadRecord::read_from(const nlohmann::json& j) {
  encoder = j.value("encoder", nlohmann::json::object());
  training = j.value("training", nlohmann::json::object());
  metrics = j.value("metrics", nlohmann::json::object());
  encoder_folder = j.value("encoder_folder", "");
  if (j.contains("preprocess")) preprocess = j["preprocess"];
}

nlohmann::json head_json(const Head& head) {
  const HeadInfo& i = head.info;
  nlohmann::json shape = {{"type", head_type_name(i.shape.type)}, {"in", i.shape.in}, {"out", i.shape.out}};
  if (i.shape.type == HeadType::mlp) {
    shape["hidden"] = i.shape.hidden;
    shape["activation"] = "gelu";
  }
  nlohmann::json j = {
      {"format", kFormat},
      {"version", std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor)},
      {"task", task_name(i.task)},
      {"labels", i.labels},
      {"feature", i.feature},
      {"head", shape},
      {"policy", {{"uncertain", policy_name(i.policy.uncertain)}, {"blank", policy_name(i.policy.blank)}}},
      {"standardize", head.standardizer.defined()},
  };
  i.write_to(j);
  return j;
}

void write_head_files(const std::string& folder, const Head& head) {
  model::NamedTensors tensors;
  for (const auto& p : head.module->named_parameters(true)) tensors.emplace_back(p.key(), p.value());
  if (head.standardizer.defined()) {
    tensors.emplace_back("standardize.mean", head.standardizer.mean);
    tensors.emplace_back("standardize.std", head.standardizer.std);
  }
  write_tensors(folder + "/head.safetensors", tensors, {{"format", "cx-head"}});
  cli::write_file_atomic(folder + "/head.json", head_json(head).dump(2) + "\n");
}

nlohmann::json read_head_json(const std::string& folder, const std::string& format, int major_version) {
  const std::string json_path = folder + "/head.json";
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(at(folder, "not a head folder (no such folder)"));
  if (!fs::exists(json_path, ec)) throw Error(at(folder, "not a head folder (no head.json)"));
  nlohmann::json j = io::read_json_file(json_path);
  const std::string got = j.value("format", "");
  // The other tool's head: say which tool reads it.
  if (got != format && got == "cx-seghead") throw Error(at(json_path, "a segmentation head (cx-seghead): use it with cx-segment"));
  if (got != format && got == "cx-head") throw Error(at(json_path, "a classification head (cx-head): use it with cx-classify"));
  io::check_format(j, json_path, format, major_version);
  return j;
}

torch::Tensor head_tensor(const model::NamedTensors& tensors, const std::string& name, torch::IntArrayRef shape,
                          const std::string& file) {
  for (const auto& [k, t] : tensors)
    if (k == name) {
      if (!t.sizes().equals(shape)) throw Error(at(file, name + " has the wrong shape for head.json"));
      return t.to(torch::kFloat32);
    }
  throw Error(at(file, "no tensor " + name));
}

Head load_head(const std::string& folder) {
  const std::string json_path = folder + "/head.json";
  const nlohmann::json j = read_head_json(folder, kFormat, kVersionMajor);
  Head head;
  HeadInfo& i = head.info;
  try {
    i.task = parse_task(j.at("task").get<std::string>());
    i.labels = j.at("labels").get<std::vector<std::string>>();
    i.feature = j.at("feature").get<std::string>();
    const auto& h = j.at("head");
    i.shape.type = parse_head_type(h.at("type").get<std::string>());
    i.shape.in = h.at("in").get<std::int64_t>();
    i.shape.out = h.at("out").get<std::int64_t>();
    if (i.shape.type == HeadType::mlp) i.shape.hidden = h.at("hidden").get<std::int64_t>();
    i.policy.uncertain = parse_uncertain_policy(j.at("policy").at("uncertain").get<std::string>());
    i.policy.blank = parse_blank_policy(j.at("policy").at("blank").get<std::string>());
    i.read_from(j);
  } catch (const nlohmann::json::exception& e) {
    throw Error(at(json_path, std::string("bad field: ") + e.what()));
  } catch (const UsageError& e) {
    throw Error(at(json_path, e.what()));
  }
  if (static_cast<std::int64_t>(i.labels.size()) != i.shape.out)
    throw Error(at(json_path, std::to_string(i.labels.size()) + " labels but the head has " + std::to_string(i.shape.out) + " outputs"));

  head.module = std::make_shared<HeadModule>(i.shape);
  const std::string file = folder + "/head.safetensors";
  auto tensors = read_tensors(file);
  auto take = [&](const std::string& name, torch::IntArrayRef shape) { return head_tensor(tensors, name, shape, file); };
  {
    torch::NoGradGuard no_grad;
    for (auto& p : head.module->named_parameters(true)) p.value().copy_(take(p.key(), p.value().sizes()));
  }
  if (j.value("standardize", false)) {
    head.standardizer.mean = take("standardize.mean", {i.shape.in});
    head.standardizer.std = take("standardize.std", {i.shape.in});
  }
  head.module->eval();
  return head;
}

namespace {
std::string weights_sha(const nlohmann::json& header) {
  if (!header.contains("model") || !header["model"].is_object()) return "";
  return header["model"].value("sha256", "");
}
}  // namespace

void check_same_encoder(const nlohmann::json& train_header, const nlohmann::json& val_header) {
  const std::string a = weights_sha(train_header), b = weights_sha(val_header);
  if (!a.empty() && !b.empty() && a != b)
    throw Error("the validation stream was embedded with another encoder (sha256 " + b.substr(0, 12) +
                ") than the training stream (" + a.substr(0, 12) + ")");
}

void check_encoder(const HeadRecord& head, const nlohmann::json& stream_header, const std::string& where, const std::string& what) {
  const std::string want_id = head.encoder.value("id", "");
  const std::string want_sha = head.encoder.value("sha256", "");
  if (!stream_header.contains("model") || !stream_header["model"].is_object())
    throw Error(at(where, "the stream header names no encoder (\"model\"), so it cannot be checked against the " + what + "'s "
                          "encoder '" + want_id + "' (sha256 " + want_sha.substr(0, 12) +
                          "); use --ignore-encoder to predict anyway"));
  const auto& m = stream_header["model"];
  const std::string got_id = m.value("id", "");
  const std::string got_sha = m.value("sha256", "");
  // The weights' hash is the encoder's identity (a renamed folder changes the id, not the weights);
  // the id decides only when a side was not hashed.
  const bool same = (!got_sha.empty() && !want_sha.empty()) ? got_sha == want_sha : got_id == want_id;
  if (!same)
    throw Error(at(where, "embedded with encoder '" + got_id + "' (sha256 " + got_sha.substr(0, 12) +
                              "), but the " + what + " was trained on encoder '" + want_id + "' (sha256 " + want_sha.substr(0, 12) +
                              "); use --ignore-encoder to predict anyway"));
}

}  // namespace cx::train
