// cx-segment: anatomy segmentation heads on patch tokens (the CXformer protocol: frozen encoder,
// 1x1-conv linear head or a small upsampling decoder, 0.5 CE + 0.5 Dice), and their masks as label
// maps in the stream, PNG folders, CheXmask RLE CSV and overlays.
//   cx-segment train train.cx --val val.cx -o seghead/
//   cx-segment predict seghead/ test.cx > pred.cx && cx-eval dice test.cx pred.cx
// See man/cx-segment.1.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/progress.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/record_source.hpp"
#include "cx/data/rle.hpp"
#include "cx/image/overlay.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/png.hpp"
#include "cx/io/stream.hpp"
#include "cx/model/config.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/runtime.hpp"
#include "cx/train/finetune_cli.hpp"
#include "cx/train/segment.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

using cx::log::number;

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size() && !s.empty()) {
    std::size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    if (end > start) out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::string folder_output(const cx::cli::Tool& tool) {
  std::string out = tool.common().output;
  if (out.empty() || out == "-") throw cx::UsageError("train writes a head folder: give -o HEADDIR");
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

struct TrainCli {
  std::vector<std::string> inputs;
  std::string val, feature = "patch", head = "linear", classes, schedule = "cosine";
  std::int64_t hidden = 256, batch = 16;
  int epochs = 30, patience = 5, stride = 0;
  double lr = 1e-3, wd = 1e-4, warmup = 0.05, dropout = 0.1;
  bool no_standardize = false;
};

int run_train(cx::cli::Tool& tool, const TrainCli& c) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = folder_output(tool);
  auto inputs = tool.inputs_or_stdin(c.inputs);
  if (c.val == "-" && std::count(inputs.begin(), inputs.end(), "-")) throw cx::UsageError("standard input can feed one stream only");
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = inputs[0] == "-" ? "standard input" : inputs[0];
  // The target stride: the encoder's patch size (targets at the input's resolution) unless given.
  int stride = c.stride;
  if (stride <= 0) {
    const auto& h = source->header();
    stride = h.contains("model") && h["model"].is_object() ? h["model"].value("patch_size", 14) : 14;
  }
  const auto classes = split_list(c.classes);
  cx::train::SegSet train = cx::train::load_seg_set(*source, c.feature, stride, classes, where);
  source.reset();
  cx::log::debug("read " + std::to_string(train.rows()) + " records: tokens " + std::to_string(train.x.size(1)) + " x " +
                 std::to_string(train.x.size(2)) + " x " + std::to_string(train.x.size(3)) + ", targets " +
                 std::to_string(train.y.size(1)) + " x " + std::to_string(train.y.size(2)) + ", " +
                 std::to_string(train.classes.size()) + " classes");
  std::unique_ptr<cx::train::SegSet> val;
  if (!c.val.empty()) {
    auto vs = cx::data::RecordSource::open({c.val});
    val = std::make_unique<cx::train::SegSet>(cx::train::load_seg_set(*vs, c.feature, stride, classes, c.val));
  }
  cx::train::SegTrainOptions o;
  o.head = cx::train::parse_seg_head_type(c.head);
  o.hidden = c.hidden;
  o.epochs = c.epochs;
  o.batch = c.batch;
  o.lr = c.lr;
  o.weight_decay = c.wd;
  o.schedule = cx::train::parse_schedule(c.schedule);
  o.warmup = c.warmup;
  o.patience = c.patience;
  o.dropout = c.dropout;
  o.standardize = !c.no_standardize;
  o.seed = tool.common().seed;
  o.device = device;
  cx::cli::Progress progress("epochs", c.epochs);
  cx::train::SegHead head = cx::train::train_seg_head(train, val.get(), c.feature, stride, o, [&](const cx::train::SegEpochReport& r) {
    progress.add();
    cx::log::debug("epoch " + std::to_string(r.epoch) + ": train loss " + number(r.train_loss, 5) +
                   (val ? ", val mean Dice " + number(r.val_dice) + (r.best ? " (best)" : "") : ""));
  });
  progress.finish();
  if (!tool.common().no_provenance) head.info.training["provenance"] = tool.provenance_entry();
  cx::train::write_folder_atomic(out, [&](const std::string& tmp) { cx::train::write_seg_head_files(tmp, head); });
  std::string summary = "trained a " + c.head + " segmentation head on " + std::to_string(train.rows()) + " records, " +
                        std::to_string(head.info.classes.size() - 1) + " class(es), " +
                        std::to_string(head.info.training["epochs_run"].get<int>()) + " epoch(s)";
  if (head.info.metrics.contains("val")) {
    const auto& m = head.info.metrics["val"]["mean_dice"];
    summary += "; best epoch " + head.info.training["best_epoch"].dump() + ", validation mean Dice " +
               number(m.is_null() ? std::nan("") : m.get<double>());
  }
  cx::log::info(summary + " -> " + out);
  return cx::kExitOk;
}

int run_finetune(cx::cli::Tool& tool, const TrainCli& c, const cx::train::FinetuneCli& f, bool no_augment, double crop_scale) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string out = folder_output(tool);
  auto inputs = tool.inputs_or_stdin(c.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = inputs[0] == "-" ? "standard input" : inputs[0];

  cx::train::FinetuneOptions o;
  cx::train::apply_finetune_cli(f, out, device, o);
  o.epochs = c.epochs;
  o.batch = c.batch;
  o.weight_decay = c.wd;
  o.schedule = cx::train::parse_schedule(c.schedule);
  o.warmup = c.warmup;
  o.patience = c.patience;
  o.augment = !no_augment;
  o.augment_options.scale_min = crop_scale;
  o.augment_options.flip_p = 0.0;  // a flip would swap the left and right lung
  o.seed = tool.common().seed;

  const int patch = static_cast<int>(cx::model::read_vit_config(o.encoder_folder + "/config.json").patch_size);
  const int stride = c.stride > 0 ? c.stride : patch;
  const auto classes = split_list(c.classes);
  cx::train::SegImageSet train = cx::train::load_seg_images(*source, o.preprocess, patch, stride, classes, where);
  source.reset();
  std::unique_ptr<cx::train::SegImageSet> val;
  if (!c.val.empty()) {
    auto vs = cx::data::RecordSource::open({c.val});
    val = std::make_unique<cx::train::SegImageSet>(cx::train::load_seg_images(*vs, o.preprocess, patch, stride, classes, c.val));
  }
  auto result = cx::train::finetune_seg(train, val.get(), c.feature, stride, cx::train::parse_seg_head_type(c.head), c.hidden, o,
                                        cx::train::log_finetune_progress("mean Dice"));
  if (!result.finished) {
    cx::log::info("stopped after " + std::to_string(result.steps_done) + " updates; continue with --resume " + o.checkpoint_dir);
    return cx::kExitOk;
  }
  if (!tool.common().no_provenance) result.head.info.training["provenance"] = tool.provenance_entry();
  cx::train::write_finetuned_seg_head(out, result, o);
  std::string summary = "fine-tuned " + f.model + " with a " + c.head + " segmentation head: " + std::to_string(result.steps_done) + " updates";
  if (result.head.info.metrics.contains("val")) {
    const auto& m = result.head.info.metrics["val"]["mean_dice"];
    summary += ", validation mean Dice " + number(m.is_null() ? std::nan("") : m.get<double>());
  }
  cx::log::info(summary + " -> " + out);
  return cx::kExitOk;
}

struct PredictCli {
  std::string head_dir, png_dir, rle, overlay;
  std::vector<std::string> inputs;
  std::int64_t batch = 16;
  int thickness = 2;
  bool ignore_encoder = false, keep_tokens = false;
};

// CheXmask's column names for its structures; other classes are written as named.
std::string rle_column(const std::string& cls) {
  if (cls == "left lung") return "Left Lung";
  if (cls == "right lung") return "Right Lung";
  if (cls == "heart") return "Heart";
  return cls;
}

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char ch : s) {
    if (ch == '"') q += '"';
    q += ch;
  }
  return q + "\"";
}

