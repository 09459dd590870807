#include "cx/train/segment_predict.hpp"

#include <chrono>
#include <filesystem>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/data/rle.hpp"
#include "cx/image/overlay.hpp"
#include "cx/image/preprocess.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/png.hpp"

namespace cx::train {

namespace fs = std::filesystem;

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

nlohmann::json seg_stream_header(nlohmann::json header, const SegHeadInfo& info, const std::string& head_dir, bool keep_tokens) {
  if (!header.contains("fields") || !header["fields"].is_object()) header["fields"] = nlohmann::json::object();
  if (!keep_tokens)
    for (const char* f : {"patch.npy", "patch4.npy"}) header["fields"].erase(f);
  header["fields"]["mask.png"] = {{"type", "image/png"}, {"bits", 8}, {"channels", 1}, {"classes", info.classes},
                                  {"description", "predicted label map (cx-segment) at the image's size"}};
  header["segmentation"] = {{"head", head_dir}, {"classes", info.classes}, {"feature", info.feature}};
  if (!header.contains("provenance") || !header["provenance"].is_array()) header["provenance"] = nlohmann::json::array();
  return header;
}

void SegStreamSink::write(io::Record& r, const Image&, const std::string& png) {
  if (!keep_tokens_) {
    r.erase("patch.npy");
    r.erase("patch4.npy");
  }
  r.set("mask.png", png);
  out_.write(r);
}

std::string record_file(const std::string& dir, const std::string& key, const std::string& ext) {
  fs::path p = fs::path(dir) / (key + ext);
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  if (ec) throw Error(at(p.parent_path().string(), "cannot create folder: " + ec.message()));
  return p.string();
}

void PngFolderSink::write(io::Record& r, const Image&, const std::string& png) {
  cli::write_file_atomic(record_file(dir_, r.key, ".png"), png);
}

RleCsvSink::RleCsvSink(const std::string& path, const std::vector<std::string>& classes)
    : out_(path, false), classes_(static_cast<int>(classes.size())) {
  out_.write(data::rle_csv_header(classes));
}

void RleCsvSink::write(io::Record& r, const Image& label_map, const std::string&) {
  out_.write(data::rle_csv_row(r.key, label_map, classes_));
}

void OverlaySink::write(io::Record& r, const Image& label_map, const std::string&) {
  const io::Field* img = r.image();
  if (!img) throw Error(at(r.key, "no image to draw the overlay on (embed with cx-embed --keep-image)"));
  Image picture = io::decode_image(img->data, r.key + "." + img->name);
  cli::write_file_atomic(record_file(dir_, r.key, ".png"), io::encode_png(image::draw_contours(picture, label_map, thickness_), 1));
}

std::string SegPredictStats::describe() const {
  using log::number;
  const double total = head_seconds + map_seconds + output_seconds;
  return "predicted " + std::to_string(images) + " images: " + (encoder ? "encoder " + number(encoder_seconds, 3) + " s, " : std::string()) +
         "head " + number(head_seconds, 3) + " s, resample + argmax " + number(map_seconds, 3) + " s, outputs " +
         number(output_seconds, 3) + " s (head " + number(total > 0 ? 100 * head_seconds / (total + encoder_seconds) : 0, 1) +
         "% of " + number(total + encoder_seconds, 3) + " s)";
}

SegPredictStats predict_masks(data::RecordSource& source, const std::string& where, const SegHead& head,
                              const HeadEncoder& head_encoder, const SegPredictOptions& o,
                              const std::vector<SegSink*>& sinks, const std::function<void()>& on_image) {
  const auto& info = head.info;
  const std::shared_ptr<model::VitModel>& encoder = head_encoder.model;
  const image::PreprocessConfig& preprocess = head_encoder.preprocess;
  SegPredictStats stats;
  stats.encoder = encoder != nullptr;
  bool checked = o.ignore_encoder;

  std::vector<io::Record> pending;
  std::vector<torch::Tensor> tokens;   // [C, h, w], or undefined for records embedded here
  std::vector<PatchGrid> image_grids;  // records embedded here: where the input lies
  std::vector<torch::Tensor> pixels;   // records embedded here: the preprocessed input
  auto flush = [&] {
    if (pending.empty()) return;
    auto t0 = Clock::now();
    std::vector<torch::Tensor> inputs;
    std::vector<std::size_t> at_image;
    for (std::size_t i = 0; i < pending.size(); ++i)
      if (!tokens[i].defined()) {
        inputs.push_back(pixels[i]);
        at_image.push_back(i);
      }
    if (!inputs.empty()) {
      torch::NoGradGuard no_grad;
      torch::Tensor t = encoder_tokens(*encoder, torch::stack(inputs).to(o.device), info.feature);
      for (std::size_t j = 0; j < at_image.size(); ++j) tokens[at_image[j]] = t[static_cast<std::int64_t>(j)];
      if (o.device.is_cuda()) torch::cuda::synchronize();
      stats.encoder_seconds += seconds_since(t0);
      t0 = Clock::now();
    }
    for (const auto& t : tokens)
      if (!t.sizes().equals(tokens.front().sizes()))
        throw Error(at(where, "records of one batch have token grids of different sizes (give --batch 1)"));
    torch::Tensor z = head.logits(torch::stack(tokens));
    if (o.device.is_cuda()) torch::cuda::synchronize();
    stats.head_seconds += seconds_since(t0);
    for (std::size_t i = 0; i < pending.size(); ++i) {
      io::Record& r = pending[i];
      t0 = Clock::now();
      // The prediction's size: the image's (cx-embed's patch_grid, or the input window of an image
      // embedded here), else the truth mask's.
      PatchGrid g = image_grids[i];
      if (g.image_width == 0 && !record_patch_grid(r, g)) {
        const io::Field* m = r.find("mask.png");
        if (!m)
          throw Error(at(r.key, "no patch_grid in its .json (embed with cx-embed --emit " + info.feature +
                                    ") and no mask.png to give the image's size"));
        Image truth = io::decode_image(m->data, r.key + ".mask.png");
        record_patch_grid(r, g, truth.width, truth.height);
      }
      Image map = logits_to_label_map(z[static_cast<std::int64_t>(i)], g, g.image_width, g.image_height);
      stats.map_seconds += seconds_since(t0);
      t0 = Clock::now();
      const std::string png = io::encode_png(map, 1);
      for (SegSink* sink : sinks) sink->write(r, map, png);
      stats.output_seconds += seconds_since(t0);
      ++stats.images;
      if (on_image) on_image();
    }
    pending.clear();
    tokens.clear();
    image_grids.clear();
    pixels.clear();
  };
  io::Record record;
  while (source.next(record)) {
    torch::Tensor t = record_tokens(record, info.feature);
    PatchGrid g;
    torch::Tensor input;
    if (!t.defined()) {
      const io::Field* img = record.image();
      if (!encoder || !img)
        throw Error(at(record.key, "no " + info.feature + ".npy field (embed with cx-embed --emit " + info.feature + ")" +
                                       (encoder ? " and no image to embed" : "")));
      const Image im = image::scale_to_8bit(io::decode_image(img->data, record.key + "." + img->name));
      g = input_patch_grid(im.width, im.height, preprocess, static_cast<int>(encoder->config().patch_size));
      image::PixelValues pv = image::preprocess(im, preprocess);
      input = torch::from_blob(pv.data.data(), {3, pv.height, pv.width}, torch::kFloat32).clone();
    } else {
      if (!checked) {
        check_encoder(info, source.header(), where);
        checked = true;
      }
      if (t.size(0) != info.shape.in)
        throw Error(at(record.key + "." + info.feature + ".npy",
                       std::to_string(t.size(0)) + " channels, the head takes " + std::to_string(info.shape.in)));
      if (!tokens.empty() && tokens.front().defined() && !tokens.front().sizes().equals(t.sizes())) flush();  // one grid size per batch
    }
    pending.push_back(std::move(record));
    tokens.push_back(std::move(t));
    image_grids.push_back(g);
    pixels.push_back(std::move(input));
    if (static_cast<std::int64_t>(pending.size()) >= o.batch) flush();
  }
  flush();
  for (auto it = sinks.rbegin(); it != sinks.rend(); ++it) (*it)->finish();
  return stats;
}

}  // namespace cx::train
