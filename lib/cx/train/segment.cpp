#include "cx/train/loss.hpp"
#include "cx/train/segment.hpp"

#include <algorithm>
#include <cmath>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/npy.hpp"
#include "cx/random/rng.hpp"
#include "cx/train/schedule.hpp"
#include "cx/train/tensor_io.hpp"

namespace cx::train {

namespace F = torch::nn::functional;

namespace {
constexpr const char* kFormat = "cx-seghead";
constexpr int kVersionMajor = 1;
constexpr int kVersionMinor = 0;
constexpr std::uint64_t kShufflePurpose = 11;
constexpr std::uint64_t kDropoutPurpose = 12;
constexpr std::uint64_t kAugmentPurpose = 13;

torch::Tensor up2(const torch::Tensor& x) {
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .scale_factor(std::vector<double>{2.0, 2.0})
                               .mode(torch::kBilinear)
                               .align_corners(false)
                               .recompute_scale_factor(false));
}

// Bilinear resampling of logits [B, K, h, w] to [B, K, H, W], align_corners false.
torch::Tensor resize_logits(const torch::Tensor& x, std::int64_t H, std::int64_t W) {
  if (x.size(2) == H && x.size(3) == W) return x;
  return F::interpolate(x, F::InterpolateFuncOptions().size(std::vector<std::int64_t>{H, W}).mode(torch::kBilinear).align_corners(false));
}
}  // namespace

SegHeadType parse_seg_head_type(const std::string& name) {
  if (name == "linear") return SegHeadType::linear;
  if (name == "conv") return SegHeadType::conv;
  throw UsageError("--head " + name + ": expected linear or conv");
}

std::string seg_head_type_name(SegHeadType t) { return t == SegHeadType::conv ? "conv" : "linear"; }

// --- the module -------------------------------------------------------------------------------

SegHeadModule::SegHeadModule(SegHeadShape shape) : shape_(shape) {
  if (shape_.in < 1 || shape_.classes < 2 || (shape_.type == SegHeadType::conv && (shape_.hidden < 4 || shape_.hidden % 4)))
    throw Error("segmentation head: invalid shape in " + std::to_string(shape_.in) + ", hidden " +
                std::to_string(shape_.hidden) + ", classes " + std::to_string(shape_.classes));
  struct Layer {
    const char* name;
    std::int64_t out, in, k;
  };
  std::vector<Layer> layers;
  if (shape_.type == SegHeadType::conv) {
    const std::int64_t h = shape_.hidden;
    layers.push_back({"proj", h, shape_.in, 1});
    layers.push_back({"conv1", h / 2, h, 3});
    layers.push_back({"conv2", h / 4, h / 2, 3});
    layers.push_back({"classifier", shape_.classes, h / 4, 1});
  } else {
    layers.push_back({"classifier", shape_.classes, shape_.in, 1});
  }
  for (const auto& l : layers) {
    auto node = register_module(l.name, std::make_shared<torch::nn::Module>());
    w_.push_back(node->register_parameter("weight", torch::zeros({l.out, l.in, l.k, l.k})));
    b_.push_back(node->register_parameter("bias", torch::zeros({l.out})));
  }
}

torch::Tensor SegHeadModule::forward(const torch::Tensor& x) {
  if (shape_.type == SegHeadType::linear) return at::conv2d(x, w_[0], b_[0]);
  torch::Tensor h = at::gelu(at::conv2d(x, w_[0], b_[0]));
  h = at::gelu(at::conv2d(h, w_[1], b_[1], 1, 1));
  h = up2(h);
  h = at::gelu(at::conv2d(h, w_[2], b_[2], 1, 1));
  h = up2(h);
  return at::conv2d(h, w_[3], b_[3]);
}

void SegHeadModule::init(std::uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(seed);
  for (std::size_t i = 0; i < w_.size(); ++i) {
    const bool classifier = i + 1 == w_.size();
    const double fan_in = static_cast<double>(w_[i].size(1) * w_[i].size(2) * w_[i].size(3));
    const double sd = classifier ? 0.01 : std::sqrt(2.0 / fan_in);
    w_[i].copy_(sd * torch::randn(w_[i].sizes(), gen, torch::kFloat32));
    b_[i].zero_();
  }
}

torch::Tensor SegHead::standardize(const torch::Tensor& x) const {
  if (!mean.defined()) return x;
  const std::int64_t C = mean.size(0);
  return (x - mean.to(x.device()).view({1, C, 1, 1})) / std.to(x.device()).view({1, C, 1, 1});
}

torch::Tensor SegHead::logits(const torch::Tensor& tokens) const {
  torch::NoGradGuard no_grad;
  const torch::Device device = module->parameters().front().device();
  return module->forward(standardize(tokens.to(device, torch::kFloat32)));
}

// --- the folder -------------------------------------------------------------------------------

