#pragma once
// Scoring streams with a classification head (cx-classify predict). Records are read in batches;
// a record's features are its <feature>.npy, or, for a fine-tuned head (one with an encoder folder)
// and a record without them, the head's own encoder run on the record's image. Features from a
// stream are checked once against the head's encoder (check_encoder) unless told not to.
//
// The output is the table cx-eval reads (TSV, one line per record, in stream order):
//   key  <label>...  <label>.score...
// with a truth column for each head label the stream header declares or the first record carries
// (cells "1", "0", "-1", or "" for blank) and every label's probability as %.9g. A stream without
// records gives the header line with the score columns only.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/record_source.hpp"
#include "cx/io/stream.hpp"
#include "cx/model/runtime.hpp"
#include "cx/train/finetune.hpp"
#include "cx/train/head.hpp"

namespace cx::train {

struct PredictOptions {
  std::int64_t batch = 4096;      // records per forward pass
  std::int64_t image_batch = 32;  // images per encoder forward (fine-tuned heads on images)
  bool ignore_encoder = false;    // score features from another encoder than the head's
  torch::Device device = torch::kCPU;
  model::Precision precision = model::Precision::f32;  // the encoder's, for images
};

// The probabilities of a head for batches of records of one stream.
class HeadPredictor {
 public:
  // `head_dir` is the head's folder (a fine-tuned head's encoder is loaded from it when the first
  // record without features asks for it); `stream_header` and `where` name the stream for the
  // encoder check and in errors.
  HeadPredictor(Head head, std::string head_dir, nlohmann::json stream_header, std::string where,
                PredictOptions options);

  // [records.size(), L] float32 on the CPU. Throws cx::Error naming the record for a record with
  // neither the feature nor (fine-tuned heads) an image, or a feature of the wrong width.
  torch::Tensor probabilities(const std::vector<io::Record>& records);

  const Head& head() const { return head_; }
  double encoder_seconds() const { return encoder_seconds_; }  // images through the encoder
  double head_seconds() const { return head_seconds_; }        // features through the head

 private:
  Head head_;
  std::string head_dir_;
  nlohmann::json header_;
  std::string where_;
  PredictOptions o_;
  bool checked_ = false;
  HeadEncoder encoder_;
  double encoder_seconds_ = 0, head_seconds_ = 0;
};

// The feature of one record as [width] float32, or an undefined tensor when the record has no
// <feature>.npy. A field of another shape throws cx::Error naming it.
torch::Tensor record_feature(const io::Record& record, const std::string& feature, std::int64_t width);

// The TSV sink: lines go to `write` as whole lines, the header with the first batch.
class PredictionTable {
 public:
  PredictionTable(std::vector<std::string> labels, const nlohmann::json& stream_header,
                  std::function<void(const std::string&)> write);
  // Rows for a batch; probabilities [records.size(), L] float32 on the CPU.
  void write(const std::vector<io::Record>& records, const torch::Tensor& probabilities);
  // The header line alone when no record was written.
  void finish();

 private:
  void write_header(const io::Record& first);
  std::vector<std::string> labels_, declared_;
  std::vector<bool> truth_column_;
  std::function<void(const std::string&)> write_;
  bool header_written_ = false;
};

struct PredictStats {
  std::int64_t records = 0;
  double encoder_seconds = 0, head_seconds = 0, seconds = 0;  // seconds: the whole run
};

// Reads every record of `source`, scores them in batches of `batch` and writes the table.
PredictStats predict_table(data::RecordSource& source, HeadPredictor& predictor, PredictionTable& table, std::int64_t batch);

}  // namespace cx::train
