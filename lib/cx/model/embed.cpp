#include "cx/model/embed.hpp"

#include <cstring>

#include "cx/cli/error.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"

namespace cx::model {

namespace {

const std::vector<std::string> kImageFields = {"png", "jpg", "jpeg"};

std::string npy_of(const torch::Tensor& t_in, bool f16) {
  torch::Tensor t = t_in.to(torch::kCPU, f16 ? torch::kHalf : torch::kFloat32).contiguous();
  io::NdArray a;
  a.dtype = f16 ? io::DType::f16 : io::DType::f32;
  a.shape.assign(t.sizes().begin(), t.sizes().end());
  a.data.resize(t.numel() * t.element_size());
  std::memcpy(a.data.data(), t.data_ptr(), a.data.size());
  return io::write_npy(a);
}

}  // namespace

const std::vector<std::string>& embed_field_names() {
  static const std::vector<std::string> names = {"cls", "patch", "patch4", "reg", "last_hidden_state", "pixel_values", "cx5"};
  return names;
}

Embedder::Embedder(std::shared_ptr<VitModel> model, EmbedOptions options, BadRecord on_bad)
    : model_(std::move(model)), options_(std::move(options)), on_bad_(std::move(on_bad)) {
  for (const auto& f : options_.emit) {
    bool known = false;
    for (const auto& n : embed_field_names()) known = known || n == f;
    if (!known) throw UsageError("--emit " + f + ": unknown field (cls, patch, patch4, reg, last_hidden_state, pixel_values, cx5)");
  }
  if (options_.batch < 1) throw UsageError("--batch must be at least 1");
  model_->eval();
}

nlohmann::json Embedder::output_header(const nlohmann::json& input_header, const nlohmann::json& model_info) const {
  nlohmann::json h = input_header;
  if (!h.contains("fields") || !h["fields"].is_object()) h["fields"] = nlohmann::json::object();
  auto& fields = h["fields"];
  if (!options_.keep_image)
    for (const auto& f : kImageFields) fields.erase(f);
  if (!options_.emit.count("pixel_values")) fields.erase("pixel_values.npy");
  const auto& c = model_->config();
  std::int64_t d = c.hidden_size;
  int crop_h = options_.preprocess.crop_height, crop_w = options_.preprocess.crop_width;
  std::int64_t gh = crop_h / c.patch_size, gw = crop_w / c.patch_size;
  auto grid_note = std::string("shape for ") + std::to_string(crop_h) + "x" + std::to_string(crop_w) + " inputs";
  for (const auto& name : embed_field_names()) {
    if (!options_.emit.count(name)) continue;
    nlohmann::json f;
    if (name == "cls") f = {{"dtype", "float32"}, {"shape", {d}}, {"description", "final-LayerNorm'd CLS token"}};
    if (name == "patch")
      f = {{"dtype", options_.patch_f16 ? "float16" : "float32"}, {"shape", {gh, gw, d}},
           {"description", "last-layer normed patch tokens on the patch grid (" + grid_note + ")"}};
    if (name == "patch4")
      f = {{"dtype", options_.patch_f16 ? "float16" : "float32"},
           {"shape", {static_cast<std::int64_t>(cx5_layers(c).size()), gh, gw, d}},
           {"description", "final-LayerNorm'd patch tokens of the last min(4, L) blocks, oldest first (" + grid_note + ")"}};
    if (name == "reg") f = {{"dtype", "float32"}, {"shape", {c.num_register_tokens, d}}, {"description", "normed register tokens"}};
    if (name == "last_hidden_state")
      f = {{"dtype", "float32"}, {"shape", {1 + c.num_register_tokens + gh * gw, d}},
           {"description", "all tokens: CLS, registers, patches (" + grid_note + ")"}};
    if (name == "pixel_values") f = {{"dtype", "float32"}, {"shape", {3, crop_h, crop_w}}, {"description", "the model input"}};
    if (name == "cx5")
      f = {{"dtype", "float32"}, {"shape", {static_cast<std::int64_t>(cx5_layers(c).size() + 1) * d}},
           {"description", "CLS of the last 4 blocks (final-LayerNorm'd) + mean patch token"}};
    fields[name + ".npy"] = f;
  }
  h["model"] = model_info;
  return h;
}

torch::Tensor Embedder::pixels_of(io::Record& record, Pending& where) const {
  if (const io::Field* pv = record.find("pixel_values.npy")) {
    io::NdArray a = io::read_npy(pv->data, record.key + ".pixel_values.npy");
    if (a.shape.size() != 3 || a.shape[0] != model_->config().num_channels)
      throw Error(at(record.key + ".pixel_values.npy", "expected float32 [3, H, W], got another shape"));
    std::vector<float> v = a.to_floats();
    where.image_width = static_cast<int>(a.shape[2]);
    where.image_height = static_cast<int>(a.shape[1]);
    where.window.x1 = where.window.width = where.image_width;
    where.window.y1 = where.window.height = where.image_height;
    return torch::from_blob(v.data(), {a.shape[0], a.shape[1], a.shape[2]}, torch::kFloat32).clone();
  }
  const io::Field* img = record.image();
  if (!img) throw Error(at(record.key, "no image field (png, jpg) and no pixel_values.npy to embed"));
  if (!options_.preprocess_missing.empty())
    throw Error(at(options_.preprocess_missing, "not found, so images cannot be preprocessed (give --preprocess cxformer, or records with pixel_values.npy)"));
  Image im = image::scale_to_8bit(io::decode_image(img->data, record.key + "." + img->name));
  where.image_width = im.width;
  where.image_height = im.height;
  where.window = image::input_window(im.width, im.height, options_.preprocess);
  image::PixelValues pv = image::preprocess(im, options_.preprocess);
  return torch::from_blob(pv.data.data(), {3, pv.height, pv.width}, torch::kFloat32).clone();
}

void Embedder::push(io::Record record, std::vector<io::Record>& done) {
  Pending p;
  try {
    p.pixels = pixels_of(record, p);
    const torch::Tensor& pixels = p.pixels;
    const auto p = model_->config().patch_size;
    if (pixels.size(1) < p || pixels.size(2) < p)
      throw Error(at(record.key, "image " + std::to_string(pixels.size(2)) + "x" + std::to_string(pixels.size(1)) +
                                     " is smaller than one " + std::to_string(p) + "x" + std::to_string(p) + " patch"));
  } catch (const Error& e) {
    if (!on_bad_) throw;
    on_bad_(record.key, e.what());
    return;
  }
  // A batch holds inputs of one shape; a new shape closes the batch before it.
  if (!pending_.empty() && !pending_.front().pixels.sizes().equals(p.pixels.sizes())) run_batch(done);
  p.record = std::move(record);
  pending_.push_back(std::move(p));
  if (static_cast<int>(pending_.size()) >= options_.batch) run_batch(done);
}

void Embedder::flush(std::vector<io::Record>& done) {
  if (!pending_.empty()) run_batch(done);
}

void Embedder::run_batch(std::vector<io::Record>& done) {
  std::vector<torch::Tensor> xs;
  xs.reserve(pending_.size());
  for (auto& p : pending_) xs.push_back(p.pixels);
  torch::Tensor batch = torch::stack(xs).to(options_.device);

  VitForwardOptions fo;
  bool want_cx5 = options_.emit.count("cx5") != 0;
  const bool want_patch4 = options_.emit.count("patch4") != 0;
  if (want_cx5 || want_patch4) {
    fo.hidden_layers = cx5_layers(model_->config());
    fo.norm_hidden_states = true;
  }
  VitOutput out;
  torch::Tensor cx5;
  {
    torch::NoGradGuard guard;  // not InferenceMode: the fused attention's TensorIterator refuses inference tensors
    AutocastGuard autocast(options_.precision, options_.device);
    out = model_->forward(batch, fo);
    if (want_cx5) cx5 = cx5_features(*model_, out).to(torch::kCPU, torch::kFloat32);
  }
  torch::Tensor last = out.last_hidden_state.to(torch::kCPU, torch::kFloat32);
  const std::int64_t prefix = model_->num_prefix_tokens();
  const std::int64_t regs = model_->config().num_register_tokens;
  torch::Tensor patch4;  // [B, n, h*w, D]
  if (want_patch4) {
    std::vector<torch::Tensor> layers;
    for (const auto& h : out.hidden_states) layers.push_back(h.slice(1, prefix).to(torch::kCPU, torch::kFloat32));
    patch4 = torch::stack(layers, 1);
  }

  // Non-finite outputs are errors, not results (a NaN weight, an overflow in low precision).
  // Patch tokens written as f16 must also fit its range (65504), or they would become inf there.
  torch::Tensor finite = torch::isfinite(last).flatten(1).all(1);
  if (cx5.defined()) finite = finite.logical_and(torch::isfinite(cx5).flatten(1).all(1));
  if (patch4.defined()) finite = finite.logical_and(torch::isfinite(patch4).flatten(1).all(1));
  if (options_.patch_f16 && (options_.emit.count("patch") || options_.emit.count("patch4"))) {
    torch::Tensor big = (patch4.defined() ? patch4.flatten(1) : last.slice(1, prefix).flatten(1)).abs().amax(1);
    finite = finite.logical_and(big.le(65504.0));
  }
  const auto finite_at = finite.accessor<bool, 1>();

  for (std::size_t i = 0; i < pending_.size(); ++i) {
    io::Record& r = pending_[i].record;
    const auto idx = static_cast<std::int64_t>(i);
    if (!finite_at[idx]) {
      const std::string why = at(r.key, "the encoder's output holds non-finite values (NaN or inf" +
                                            std::string(options_.patch_f16 ? ", or patch tokens beyond float16's range" : "") +
                                            ")");
      if (!on_bad_) throw Error(why);
      on_bad_(r.key, why);
      continue;
    }
    if (!options_.keep_image)
      for (const auto& f : kImageFields) r.erase(f);
    if (!options_.emit.count("pixel_values")) r.erase("pixel_values.npy");
    torch::Tensor tokens = last[idx];
    for (const auto& name : embed_field_names()) {
      if (!options_.emit.count(name)) continue;
      if (name == "cls") r.set("cls.npy", npy_of(tokens[0], false));
      if (name == "patch")
        r.set("patch.npy", npy_of(tokens.slice(0, prefix).reshape({out.grid_h, out.grid_w, tokens.size(1)}), options_.patch_f16));
      if (name == "patch4")
        r.set("patch4.npy", npy_of(patch4[idx].reshape({patch4.size(1), out.grid_h, out.grid_w, tokens.size(1)}), options_.patch_f16));
      if (name == "reg" && regs > 0) r.set("reg.npy", npy_of(tokens.slice(0, 1, 1 + regs), false));
      if (name == "last_hidden_state") r.set("last_hidden_state.npy", npy_of(tokens, false));
      if (name == "pixel_values") r.set("pixel_values.npy", npy_of(pending_[i].pixels, false));
      if (name == "cx5") r.set("cx5.npy", npy_of(cx5[idx], false));
    }
    if (options_.emit.count("patch") || options_.emit.count("patch4")) {
      const auto& p = pending_[i];
      nlohmann::json meta = nlohmann::json::object();
      if (const io::Field* j = r.find("json")) {
        meta = nlohmann::json::parse(j->data, nullptr, false);
        if (meta.is_discarded() || !meta.is_object()) throw Error(at(r.key + ".json", "not a JSON object"));
      }
      meta["patch_grid"] = {{"image_size", {p.image_width, p.image_height}},
                            {"box", {p.window.x0, p.window.y0, p.window.x1, p.window.y1}},
                            {"grid", {out.grid_h, out.grid_w}}};
      r.set("json", meta.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    done.push_back(std::move(r));
  }
  pending_.clear();
}

std::vector<float> Embedder::field_floats(const io::Record& record, const std::string& field) {
  const io::Field* f = record.find(field + ".npy");
  if (!f) throw Error(at(record.key, "no " + field + ".npy field"));
  return io::read_npy(f->data, record.key + "." + field + ".npy").to_floats();
}

}  // namespace cx::model