nlohmann::json seg_head_json(const SegHead& head) {
  const SegHeadInfo& i = head.info;
  nlohmann::json shape = {{"type", seg_head_type_name(i.shape.type)}, {"in", i.shape.in}, {"classes", i.shape.classes}};
  if (i.shape.type == SegHeadType::conv) {
    shape["hidden"] = i.shape.hidden;
    shape["activation"] = "gelu";
    shape["upscale"] = 4;
  }
  nlohmann::json j = {{"format", kFormat},
          {"version", std::to_string(kVersionMajor) + "." + std::to_string(kVersionMinor)},
          {"task", "segmentation"},
          {"classes", i.classes},
          {"feature", i.feature},
          {"head", shape},
          {"stride", i.stride},
          {"standardize", head.mean.defined()}};
  i.write_to(j);
  return j;
}

void write_seg_head_files(const std::string& folder, const SegHead& head) {
  model::NamedTensors tensors;
  for (const auto& p : head.module->named_parameters(true)) tensors.emplace_back(p.key(), p.value());
  if (head.mean.defined()) {
    tensors.emplace_back("standardize.mean", head.mean);
    tensors.emplace_back("standardize.std", head.std);
  }
  write_tensors(folder + "/head.safetensors", tensors, {{"format", kFormat}});
  cli::write_file_atomic(folder + "/head.json", seg_head_json(head).dump(2) + "\n");
}

SegHead load_seg_head(const std::string& folder) {
  const std::string json_path = folder + "/head.json";
  const nlohmann::json j = read_head_json(folder, kFormat, kVersionMajor);
  SegHead head;
  SegHeadInfo& i = head.info;
  try {
    i.classes = j.at("classes").get<std::vector<std::string>>();
    i.feature = j.at("feature").get<std::string>();
    const auto& h = j.at("head");
    i.shape.type = parse_seg_head_type(h.at("type").get<std::string>());
    i.shape.in = h.at("in").get<std::int64_t>();
    i.shape.classes = h.at("classes").get<std::int64_t>();
    if (i.shape.type == SegHeadType::conv) i.shape.hidden = h.at("hidden").get<std::int64_t>();
    i.stride = j.at("stride").get<int>();
    i.read_from(j);
  } catch (const nlohmann::json::exception& e) {
    throw Error(at(json_path, std::string("bad field: ") + e.what()));
  } catch (const UsageError& e) {
    throw Error(at(json_path, e.what()));
  }
  if (static_cast<std::int64_t>(i.classes.size()) != i.shape.classes)
    throw Error(at(json_path, std::to_string(i.classes.size()) + " class names but the head has " +
                                  std::to_string(i.shape.classes) + " outputs"));
  if (i.feature != "patch" && i.feature != "patch4") throw Error(at(json_path, "unknown feature \"" + i.feature + "\""));
  try {
    head.module = std::make_shared<SegHeadModule>(i.shape);
  } catch (const Error& e) {
    throw Error(at(json_path, e.what()));
  }
  const std::string file = folder + "/head.safetensors";
  auto tensors = read_tensors(file);
  auto take = [&](const std::string& name, torch::IntArrayRef shape) { return head_tensor(tensors, name, shape, file); };
  {
    torch::NoGradGuard no_grad;
    for (auto& p : head.module->named_parameters(true)) p.value().copy_(take(p.key(), p.value().sizes()));
  }
  if (j.value("standardize", false)) {
    head.mean = take("standardize.mean", {i.shape.in});
    head.std = take("standardize.std", {i.shape.in});
  }
  head.module->eval();
  return head;
}

// --- records ----------------------------------------------------------------------------------

PatchGrid input_patch_grid(int width, int height, const image::PreprocessConfig& preprocess, int patch_size) {
  const image::InputWindow win = image::input_window(width, height, preprocess);
  PatchGrid g;
  g.image_width = width;
  g.image_height = height;
  g.x0 = win.x0;
  g.y0 = win.y0;
  g.x1 = win.x1;
  g.y1 = win.y1;
  g.h = win.height / patch_size;
  g.w = win.width / patch_size;
  return g;
}

bool record_patch_grid(const io::Record& record, PatchGrid& g, int fallback_w, int fallback_h) {
  const io::Field* jf = record.find("json");
  nlohmann::json meta;
  if (jf) meta = nlohmann::json::parse(jf->data, nullptr, false);
  if (jf && (meta.is_discarded() || !meta.is_object())) throw Error(at(record.key + ".json", "not a JSON object"));
  if (!jf || !meta.contains("patch_grid")) {
    if (fallback_w <= 0 || fallback_h <= 0) return false;
    g.image_width = fallback_w;
    g.image_height = fallback_h;
    g.x0 = g.y0 = 0;
    g.x1 = fallback_w;
    g.y1 = fallback_h;
    return true;
  }
  try {
    const auto& p = meta.at("patch_grid");
    g.image_width = p.at("image_size").at(0).get<int>();
    g.image_height = p.at("image_size").at(1).get<int>();
    const auto& b = p.at("box");
    g.x0 = b.at(0).get<double>();
    g.y0 = b.at(1).get<double>();
    g.x1 = b.at(2).get<double>();
    g.y1 = b.at(3).get<double>();
    g.h = p.at("grid").at(0).get<std::int64_t>();
    g.w = p.at("grid").at(1).get<std::int64_t>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(at(record.key + ".json", std::string("bad patch_grid: ") + e.what()));
  }
  if (g.image_width <= 0 || g.image_height <= 0 || !(g.x1 > g.x0) || !(g.y1 > g.y0))
    throw Error(at(record.key + ".json", "bad patch_grid: empty image or box"));
  return true;
}