// A file for a record under a folder: the key's '/' become subfolders.
std::string record_path(const std::string& dir, const std::string& key, const std::string& ext) {
  fs::path p = fs::path(dir) / (key + ext);
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  if (ec) throw cx::Error(cx::at(p.parent_path().string(), "cannot create folder: " + ec.message()));
  return p.string();
}

int run_predict(cx::cli::Tool& tool, const PredictCli& c) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  cx::train::SegHead head = cx::train::load_seg_head(c.head_dir);
  head.module->to(device);
  const auto& info = head.info;
  const auto K = static_cast<int>(info.classes.size());
  auto inputs = tool.inputs_or_stdin(c.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = inputs[0] == "-" ? "standard input" : inputs[0];
  // A fine-tuned head embeds images itself with its own encoder; tokens from a stream are checked
  // against the head's encoder once, at the first record that carries them.
  const cx::train::HeadEncoder head_encoder = cx::train::load_head_encoder(c.head_dir, info, device);
  const std::shared_ptr<cx::model::VitModel>& encoder = head_encoder.model;
  const cx::image::PreprocessConfig& preprocess = head_encoder.preprocess;
  bool checked = c.ignore_encoder;

  // The stream goes to -o or standard output; with a file output asked for instead, only to -o.
  const bool files = !c.png_dir.empty() || !c.rle.empty() || !c.overlay.empty();
  const bool stream = !files || tool.common().output != "-";
  std::unique_ptr<cx::cli::OutputFile> out;
  std::unique_ptr<cx::io::StreamWriter> writer;
  if (stream) {
    nlohmann::json header = source->header();
    if (!header.contains("fields") || !header["fields"].is_object()) header["fields"] = nlohmann::json::object();
    if (!c.keep_tokens)
      for (const char* f : {"patch.npy", "patch4.npy"}) header["fields"].erase(f);
    header["fields"]["mask.png"] = {{"type", "image/png"}, {"bits", 8}, {"channels", 1}, {"classes", info.classes},
                                    {"description", "predicted label map (cx-segment) at the image's size"}};
    header["segmentation"] = {{"head", c.head_dir}, {"classes", info.classes}, {"feature", info.feature}};
    if (!header.contains("provenance") || !header["provenance"].is_array()) header["provenance"] = nlohmann::json::array();
    if (!tool.common().no_provenance) header["provenance"].push_back(tool.provenance_entry());
    out = std::make_unique<cx::cli::OutputFile>(tool.common().output);
    writer = std::make_unique<cx::io::StreamWriter>(out->file(), header, out->is_stdout() ? "standard output" : out->path());
  }
  std::unique_ptr<cx::cli::OutputFile> rle;
  if (!c.rle.empty()) {
    rle = std::make_unique<cx::cli::OutputFile>(c.rle, false);
    std::string line = "key";
    for (int k = 1; k < K; ++k) line += "," + csv_cell(rle_column(info.classes[static_cast<std::size_t>(k)]));
    rle->write(line + ",Height,Width\n");
  }

  double t_encoder = 0, t_head = 0, t_map = 0, t_out = 0;
  cx::cli::Progress progress("images");
  std::vector<cx::io::Record> pending;
  std::vector<torch::Tensor> tokens;              // [C, h, w], or undefined for records embedded here
  std::vector<cx::train::PatchGrid> image_grids;  // records embedded here: where the input lies
  std::vector<torch::Tensor> pixels;              // records embedded here: the preprocessed input
  auto seconds = [](Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); };
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
      torch::Tensor t = cx::train::encoder_tokens(*encoder, torch::stack(inputs).to(device), info.feature);
      for (std::size_t j = 0; j < at_image.size(); ++j) tokens[at_image[j]] = t[static_cast<std::int64_t>(j)];
      if (device.is_cuda()) torch::cuda::synchronize();
      t_encoder += seconds(t0);
      t0 = Clock::now();
    }
    for (const auto& t : tokens)
      if (!t.sizes().equals(tokens.front().sizes()))
        throw cx::Error(cx::at(where, "records of one batch have token grids of different sizes (give --batch 1)"));
    torch::Tensor z = head.logits(torch::stack(tokens));
    if (device.is_cuda()) torch::cuda::synchronize();
    t_head += seconds(t0);
    for (std::size_t i = 0; i < pending.size(); ++i) {
      cx::io::Record& r = pending[i];
      t0 = Clock::now();
      // The prediction's size: the image's (cx-embed's patch_grid, or the input window of an image
      // embedded here), else the truth mask's.
      cx::train::PatchGrid g = image_grids[i];
      if (g.image_width == 0 && !cx::train::record_patch_grid(r, g)) {
        const cx::io::Field* m = r.find("mask.png");
        if (!m) throw cx::Error(cx::at(r.key, "no patch_grid in its .json (embed with cx-embed --emit " + info.feature +
                                                  ") and no mask.png to give the image's size"));
        cx::Image truth = cx::io::decode_image(m->data, r.key + ".mask.png");
        cx::train::record_patch_grid(r, g, truth.width, truth.height);
      }
      cx::Image map = cx::train::logits_to_label_map(z[static_cast<std::int64_t>(i)], g, g.image_width, g.image_height);
      t_map += seconds(t0);
      t0 = Clock::now();
      std::string png = cx::io::encode_png(map, 1);
      if (!c.png_dir.empty()) cx::cli::write_file_atomic(record_path(c.png_dir, r.key, ".png"), png);
      if (rle) {
        std::string line = csv_cell(r.key);
        std::vector<std::uint8_t> bin(map.data.size());
        for (int k = 1; k < K; ++k) {
          for (std::size_t p = 0; p < bin.size(); ++p) bin[p] = map.data[p] == k;
          line += "," + cx::data::rle_encode(bin.data(), map.height, map.width);
        }
        rle->write(line + "," + std::to_string(map.height) + "," + std::to_string(map.width) + "\n");
      }
      if (!c.overlay.empty()) {
        const cx::io::Field* img = r.image();
        if (!img) throw cx::Error(cx::at(r.key, "no image to draw the overlay on (embed with cx-embed --keep-image)"));
        cx::Image picture = cx::io::decode_image(img->data, r.key + "." + img->name);
        cx::cli::write_file_atomic(record_path(c.overlay, r.key, ".png"),
                                   cx::io::encode_png(cx::image::draw_contours(picture, map, c.thickness), 1));
      }
      if (writer) {
        if (!c.keep_tokens) {
          r.erase("patch.npy");
          r.erase("patch4.npy");
        }
        r.set("mask.png", std::move(png));
        writer->write(r);
      }
      t_out += seconds(t0);
      progress.add();
    }
    pending.clear();
    tokens.clear();
    image_grids.clear();
    pixels.clear();
  };
  cx::io::Record record;
  while (source->next(record)) {
    torch::Tensor t = cx::train::record_tokens(record, info.feature);
    cx::train::PatchGrid g;
    torch::Tensor input;
    if (!t.defined()) {
      const cx::io::Field* img = record.image();
      if (!encoder || !img)
        throw cx::Error(cx::at(record.key, "no " + info.feature + ".npy field (embed with cx-embed --emit " + info.feature + ")" +
                                               (encoder ? " and no image to embed" : "")));
      const cx::Image im = cx::image::scale_to_8bit(cx::io::decode_image(img->data, record.key + "." + img->name));
      g = cx::train::input_patch_grid(im.width, im.height, preprocess, static_cast<int>(encoder->config().patch_size));
      cx::image::PixelValues pv = cx::image::preprocess(im, preprocess);
      input = torch::from_blob(pv.data.data(), {3, pv.height, pv.width}, torch::kFloat32).clone();
    } else {
      if (!checked) {
        cx::train::check_encoder(info, source->header(), where);
        checked = true;
      }
      if (t.size(0) != info.shape.in)
        throw cx::Error(cx::at(record.key + "." + info.feature + ".npy", std::to_string(t.size(0)) +
                                                                     " channels, the head takes " + std::to_string(info.shape.in)));
      if (!tokens.empty() && tokens.front().defined() && !tokens.front().sizes().equals(t.sizes())) flush();  // one grid size per batch
    }
    pending.push_back(std::move(record));
    tokens.push_back(std::move(t));
    image_grids.push_back(g);
    pixels.push_back(std::move(input));
    if (static_cast<std::int64_t>(pending.size()) >= c.batch) flush();
  }
  flush();
  progress.finish();
  if (writer) writer->finish();
  if (out) out->commit();
  if (rle) rle->commit();
  const double total = t_head + t_map + t_out;
  cx::log::debug("predicted " + std::to_string(progress.done()) + " images: " +
                 (encoder ? "encoder " + number(t_encoder, 3) + " s, " : std::string()) + "head " + number(t_head, 3) + " s, resample + argmax " +
                 number(t_map, 3) + " s, outputs " + number(t_out, 3) + " s (head " +
                 number(total > 0 ? 100 * t_head / (total + t_encoder) : 0, 1) + "% of " + number(total + t_encoder, 3) + " s)");
  return cx::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-segment",
                     "Segmentation heads on patch tokens: train (linear 1x1 conv or a conv decoder, 0.5 CE + 0.5 Dice), "
                     "predict (label maps into the stream, PNG folders, CheXmask RLE, overlays)");
  auto& app = tool.app();
  app.require_subcommand(1, 1);
  app.fallthrough();

  TrainCli t;
  auto* train = app.add_subcommand("train", "Learn a head on an embedding stream with patch tokens and .mask.png label maps");
  train->add_option("inputs", t.inputs, "Embedding streams (cx-embed --emit patch or patch4); - for standard input")->type_name("STREAM");
  train->add_option("--val", t.val, "Validation stream: early stopping on its mean foreground Dice, saved in head.json")->type_name("STREAM");
  train->add_option("--feature", t.feature, "patch (last block's tokens) or patch4 (the last four blocks', concatenated)")
      ->check(CLI::IsMember({"patch", "patch4"}))
      ->capture_default_str();
  train->add_option("--head", t.head, "linear (a 1x1 convolution, the linear probe) or conv (a small upsampling decoder)")
      ->check(CLI::IsMember({"linear", "conv"}))
      ->capture_default_str();
  train->add_option("--hidden", t.hidden, "Width of the conv decoder's first layer (a multiple of 4)")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--classes", t.classes, "Names of label values 1..n (default: the stream's mask classes)")->type_name("A,B");
  train->add_option("--stride", t.stride, "Target pixels per grid cell (default: the encoder's patch size)")->check(CLI::PositiveNumber);
  train->add_option("--epochs", t.epochs, "Epochs at most")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--batch", t.batch, "Images per mini-batch")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--lr", t.lr, "AdamW learning rate")->capture_default_str();
  train->add_option("--wd", t.wd, "AdamW weight decay")->capture_default_str();
  train->add_option("--schedule", t.schedule, "Learning-rate schedule after warm-up: cosine or constant")
      ->check(CLI::IsMember({"cosine", "constant"}))
      ->capture_default_str();
  train->add_option("--warmup", t.warmup, "Fraction of the updates spent in linear warm-up")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  train->add_option("--patience", t.patience, "Stop after N epochs without a better validation Dice; 0 never")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  train->add_option("--dropout", t.dropout, "Dropout on the standardised tokens while training (channels; whole tokens for conv)")
      ->check(CLI::Range(0.0, 0.95))
      ->capture_default_str();
  train->add_flag("--no-standardize", t.no_standardize, "Do not standardise the token channels");
  tool.add_output_option(train);
  tool.add_seed_option(0, train);
  tool.add_threads_option(train);
  tool.add_device_option(train);
  tool.add_provenance_option(train);

  TrainCli ft;
  cx::train::FinetuneCli f;
  ft.epochs = 10;
  ft.batch = 8;
  ft.wd = 0.0;
  ft.patience = 3;
  auto* finetune = app.add_subcommand("finetune", "Train encoder and head together from images with .mask.png (a stream cx-ingest wrote)");
  finetune->add_option("inputs", ft.inputs, "Image streams with masks; - for standard input")->type_name("STREAM");
  cx::train::add_finetune_options(finetune, f);
  finetune->add_option("--val", ft.val, "Validation stream (images with masks): early stopping on its mean foreground Dice")->type_name("STREAM");
  finetune->add_option("--feature", ft.feature, "patch or patch4")->check(CLI::IsMember({"patch", "patch4"}))->capture_default_str();
  finetune->add_option("--head", ft.head, "linear or conv")->check(CLI::IsMember({"linear", "conv"}))->capture_default_str();
  finetune->add_option("--hidden", ft.hidden, "Width of the conv decoder's first layer (a multiple of 4)")->check(CLI::PositiveNumber)->capture_default_str();
  finetune->add_option("--classes", ft.classes, "Names of label values 1..n (default: the stream's mask classes)")->type_name("A,B");
  finetune->add_option("--stride", ft.stride, "Target pixels per grid cell (default: the encoder's patch size)")->check(CLI::PositiveNumber);
  finetune->add_option("--epochs", ft.epochs, "Epochs")->check(CLI::PositiveNumber)->capture_default_str();
  finetune->add_option("--batch", ft.batch, "Images per micro-batch")->check(CLI::PositiveNumber)->capture_default_str();
  finetune->add_option("--wd", ft.wd, "AdamW weight decay")->capture_default_str();
  finetune->add_option("--schedule", ft.schedule, "cosine or constant")->check(CLI::IsMember({"cosine", "constant"}))->capture_default_str();
  finetune->add_option("--warmup", ft.warmup, "Fraction of the updates spent in linear warm-up")->check(CLI::Range(0.0, 1.0))->capture_default_str();
  finetune->add_option("--patience", ft.patience, "Stop after N validations without a better Dice; 0 never")->check(CLI::NonNegativeNumber)->capture_default_str();
  bool no_augment = false;
  double crop_scale = 0.5;
  finetune->add_flag("--no-augment", no_augment, "Train on the deterministic preprocessing instead of the augmentations");
  finetune->add_option("--crop-scale", crop_scale, "Smallest area fraction of the random resized crop")->check(CLI::Range(0.01, 1.0))->capture_default_str();
  tool.add_output_option(finetune);
  tool.add_seed_option(0, finetune);
  tool.add_threads_option(finetune);
  tool.add_device_option(finetune);
  tool.add_provenance_option(finetune);

  PredictCli p;
  auto* predict = app.add_subcommand("predict", "Masks from a head: .mask.png in the stream, --png-dir, --rle, --overlay");
  predict->add_option("head", p.head_dir, "Head folder (from cx-segment train)")->required()->type_name("HEADDIR");
  predict->add_option("inputs", p.inputs, "Embedding streams (image streams for a fine-tuned head); - for standard input")->type_name("STREAM");
  predict->add_option("--png-dir", p.png_dir, "Also write each label map as DIR/<key>.png")->type_name("DIR");
  predict->add_option("--rle", p.rle, "Also write a CheXmask-format RLE CSV (1-based starts, row-major, a column per class)")->type_name("CSV");
  predict->add_option("--overlay", p.overlay, "Also write DIR/<key>.png: the radiograph with the outlines in colour (needs cx-embed --keep-image)")
      ->type_name("DIR");
  predict->add_option("--thickness", p.thickness, "Outline width of --overlay in pixels")->check(CLI::Range(1, 50))->capture_default_str();
  predict->add_option("--batch", p.batch, "Images per head forward")->check(CLI::PositiveNumber)->capture_default_str();
  predict->add_flag("--keep-tokens", p.keep_tokens, "Keep patch.npy / patch4.npy in the output stream");
  predict->add_flag("--ignore-encoder", p.ignore_encoder, "Predict even when the stream's encoder is not the head's");
  tool.add_output_option(predict);
  tool.add_threads_option(predict);
  tool.add_device_option(predict);
  tool.add_provenance_option(predict);

  return tool.run(argc, argv, [&]() -> int {
    if (train->parsed()) return run_train(tool, t);
    if (finetune->parsed()) return run_finetune(tool, ft, f, no_augment, crop_scale);
    return run_predict(tool, p);
  });
}
