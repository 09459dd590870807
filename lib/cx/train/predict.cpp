#include "cx/train/predict.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

#include "cx/cli/error.hpp"
#include "cx/io/npy.hpp"
#include "cx/train/dataset.hpp"

namespace cx::train {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

torch::Tensor record_feature(const io::Record& r, const std::string& feature, std::int64_t width) {
  const io::Field* f = r.find(feature + ".npy");
  if (!f) return {};
  const std::string name = r.key + "." + feature + ".npy";
  io::NdArray a = io::read_npy(f->data, name);
  if (a.shape.size() != 1 || a.shape[0] != width) {
    std::string got;
    for (std::size_t i = 0; i < a.shape.size(); ++i) got += (i ? "x" : "") + std::to_string(a.shape[i]);
    throw Error(at(name, "holds " + (a.shape.size() == 1 ? std::to_string(a.shape[0]) + " values" : "an array of " + got) +
                             ", the head takes " + std::to_string(width)));
  }
  std::vector<float> v = a.to_floats();
  for (float x : v)
    if (!std::isfinite(x)) throw Error(at(name, "holds non-finite values (NaN or inf)"));
  return torch::from_blob(v.data(), {width}, torch::kFloat32).clone();
}

HeadPredictor::HeadPredictor(Head head, std::string head_dir, nlohmann::json stream_header, std::string where,
                             PredictOptions options)
    : head_(std::move(head)),
      head_dir_(std::move(head_dir)),
      header_(std::move(stream_header)),
      where_(std::move(where)),
      o_(options),
      checked_(options.ignore_encoder) {}

torch::Tensor HeadPredictor::probabilities(const std::vector<io::Record>& records) {
  const auto& info = head_.info;
  const auto L = static_cast<std::int64_t>(info.labels.size());
  // Features from the records, or (fine-tuned heads, records with images) from the encoder.
  std::vector<torch::Tensor> feats;
  std::vector<std::size_t> need_image;
  // Features from a stream are checked against the head's encoder once, before their size: a
  // stream from another encoder explains a size mismatch (images are embedded by the head's own
  // encoder and need no check).
  if (!checked_) {
    for (const auto& r : records)
      if (r.find(info.feature + ".npy")) {
        check_encoder(info, header_, where_);
        checked_ = true;
        break;
      }
  }
  for (std::size_t i = 0; i < records.size(); ++i) {
    torch::Tensor f;
    try {
      f = record_feature(records[i], info.feature, info.shape.in);
    } catch (const Error& e) {
      throw Error(at(where_, e.what()));
    }
    if (!f.defined()) {
      if (info.encoder_folder.empty())
        throw Error(at(records[i].key, "no " + info.feature + ".npy field (embed the stream with cx-embed --emit " +
                                           info.feature + ")"));
      need_image.push_back(i);
    }
    feats.push_back(f);
  }
  torch::Tensor probs = torch::empty({static_cast<std::int64_t>(records.size()), L}, torch::kFloat32);
  if (need_image.size() < records.size()) {
    const auto t0 = Clock::now();
    std::vector<torch::Tensor> rows;
    std::vector<std::int64_t> positions;
    for (std::size_t i = 0; i < records.size(); ++i)
      if (feats[i].defined()) {
        rows.push_back(feats[i]);
        positions.push_back(static_cast<std::int64_t>(i));
      }
    torch::Tensor p = head_.probabilities(torch::stack(rows)).cpu();
    probs.index_copy_(0, torch::tensor(positions, torch::kInt64), p);
    head_seconds_ += seconds_since(t0);
  }
  if (!need_image.empty()) {
    const auto t0 = Clock::now();
    std::vector<const std::string*> images;
    std::vector<std::string> names;
    std::vector<std::int64_t> positions;
    for (std::size_t i : need_image) {
      const io::Field* img = records[i].image();
      if (!img) throw Error(at(records[i].key, "no " + info.feature + ".npy field and no image to embed"));
      images.push_back(&img->data);
      names.push_back(records[i].key + "." + img->name);
      positions.push_back(static_cast<std::int64_t>(i));
    }
    if (!encoder_.model) encoder_ = load_head_encoder(head_dir_, info, o_.device);
    torch::Tensor p = predict_images(head_, *encoder_.model, encoder_.preprocess, images, names, o_.device, o_.precision,
                                     o_.image_batch);
    probs.index_copy_(0, torch::tensor(positions, torch::kInt64), p);
    encoder_seconds_ += seconds_since(t0);
  }
  const torch::Tensor finite = torch::isfinite(probs).all(1);
  const auto finite_at = finite.accessor<bool, 1>();
  for (std::size_t i = 0; i < records.size(); ++i)
    if (!finite_at[static_cast<std::int64_t>(i)])
      throw Error(at(records[i].key, "the head (" + head_dir_ + ") gave non-finite scores (NaN or inf)"));
  return probs;
}

PredictionTable::PredictionTable(std::vector<std::string> labels, const nlohmann::json& stream_header,
                                 std::function<void(const std::string&)> write)
    : labels_(std::move(labels)), truth_column_(labels_.size(), false), write_(std::move(write)) {
  if (stream_header.contains("labels") && stream_header["labels"].is_array())
    for (const auto& l : stream_header["labels"])
      if (l.is_string()) declared_.push_back(l.get<std::string>());
}

void PredictionTable::write_header(const io::Record& first) {
  // Truth columns for the labels the stream declares, or that its first record carries.
  const auto values = record_labels(first, labels_);
  std::string line = "key";
  for (std::size_t l = 0; l < labels_.size(); ++l) {
    truth_column_[l] = std::find(declared_.begin(), declared_.end(), labels_[l]) != declared_.end() ||
                       values[l] != data::LabelValue::blank;
    if (truth_column_[l]) line += "\t" + labels_[l];
  }
  for (const auto& name : labels_) line += "\t" + name + ".score";
  write_(line + "\n");
  header_written_ = true;
}

void PredictionTable::write(const std::vector<io::Record>& records, const torch::Tensor& probabilities) {
  if (records.empty()) return;
  if (!header_written_) write_header(records.front());
  const auto L = static_cast<std::int64_t>(labels_.size());
  const torch::Tensor p = probabilities.to(torch::kFloat32).contiguous();
  const float* v = p.data_ptr<float>();
  char buf[32];
  for (std::size_t i = 0; i < records.size(); ++i) {
    const auto values = record_labels(records[i], labels_);
    std::string line = records[i].key;
    for (std::size_t l = 0; l < labels_.size(); ++l) {
      if (!truth_column_[l]) continue;
      line += "\t";
      line += data::label_cell_text(values[l]);
    }
    for (std::int64_t l = 0; l < L; ++l) {
      std::snprintf(buf, sizeof buf, "\t%.9g", static_cast<double>(v[static_cast<std::int64_t>(i) * L + l]));
      line += buf;
    }
    write_(line + "\n");
  }
}

void PredictionTable::finish() {
  if (header_written_) return;
  std::string line = "key";
  for (const auto& name : labels_) line += "\t" + name + ".score";
  write_(line + "\n");
  header_written_ = true;
}

PredictStats predict_table(data::RecordSource& source, HeadPredictor& predictor, PredictionTable& table, std::int64_t batch) {
  const auto t0 = Clock::now();
  PredictStats stats;
  std::vector<io::Record> pending;
  auto flush = [&] {
    if (pending.empty()) return;
    table.write(pending, predictor.probabilities(pending));
    pending.clear();
  };
  io::Record record;
  while (source.next(record)) {
    pending.push_back(std::move(record));
    ++stats.records;
    if (static_cast<std::int64_t>(pending.size()) >= batch) flush();
  }
  flush();
  table.finish();
  stats.encoder_seconds = predictor.encoder_seconds();
  stats.head_seconds = predictor.head_seconds();
  stats.seconds = seconds_since(t0);
  return stats;
}

}  // namespace cx::train