torch::Tensor record_tokens(const io::Record& record, const std::string& feature) {
  const std::string name = feature + ".npy";
  const io::Field* f = record.find(name);
  if (!f) return {};
  const std::string where = record.key + "." + name;
  io::NdArray a = io::read_npy(f->data, where);
  const std::size_t want = feature == "patch4" ? 4 : 3;
  if (a.shape.size() != want)
    throw Error(at(where, feature == "patch4" ? "expected [n, h, w, D] tokens" : "expected [h, w, D] tokens"));
  torch::ScalarType dtype;
  if (a.dtype == io::DType::f16) dtype = torch::kHalf;
  else if (a.dtype == io::DType::f32) dtype = torch::kFloat32;
  else throw Error(at(where, "expected float16 or float32 tokens"));
  // A view of the npy bytes, rearranged into [C, h, w] by one copy into owned memory.
  const torch::Tensor view = torch::from_blob(a.data.data(), a.shape, dtype);
  const std::int64_t h = a.shape[want - 3], w = a.shape[want - 2], D = a.shape[want - 1];
  if (want == 3) {
    torch::Tensor out = torch::empty({D, h, w}, dtype);
    out.copy_(view.permute({2, 0, 1}));
    return out;
  }
  const std::int64_t n = a.shape[0];  // channel l * D + d is block l's channel d
  torch::Tensor out = torch::empty({n * D, h, w}, dtype);
  out.view({n, D, h, w}).copy_(view.permute({0, 3, 1, 2}));
  return out;
}

torch::Tensor sample_label_map(const Image& map, const PatchGrid& g, std::int64_t out_h, std::int64_t out_w) {
  torch::Tensor out = torch::empty({out_h, out_w}, torch::kUInt8);
  std::uint8_t* o = out.data_ptr<std::uint8_t>();
  const double kx = static_cast<double>(map.width) / g.image_width, ky = static_cast<double>(map.height) / g.image_height;
  std::vector<int> xs(static_cast<std::size_t>(out_w));
  for (std::int64_t x = 0; x < out_w; ++x) {
    const double u = (g.x0 + (static_cast<double>(x) + 0.5) * (g.x1 - g.x0) / static_cast<double>(out_w)) * kx;
    xs[static_cast<std::size_t>(x)] = std::clamp(static_cast<int>(std::floor(u)), 0, map.width - 1);
  }
  for (std::int64_t y = 0; y < out_h; ++y) {
    const double v = (g.y0 + (static_cast<double>(y) + 0.5) * (g.y1 - g.y0) / static_cast<double>(out_h)) * ky;
    const int sy = std::clamp(static_cast<int>(std::floor(v)), 0, map.height - 1);
    if (map.bits == 16) {
      const std::uint16_t* row = map.u16() + static_cast<std::size_t>(sy) * map.width;
      for (std::int64_t x = 0; x < out_w; ++x)
        o[y * out_w + x] = static_cast<std::uint8_t>(std::min<int>(row[xs[static_cast<std::size_t>(x)]], 255));
    } else {
      const std::uint8_t* row = map.u8() + static_cast<std::size_t>(sy) * map.width;
      for (std::int64_t x = 0; x < out_w; ++x) o[y * out_w + x] = row[xs[static_cast<std::size_t>(x)]];
    }
  }
  return out;
}

Image logits_to_label_map(const torch::Tensor& logits, const PatchGrid& g, int width, int height) {
  // Bilinear interpolation is separable, and grid_sample's border mode clamps each coordinate on its
  // own, so a row of logits is blended from two grid rows once and each pixel from two of its
  // columns; the argmax is taken per pixel, with no K x H x W buffer. Equal to argmax(grid_sample(
  // logits, bilinear, border, align_corners false)) at the pixel centres mapped into the box.
  torch::Tensor z = logits.to(torch::kCPU, torch::kFloat32).contiguous();
  const std::int64_t K = z.size(0), gh = z.size(1), gw = z.size(2);
  const float* zd = z.data_ptr<float>();
  struct Tap {
    std::int64_t i0, i1;
    float w;
  };
  auto taps = [](int n, double scale, double b0, double b1, std::int64_t cells) {
    std::vector<Tap> t(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      double c = ((static_cast<double>(i) + 0.5) * scale - b0) / (b1 - b0) * static_cast<double>(cells) - 0.5;
      c = std::clamp(c, 0.0, static_cast<double>(cells - 1));
      const auto i0 = static_cast<std::int64_t>(std::floor(c));
      t[static_cast<std::size_t>(i)] = {i0, std::min(i0 + 1, cells - 1), static_cast<float>(c - static_cast<double>(i0))};
    }
    return t;
  };
  const auto tx = taps(width, static_cast<double>(g.image_width) / width, g.x0, g.x1, gw);
  const auto ty = taps(height, static_cast<double>(g.image_height) / height, g.y0, g.y1, gh);
  Image out = Image::gray8(width, height);
  std::vector<float> row(static_cast<std::size_t>(K * gw));
  for (int y = 0; y < height; ++y) {
    const Tap& v = ty[static_cast<std::size_t>(y)];
    for (std::int64_t k = 0; k < K; ++k) {
      const float* a = zd + (k * gh + v.i0) * gw;
      const float* b = zd + (k * gh + v.i1) * gw;
      for (std::int64_t c = 0; c < gw; ++c) row[static_cast<std::size_t>(k * gw + c)] = a[c] + v.w * (b[c] - a[c]);
    }
    std::uint8_t* o = out.u8() + static_cast<std::size_t>(y) * width;
    for (int x = 0; x < width; ++x) {
      const Tap& u = tx[static_cast<std::size_t>(x)];
      int best = 0;
      float best_v = 0;
      for (std::int64_t k = 0; k < K; ++k) {
        const float* r = row.data() + k * gw;
        const float val = r[u.i0] + u.w * (r[u.i1] - r[u.i0]);
        if (k == 0 || val > best_v) {
          best_v = val;
          best = static_cast<int>(k);
        }
      }
      o[x] = static_cast<std::uint8_t>(best);
    }
  }
  return out;
}

