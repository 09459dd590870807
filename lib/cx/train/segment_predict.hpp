#pragma once
// Masks from a segmentation head (cx-segment predict). Records are read in batches of one token
// grid size; a record's tokens are its patch.npy / patch4.npy, or, for a fine-tuned head and a
// record without them, the head's own encoder run on the record's image. Tokens from a stream are
// checked once against the head's encoder (check_encoder) unless told not to. The head's logits
// become a label map at the image's size (the record's patch_grid, the input window of an image
// embedded here, else the size of the record's own mask.png), which goes to every sink in turn:
//   SegStreamSink  the record with .mask.png replaced by the prediction (token fields dropped
//                  unless kept), into a cx stream
//   PngFolderSink  DIR/<key>.png (a key's '/' become subfolders), the folder form cx-eval reads
//   RleCsvSink     a CheXmask-style RLE CSV (data/rle.hpp), which cx-ingest reads back
//   OverlaySink    DIR/<key>.png: the record's image with each class's outline in its colour
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/cli/output.hpp"
#include "cx/cli/stream_output.hpp"
#include "cx/data/record_source.hpp"
#include "cx/image/image.hpp"
#include "cx/io/stream.hpp"
#include "cx/train/finetune.hpp"
#include "cx/train/segment.hpp"

namespace cx::train {

// Receives each record with its predicted label map (8-bit, value = class index) and that map as
// PNG bytes. Sinks are finished in the reverse order of their list (the stream, which comes last,
// first).
class SegSink {
 public:
  virtual ~SegSink() = default;
  virtual void write(io::Record& record, const Image& label_map, const std::string& png) = 0;
  virtual void finish() {}
};

// The header of the predicted stream: the input's, with mask.png described as the prediction (the
// head's classes), "segmentation" naming the head, and without the token fields unless kept.
nlohmann::json seg_stream_header(nlohmann::json input_header, const SegHeadInfo& head, const std::string& head_dir,
                                 bool keep_tokens);

class SegStreamSink : public SegSink {
 public:
  SegStreamSink(cli::StreamOutput& out, bool keep_tokens) : out_(out), keep_tokens_(keep_tokens) {}
  void write(io::Record& record, const Image& label_map, const std::string& png) override;
  void finish() override { out_.finish(); }

 private:
  cli::StreamOutput& out_;
  bool keep_tokens_;
};

class PngFolderSink : public SegSink {
 public:
  explicit PngFolderSink(std::string dir) : dir_(std::move(dir)) {}
  void write(io::Record& record, const Image& label_map, const std::string& png) override;

 private:
  std::string dir_;
};

class RleCsvSink : public SegSink {
 public:
  // The CSV is written atomically at `path` ("-": standard output) and committed by finish().
  RleCsvSink(const std::string& path, const std::vector<std::string>& classes);
  void write(io::Record& record, const Image& label_map, const std::string& png) override;
  void finish() override { out_.commit(); }

 private:
  cli::OutputFile out_;
  int classes_;
};

class OverlaySink : public SegSink {
 public:
  OverlaySink(std::string dir, int thickness) : dir_(std::move(dir)), thickness_(thickness) {}
  // Throws cx::Error naming the record when it carries no image.
  void write(io::Record& record, const Image& label_map, const std::string& png) override;

 private:
  std::string dir_;
  int thickness_;
};

// DIR/<key><ext>, its folders created (a key's '/' become subfolders).
std::string record_file(const std::string& dir, const std::string& key, const std::string& ext);

struct SegPredictOptions {
  std::int64_t batch = 16;      // images per head forward
  bool ignore_encoder = false;  // take tokens from another encoder than the head's
  torch::Device device = torch::kCPU;
};

// Where the time went (-v): the encoder (images embedded here), the head, resampling + argmax,
// and the sinks.
struct SegPredictStats {
  std::int64_t images = 0;
  bool encoder = false;  // the head carries an encoder
  double encoder_seconds = 0, head_seconds = 0, map_seconds = 0, output_seconds = 0;
  // "predicted N images: [encoder X s, ]head X s, resample + argmax X s, outputs X s (head P% of T s)"
  std::string describe() const;
};

// Predicts every record of `source` (named `where` in errors) with `head` (on options.device) and
// `encoder` (a fine-tuned head's, else empty) and hands each to every sink in order; then finishes
// the sinks. on_image is called after each record.
SegPredictStats predict_masks(data::RecordSource& source, const std::string& where, const SegHead& head,
                              const HeadEncoder& encoder, const SegPredictOptions& options,
                              const std::vector<SegSink*>& sinks, const std::function<void()>& on_image = {});

}  // namespace cx::train