std::vector<std::string> stream_mask_classes(const nlohmann::json& header) {
  auto list = [](const nlohmann::json& v) {
    std::vector<std::string> out;
    if (!v.is_array()) return out;
    for (const auto& e : v)
      if (e.is_string()) out.push_back(e.get<std::string>());
    return out;
  };
  if (header.contains("fields") && header["fields"].is_object() && header["fields"].contains("mask.png") &&
      header["fields"]["mask.png"].is_object() && header["fields"]["mask.png"].contains("classes"))
    return list(header["fields"]["mask.png"]["classes"]);
  if (header.contains("classes")) return list(header["classes"]);
  return {};
}

namespace {

// The class list of a set of masks while records are read: the names given (values 1..n), else the
// stream's, else the first record's json "classes", else "class 1".. up to the largest value seen.
class MaskClasses {
 public:
  MaskClasses(const std::vector<std::string>& given, const nlohmann::json& header) {
    if (!given.empty()) {
      names_ = {"background"};
      names_.insert(names_.end(), given.begin(), given.end());
    } else {
      names_ = stream_mask_classes(header);
    }
  }
  // The record's label map, decoded and checked (one gray channel).
  Image mask_of(const io::Record& r) {
    const io::Field* mf = r.find("mask.png");
    if (!mf) throw Error(at(r.key, "no mask.png label map to learn from"));
    Image mask = io::decode_image(mf->data, r.key + ".mask.png");
    if (mask.channels != 1) throw Error(at(r.key + ".mask.png", "a label map must be one gray channel"));
    if (names_.empty())
      if (const io::Field* jf = r.find("json")) {
        nlohmann::json m = nlohmann::json::parse(jf->data, nullptr, false);
        if (m.is_object() && m.contains("classes")) names_ = stream_mask_classes(m);
      }
    return mask;
  }
  // A target's values against the classes.
  void check(const torch::Tensor& y, const std::string& key) {
    max_value_ = std::max(max_value_, static_cast<int>(y.max().item<std::uint8_t>()));
    if (!names_.empty() && max_value_ >= static_cast<int>(names_.size()))
      throw Error(at(key + ".mask.png", "value " + std::to_string(max_value_) + " but only " +
                                            std::to_string(names_.size()) + " classes (background included)"));
  }
  std::vector<std::string> names() const {
    if (!names_.empty()) return names_;
    std::vector<std::string> out = {"background"};
    for (int c = 1; c <= std::max(1, max_value_); ++c) out.push_back("class " + std::to_string(c));
    return out;
  }

 private:
  std::vector<std::string> names_;
  int max_value_ = 0;
};

}  // namespace

SegSet load_seg_set(data::RecordSource& source, const std::string& feature, int stride,
                    const std::vector<std::string>& classes, const std::string& where) {
  if (stride < 1) throw UsageError("--stride must be at least 1");
  SegSet s;
  s.header = source.header();
  MaskClasses mc(classes, s.header);
  std::vector<torch::Tensor> xs, ys;
  std::vector<std::int64_t> shape;
  io::Record r;
  while (source.next(r)) {
    try {
      torch::Tensor t = record_tokens(r, feature);
      if (!t.defined())
        throw Error(at(r.key, "no " + feature + ".npy field (embed with cx-embed --emit " + feature + ")"));
      if (shape.empty()) {
        shape.assign(t.sizes().begin(), t.sizes().end());
      } else if (!t.sizes().equals(shape)) {
        throw Error(at(r.key + "." + feature + ".npy", "tokens of another shape than the first record's"));
      }
      Image mask = mc.mask_of(r);
      PatchGrid g;
      record_patch_grid(r, g, mask.width, mask.height);
      g.h = t.size(1);
      g.w = t.size(2);
      torch::Tensor y = sample_label_map(mask, g, g.h * stride, g.w * stride);
      mc.check(y, r.key);
      s.keys.push_back(r.key);
      xs.push_back(std::move(t));
      ys.push_back(std::move(y));
    } catch (const Error& e) {
      throw Error(at(where, e.what()));  // the stream's name, then the record's problem
    }
  }
  if (xs.empty()) throw Error(at(where, "no records"));
  s.classes = mc.names();
  s.x = torch::stack(xs);
  s.y = torch::stack(ys);
  return s;
}

// --- loss and metrics -------------------------------------------------------------------------

torch::Tensor ce_dice_loss(const torch::Tensor& logits, const torch::Tensor& target) {
  const std::int64_t K = logits.size(1);
  torch::Tensor ce = F::cross_entropy(logits, target);
  torch::Tensor p = torch::softmax(logits, 1);
  torch::Tensor onehot = F::one_hot(target, K).permute({0, 3, 1, 2}).to(p.dtype());
  torch::Tensor inter = (p * onehot).sum({0, 2, 3});
  torch::Tensor denom = p.sum({0, 2, 3}) + onehot.sum({0, 2, 3});
  torch::Tensor dice = (2.0 * inter + 1.0) / (denom + 1.0);
  torch::Tensor fg = dice.slice(0, 1).mean();
  return 0.5 * ce + 0.5 * (1.0 - fg);
}

SegEvaluation evaluate_dice(const torch::Tensor& pred, const torch::Tensor& target, std::int64_t classes) {
  SegEvaluation e;
  torch::Tensor p = pred.to(torch::kCPU), t = target.to(torch::kCPU);
  double sum = 0;
  int defined = 0;
  for (std::int64_t c = 1; c < classes; ++c) {
    torch::Tensor pc = (p == c).flatten(1).to(torch::kFloat64), tc = (t == c).flatten(1).to(torch::kFloat64);
    torch::Tensor inter = (pc * tc).sum(1), size = pc.sum(1) + tc.sum(1);
    torch::Tensor used = size > 0;
    const auto n = used.sum().item<std::int64_t>();
    double d = std::nan("");
    if (n > 0) d = (2.0 * inter.masked_select(used) / size.masked_select(used)).mean().item<double>();
    e.dice.push_back(d);
    if (!std::isnan(d)) {
      sum += d;
      ++defined;
    }
  }
  if (defined > 0) e.macro = sum / defined;
  return e;
}

// --- training ---------------------------------------------------------------------------------

namespace {

// Per-channel mean and standard deviation of tokens [N, C, h, w], in blocks of records, float64 sums.
void fit_channels(const torch::Tensor& x, torch::Tensor& mean, torch::Tensor& sd) {
  constexpr std::int64_t kBlock = 64;
  const std::int64_t N = x.size(0), C = x.size(1);
  const double count = static_cast<double>(N * x.size(2) * x.size(3));
  torch::Tensor sum = torch::zeros({C}, torch::kFloat64);
  for (std::int64_t b = 0; b < N; b += kBlock)
    sum += x.narrow(0, b, std::min(kBlock, N - b)).to(torch::kFloat32).sum({0, 2, 3}).to(torch::kFloat64);
  torch::Tensor m = sum / count;
  torch::Tensor ss = torch::zeros({C}, torch::kFloat64);
  torch::Tensor m4 = m.to(torch::kFloat32).view({1, C, 1, 1});
  for (std::int64_t b = 0; b < N; b += kBlock) {
    torch::Tensor d = x.narrow(0, b, std::min(kBlock, N - b)).to(torch::kFloat32) - m4;
    ss += (d * d).sum({0, 2, 3}).to(torch::kFloat64);
  }
  torch::Tensor s = (ss / count).sqrt();
  const double floor = std::max(s.max().item<double>() * 1e-6, 1e-12);
  mean = m.to(torch::kFloat32);
  sd = s.clamp_min(floor).to(torch::kFloat32);
}

torch::Tensor predict_labels(const SegHead& head, const torch::Tensor& x, std::int64_t H, std::int64_t W, std::int64_t batch) {
  std::vector<torch::Tensor> out;
  for (std::int64_t b = 0; b < x.size(0); b += batch) {
    torch::Tensor z = head.logits(x.narrow(0, b, std::min(batch, x.size(0) - b)));
    out.push_back(resize_logits(z, H, W).argmax(1).to(torch::kCPU, torch::kUInt8));
  }
  return torch::cat(out);
}

}  // namespace

SegHead train_seg_head(const SegSet& train, const SegSet* val, const std::string& feature, int stride,
                       const SegTrainOptions& o, const std::function<void(const SegEpochReport&)>& on_epoch) {
  const std::int64_t N = train.rows(), C = train.x.size(1), K = static_cast<std::int64_t>(train.classes.size());
  const std::int64_t H = train.y.size(1), W = train.y.size(2);
  if (o.batch < 1 || o.epochs < 1) throw UsageError("--batch and --epochs must be at least 1");
  if (o.head == SegHeadType::conv && (o.hidden < 4 || o.hidden % 4)) throw UsageError("--hidden must be a multiple of 4");
  if (o.dropout < 0 || o.dropout >= 1) throw UsageError("--dropout must be in [0, 1)");
  if (val) {
    if (!val->x.sizes().slice(1).equals(train.x.sizes().slice(1)))
      throw Error("validation tokens have another shape than the training tokens");
    if (val->classes.size() != train.classes.size())
      throw Error("validation masks have " + std::to_string(val->classes.size()) + " classes, training " + std::to_string(K));
    check_same_encoder(train.header, val->header);
  }

  SegHead head;
  head.info.classes = train.classes;
  head.info.feature = feature;
  head.info.stride = stride;
  head.info.shape = {o.head, C, o.head == SegHeadType::conv ? o.hidden : 0, K};
  if (train.header.contains("model") && train.header["model"].is_object()) head.info.encoder = train.header["model"];
  if (o.standardize) fit_channels(train.x, head.mean, head.std);

  head.module = std::make_shared<SegHeadModule>(head.info.shape);
  head.module->init(o.seed);
  head.module->to(o.device);
  head.module->train();
  AdamW opt({param_group(*head.module, o.lr, o.weight_decay)});

  const std::int64_t per_epoch = (N + o.batch - 1) / o.batch;
  const std::int64_t total = per_epoch * o.epochs;
  const LrSchedule schedule = LrSchedule::with_warmup_fraction(o.schedule, total, o.warmup);
  const std::int64_t gh = train.x.size(2), gw = train.x.size(3);

  EarlyStopping stopping(o.patience);
  int epochs_run = 0;
  for (int epoch = 0; epoch < o.epochs; ++epoch) {
    auto perm = random::permutation(N, random::training_rng(o.seed, kShufflePurpose, static_cast<std::uint64_t>(epoch)));
    double loss_sum = 0;
    for (std::int64_t b = 0; b < per_epoch; ++b) {
      const std::int64_t begin = b * o.batch, count = std::min(o.batch, N - begin);
      torch::Tensor idx = torch::from_blob(perm.data() + begin, {count}, torch::kInt64).clone();
      torch::Tensor xb = head.standardize(train.x.index_select(0, idx).to(o.device, torch::kFloat32));
      if (o.dropout > 0) {
        // Counter-based: the mask of (seed, epoch, batch) does not depend on anything run before.
        auto gen = at::detail::createCPUGenerator(CounterRng(o.seed, kDropoutPurpose, static_cast<std::uint64_t>(epoch),
                                                             static_cast<std::uint64_t>(b)).next());
        std::vector<std::int64_t> ms = {count, o.head == SegHeadType::conv ? 1 : C, gh, gw};
        torch::Tensor keep = torch::bernoulli(torch::full(ms, 1.0 - o.dropout, torch::kFloat32), gen);
        xb = xb * keep.to(o.device) / (1.0 - o.dropout);
      }
      torch::Tensor yb = train.y.index_select(0, idx).to(o.device, torch::kInt64);
      torch::Tensor z = resize_logits(head.module->forward(xb), H, W);
      torch::Tensor loss = ce_dice_loss(z, yb);
      check_finite_loss(loss.item<double>(), "epoch " + std::to_string(epoch + 1) + ", batch " + std::to_string(b + 1));
      opt.zero_grad();
      loss.backward();
      opt.step(schedule(epoch * per_epoch + b));
      loss_sum += loss.item<double>();
    }
    epochs_run = epoch + 1;
    SegEpochReport report;
    report.epoch = epoch + 1;
    report.train_loss = loss_sum / static_cast<double>(per_epoch);
    if (val) {
      head.module->eval();
      SegEvaluation e = evaluate_dice(predict_labels(head, val->x, val->y.size(1), val->y.size(2), o.batch), val->y, K);
      head.module->train();
      report.val_dice = e.macro;
      report.best = stopping.update(e.macro, epoch + 1, head.module->parameters());
    }
    if (on_epoch) on_epoch(report);
    if (stopping.should_stop()) break;
  }
  stopping.restore_best(head.module->parameters());
  head.module->eval();
  head.module->to(torch::kCPU);

  head.info.training = {{"optimizer", "AdamW"},
                        {"records", N},
                        {"grid", {gh, gw}},
                        {"target_size", {H, W}},
                        {"epochs", o.epochs},
                        {"epochs_run", epochs_run},
                        {"best_epoch", stopping.have_best() ? nlohmann::json(stopping.best_epoch()) : nlohmann::json()},
                        {"batch", o.batch},
                        {"lr", o.lr},
                        {"weight_decay", o.weight_decay},
                        {"schedule", schedule_name(o.schedule)},
                        {"warmup", o.warmup},
                        {"patience", o.patience},
                        {"dropout", o.dropout},
                        {"standardize", o.standardize},
                        {"seed", o.seed},
                        {"loss", "0.5 cross-entropy + 0.5 (1 - soft Dice over the foreground classes)"}};
  if (val) {
    SegEvaluation e = evaluate_dice(predict_labels(head, val->x, val->y.size(1), val->y.size(2), o.batch), val->y, K);
    nlohmann::json per = nlohmann::json::object();
    for (std::size_t c = 0; c < e.dice.size(); ++c)
      per[train.classes[c + 1]] = std::isnan(e.dice[c]) ? nlohmann::json() : nlohmann::json(e.dice[c]);
    head.info.metrics["val"] = {{"records", val->rows()},
                                {"mean_dice", std::isnan(e.macro) ? nlohmann::json() : nlohmann::json(e.macro)},
                                {"dice", per},
                                {"resolution", "training targets (grid x stride)"}};
  }
  return head;
}

// --- fine-tuning --------------------------------------------------------------------------------

torch::Tensor encoder_tokens(model::VitModel& encoder, const torch::Tensor& pixels, const std::string& feature) {
  model::VitForwardOptions fo;
  const bool four = feature == "patch4";
  if (four) {
    fo.hidden_layers = model::cx5_layers(encoder.config());
    fo.norm_hidden_states = true;
  } else if (feature != "patch") {
    throw UsageError("--feature " + feature + ": expected patch or patch4");
  }
  model::VitOutput out = encoder.forward(pixels, fo);
  const std::int64_t prefix = encoder.num_prefix_tokens(), B = pixels.size(0), h = out.grid_h, w = out.grid_w;
  if (!four) {
    torch::Tensor t = out.last_hidden_state.slice(1, prefix);
    return t.reshape({B, h, w, t.size(2)}).permute({0, 3, 1, 2});
  }
  std::vector<torch::Tensor> layers;
  for (const auto& hs : out.hidden_states) layers.push_back(hs.slice(1, prefix));
  torch::Tensor t = torch::stack(layers, 1);  // [B, n, h*w, D]
  const std::int64_t n = t.size(1), D = t.size(3);
  return t.reshape({B, n, h, w, D}).permute({0, 2, 3, 1, 4}).reshape({B, h, w, n * D}).permute({0, 3, 1, 2});
}

SegImageSet load_seg_images(data::RecordSource& source, const image::PreprocessConfig& preprocess, int patch_size, int stride,
                            const std::vector<std::string>& classes, const std::string& where) {
  if (stride < 1) throw UsageError("--stride must be at least 1");
  SegImageSet s;
  s.header = source.header();
  MaskClasses mc(classes, s.header);
  std::vector<torch::Tensor> ys;
  io::Record r;
  while (source.next(r)) {
    const io::Field* img = r.image();
    if (!img) throw Error(at(r.key, "no image field (png, jpg) to fine-tune on (give the stream cx-ingest wrote, or cx-embed --keep-image)"));
    Image mask = mc.mask_of(r);
    Image im = io::decode_image(img->data, r.key + "." + img->name);
    const PatchGrid g = input_patch_grid(im.width, im.height, preprocess, patch_size);
    torch::Tensor y = sample_label_map(mask, g, g.h * stride, g.w * stride);
    mc.check(y, r.key);
    s.keys.push_back(r.key);
    s.image_names.push_back(r.key + "." + img->name);
    s.images.push_back(img->data);
    s.masks.push_back(r.find("mask.png")->data);
    ys.push_back(std::move(y));
  }
  if (s.keys.empty()) throw Error(at(where, "no records"));
  s.classes = mc.names();
  s.y = torch::stack(ys);
  return s;
}

namespace {

class SegmentTask : public FinetuneTask {
 public:
  SegmentTask(const SegImageSet& train, const SegImageSet* val, const std::string& feature, int stride,
              const FinetuneOptions& o, SegHead& head)
      : train_(train), val_(val), feature_(feature), stride_(stride), o_(o), head_(head), aug_(augment_options_for(o)) {
    equalize_ = o.preprocess.pipeline == image::Pipeline::cxformer && o.preprocess.equalize;
    if (val)
      for (const auto& s : val->images) val_images_.push_back(&s);
  }
  torch::nn::Module& head() override { return *head_.module; }
  std::int64_t records() const override { return train_.rows(); }
  nlohmann::json signature() const override {
    return {{"task", "segmentation"},
            {"classes", head_.info.classes},
            {"head", seg_head_type_name(head_.info.shape.type)},
            {"hidden", head_.info.shape.hidden},
            {"feature", feature_},
            {"stride", stride_}};
  }
  Sample input(std::int64_t r, std::int64_t epoch) const override {
    const auto k = static_cast<std::size_t>(r);
    if (!o_.augment) return {preprocess_images({&train_.images[k]}, {train_.image_names[k]}, o_.preprocess)[0], train_.y[r]};
    Image g = decode_gray8(train_.images[k], train_.image_names[k], equalize_);
    const Image m = io::decode_image(train_.masks[k], train_.keys[k] + ".mask.png");
    PatchGrid whole;  // the mask over the whole image, at the image's size (a mask may be stored smaller)
    whole.image_width = m.width;
    whole.image_height = m.height;
    whole.x1 = m.width;
    whole.y1 = m.height;
    torch::Tensor labels = sample_label_map(m, whole, g.height, g.width);
    CounterRng rng(o_.seed, kAugmentPurpose, static_cast<std::uint64_t>(epoch), static_cast<std::uint64_t>(r));
    torch::Tensor target;
    torch::Tensor pixels = augment_gray_with_mask(gray_to_unit(g), labels, aug_, rng, train_.y.size(1), train_.y.size(2), target);
    return {pixels, target};
  }
  torch::Tensor loss(model::VitModel& encoder, const torch::Tensor& x, const std::vector<std::int64_t>&,
                     const torch::Tensor& targets) override {
    torch::Tensor tokens;
    {
      model::AutocastGuard autocast(o_.precision, o_.device);
      tokens = encoder_tokens(encoder, x, feature_);
    }
    torch::Tensor y = targets.to(o_.device, torch::kInt64);
    torch::Tensor z = resize_logits(head_.module->forward(tokens.to(torch::kFloat32)), y.size(1), y.size(2));
    return ce_dice_loss(z, y);
  }
  std::int64_t validation_records() const override { return val_ ? val_->rows() : 0; }
  double validate(model::VitModel& encoder, nlohmann::json& report) override {
    torch::NoGradGuard no_grad;
    encoder.eval();
    head_.module->eval();
    std::vector<torch::Tensor> preds;
    for (std::size_t b = 0; b < val_images_.size(); b += static_cast<std::size_t>(o_.batch)) {
      const std::size_t e = std::min(val_images_.size(), b + static_cast<std::size_t>(o_.batch));
      std::vector<const std::string*> chunk(val_images_.begin() + static_cast<std::ptrdiff_t>(b), val_images_.begin() + static_cast<std::ptrdiff_t>(e));
      std::vector<std::string> names(val_->image_names.begin() + static_cast<std::ptrdiff_t>(b),
                                     val_->image_names.begin() + static_cast<std::ptrdiff_t>(e));
      torch::Tensor x = preprocess_images(chunk, names, o_.preprocess).to(o_.device);
      torch::Tensor tokens;
      {
        model::AutocastGuard autocast(o_.precision, o_.device);
        tokens = encoder_tokens(encoder, x, feature_);
      }
      torch::Tensor z = head_.module->forward(tokens.to(torch::kFloat32));
      preds.push_back(resize_logits(z, val_->y.size(1), val_->y.size(2)).argmax(1).to(torch::kCPU, torch::kUInt8));
    }
    SegEvaluation e = evaluate_dice(torch::cat(preds), val_->y, static_cast<std::int64_t>(head_.info.classes.size()));
    nlohmann::json per = nlohmann::json::object();
    for (std::size_t c = 0; c < e.dice.size(); ++c)
      per[head_.info.classes[c + 1]] = std::isnan(e.dice[c]) ? nlohmann::json() : nlohmann::json(e.dice[c]);
    report = {{"records", val_->rows()},
              {"mean_dice", std::isnan(e.macro) ? nlohmann::json() : nlohmann::json(e.macro)},
              {"dice", per},
              {"resolution", "training targets (grid x stride)"}};
    return e.macro;
  }

 private:
  const SegImageSet& train_;
  const SegImageSet* val_;
  std::string feature_;
  int stride_;
  const FinetuneOptions& o_;
  SegHead& head_;
  AugmentOptions aug_;
  bool equalize_ = false;
  std::vector<const std::string*> val_images_;
};

}  // namespace

SegFinetuneResult finetune_seg(const SegImageSet& train, const SegImageSet* val, const std::string& feature, int stride,
                               SegHeadType head_type, std::int64_t hidden, const FinetuneOptions& o,
                               const std::function<void(const FinetuneProgress&)>& on_progress) {
  if (val && val->classes.size() != train.classes.size())
    throw Error("validation masks have " + std::to_string(val->classes.size()) + " classes, training " +
                std::to_string(train.classes.size()));
  model::LoadOptions lo;
  lo.device = o.device;
  model::LoadedVit base = model::load_hf_vit(o.encoder_folder, lo);
  nlohmann::json base_info = {{"id", base.model_id}, {"sha256", base.weights_sha256}};
  const auto& c = base.config;
  const std::int64_t C = feature == "patch4" ? static_cast<std::int64_t>(model::cx5_layers(c).size()) * c.hidden_size : c.hidden_size;

  SegHead head;
  head.info.classes = train.classes;
  head.info.feature = feature;
  head.info.stride = stride;
  head.info.shape = {head_type, C, head_type == SegHeadType::conv ? hidden : 0, static_cast<std::int64_t>(train.classes.size())};
  head.module = std::make_shared<SegHeadModule>(head.info.shape);
  head.module->init(o.seed);
  head.module->to(o.device);

  SegmentTask task(train, val, feature, stride, o, head);
  FinetuneLoopResult loop = finetune_loop(*base.model, base_info, task, o, on_progress);
  SegFinetuneResult result;
  result.finished = loop.finished;
  result.steps_done = loop.steps_done;
  result.encoder = base.model;
  if (loop.finished) {
    if (loop.have_best) head.info.metrics["val"] = loop.best_report;
    base.model->to(torch::kCPU);
    head.module->to(torch::kCPU);
    head.info.training = loop.training;
    head.info.training["loss"] = "0.5 cross-entropy + 0.5 (1 - soft Dice over the foreground classes)";
    head.info.encoder_folder = "encoder";
    head.info.preprocess = o.preprocess_record;
  }
  result.head = head;
  return result;
}

void write_finetuned_seg_head(const std::string& folder, SegFinetuneResult& result, const FinetuneOptions& options) {
  write_folder_atomic(folder, [&](const std::string& tmp) {
    result.head.info.encoder = save_finetuned_encoder(tmp + "/encoder", *result.encoder, options);
    write_seg_head_files(tmp, result.head);
  });
}

}  // namespace cx::train
