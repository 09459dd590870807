#pragma once
// Segmentation heads on patch tokens (CXformer's / DINOv2's protocol: frozen encoder, normed patch
// tokens on the h x w grid), trained with 0.5 cross-entropy + 0.5 Dice against label maps:
//   linear  a 1x1 convolution C -> K on the grid (the linear segmentation probe)
//   conv    a progressive-upsampling decoder: 1x1 C -> hidden, GELU; 3x3 hidden -> hidden/2, GELU;
//           x2 bilinear; 3x3 -> hidden/4, GELU; x2 bilinear; 1x1 -> K  (logits at 4h x 4w); meant
//           for patch4 (the last four blocks' tokens concatenated, C = 4D) but takes either field
// Logits are upsampled bilinearly (align_corners false) to the target, so a head's output is defined
// at any resolution. Inputs are standardised per channel with statistics of the training tokens (a
// frozen BatchNorm, as DINOv2's BNHead).
//
// Geometry: an embedding record's .json "patch_grid" (cx-embed) names the box of the image the grid
// covers; training targets are the record's .mask.png sampled (nearest) at the centres of a
// (h * stride) x (w * stride) lattice over that box, and predictions are sampled back onto every
// pixel of the image (bilinear on the logits, the nearest border logits outside the box), then
// argmax'd into a label map of the image's size.
//
// A head folder: head.json (format "cx-seghead" 1.0: classes, feature, head shape, encoder, target
// stride, training settings, validation Dice) and head.safetensors.
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/record_source.hpp"
#include "cx/image/image.hpp"
#include "cx/io/stream.hpp"
#include "cx/image/preprocess.hpp"
#include "cx/model/vit.hpp"
#include "cx/train/finetune.hpp"
#include "cx/train/head.hpp"
#include "cx/train/optim.hpp"

namespace cx::train {

enum class SegHeadType { linear, conv };
SegHeadType parse_seg_head_type(const std::string& name);  // "linear" | "conv"; else UsageError
std::string seg_head_type_name(SegHeadType t);

struct SegHeadShape {
  SegHeadType type = SegHeadType::linear;
  std::int64_t in = 0;       // token channels (D, or n * D for patch4)
  std::int64_t hidden = 0;   // conv only: width of the first layer (a multiple of 4)
  std::int64_t classes = 0;  // background included
};

class SegHeadModule : public torch::nn::Module {
 public:
  explicit SegHeadModule(SegHeadShape shape);
  const SegHeadShape& shape() const { return shape_; }
  // [B, in, h, w] -> logits [B, classes, h * upscale(), w * upscale()]
  torch::Tensor forward(const torch::Tensor& x);
  int upscale() const { return shape_.type == SegHeadType::conv ? 4 : 1; }
  // Deterministic from the seed: the 1x1 classifier N(0, 0.01), zero bias; the decoder's hidden
  // convolutions He-normal (fan in).
  void init(std::uint64_t seed);

 private:
  SegHeadShape shape_;
  std::vector<torch::Tensor> w_, b_;
};

struct SegHeadInfo : HeadRecord {
  std::vector<std::string> classes;  // names of values 0..K-1; 0 is "background"
  std::string feature = "patch";     // patch | patch4
  SegHeadShape shape;
  int stride = 14;                   // target pixels per grid cell used in training
};

struct SegHead {
  SegHeadInfo info;
  std::shared_ptr<SegHeadModule> module;
  torch::Tensor mean, std;  // [in] per-channel standardisation; undefined: none

  torch::Tensor standardize(const torch::Tensor& x) const;  // [B, in, h, w]
  // Logits for tokens [B, in, h, w] (any float dtype, any device), no grad, on the head's device.
  torch::Tensor logits(const torch::Tensor& tokens) const;
};

nlohmann::json seg_head_json(const SegHead& head);
void write_seg_head_files(const std::string& folder, const SegHead& head);  // into an existing folder
// Errors name the folder and the problem (missing files, another format, a newer major version,
// tensor shapes that disagree with head.json).
SegHead load_seg_head(const std::string& folder);

// Where a record's grid lies on its image (cx-embed's "patch_grid").
struct PatchGrid {
  int image_width = 0, image_height = 0;
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  std::int64_t h = 0, w = 0;
};
// Where the preprocessed input of a width x height image lies on it (image::input_window), on a
// grid of patch_size cells.
PatchGrid input_patch_grid(int width, int height, const image::PreprocessConfig& preprocess, int patch_size);
// From the record's .json; a record without "patch_grid" gets the whole image of `fallback_w` x
// `fallback_h` (0: unknown, returns false). Malformed entries throw cx::Error naming the record.
bool record_patch_grid(const io::Record& record, PatchGrid& grid, int fallback_w = 0, int fallback_h = 0);

// A record's tokens as [C, h, w] float (f16 kept as f16): patch.npy [h, w, D] or patch4.npy
// [n, h, w, D] (concatenated along channels). Missing field: undefined tensor.
torch::Tensor record_tokens(const io::Record& record, const std::string& feature);

// A label map sampled at the centres of an out_h x out_w lattice over the box [x0, x1) x [y0, y1)
// of a map whose own size is (map.width, map.height) while the box is given in the coordinates of
// an image_w x image_h image (the map may be stored at another resolution), nearest neighbour,
// clamped to the map. Returns uint8 [out_h, out_w].
torch::Tensor sample_label_map(const Image& map, const PatchGrid& grid, std::int64_t out_h, std::int64_t out_w);

// Logits [K, gh, gw] over the grid's box -> a label map of width x height (the argmax of the
// bilinearly resampled logits; outside the box the border logits continue).
Image logits_to_label_map(const torch::Tensor& logits, const PatchGrid& grid, int width, int height);

// The class names of a stream's masks: the header's fields["mask.png"]["classes"] or "classes", else
// an empty list (then a record's json "classes" is looked at by load_seg_set).
std::vector<std::string> stream_mask_classes(const nlohmann::json& header);

struct SegSet {
  std::vector<std::string> keys;
  torch::Tensor x;  // [N, C, h, w] float16 (float32 when the stream holds float32 tokens)
  torch::Tensor y;  // [N, h * stride, w * stride] uint8 class indices
  std::vector<std::string> classes;
  nlohmann::json header;
  std::int64_t rows() const { return x.defined() ? x.size(0) : 0; }
};

// Reads every record's tokens and .mask.png into memory. Classes: `classes` when given (names of
// 1..n), else the stream's, else the first record's json "classes", else "class 1".. up to the
// largest value seen. A record without tokens or mask, tokens of another shape, or a mask value
// beyond the classes throws cx::Error naming the record. An empty stream is an error too.
SegSet load_seg_set(data::RecordSource& source, const std::string& feature, int stride,
                    const std::vector<std::string>& classes, const std::string& where);

// 0.5 * mean cross-entropy + 0.5 * (1 - mean soft Dice over the foreground classes), the Dice of a
// class taken over the whole batch: (2 sum p g + 1) / (sum p + sum g + 1). logits [B, K, H, W]
// (already at the target's size), target int64 [B, H, W].
torch::Tensor ce_dice_loss(const torch::Tensor& logits, const torch::Tensor& target);

// Mean Dice per foreground class over images where it is defined (not both empty), from hard
// predictions; and their mean over classes with a value ("macro", NaN when none).
struct SegEvaluation {
  std::vector<double> dice;  // [K - 1]
  double macro = std::nan("");
};
SegEvaluation evaluate_dice(const torch::Tensor& pred, const torch::Tensor& target, std::int64_t classes);

struct SegTrainOptions {
  SegHeadType head = SegHeadType::linear;
  std::int64_t hidden = 256;
  int epochs = 30;
  std::int64_t batch = 16;
  double lr = 1e-3;
  double weight_decay = 1e-4;
  Schedule schedule = Schedule::cosine;
  double warmup = 0.05;
  int patience = 5;       // epochs without a better validation mean Dice; 0: never stop early
  double dropout = 0.1;   // on the standardised tokens, whole tokens for conv, channels for linear
  bool standardize = true;
  std::uint64_t seed = 0;
  torch::Device device = torch::kCPU;
};

struct SegEpochReport {
  int epoch = 0;
  double train_loss = 0;
  double val_dice = std::nan("");
  bool best = false;
};

// Trains a head; `val` may be null (then the last epoch is kept). Deterministic for a seed and thread
// count. Throws cx::Error when val's tokens or classes differ from train's.
SegHead train_seg_head(const SegSet& train, const SegSet* val, const std::string& feature, int stride,
                       const SegTrainOptions& options, const std::function<void(const SegEpochReport&)>& on_epoch = {});

// --- fine-tuning encoder + head from images (finetune.hpp's loop) ---------------------------------

// Tokens [B, C, h, w] of preprocessed pixels [B, 3, H, W]: the last block's normed patch tokens
// (patch) or the last min(4, L) blocks' concatenated along channels, oldest first (patch4), the
// layout cx-embed writes and record_tokens() reads.
torch::Tensor encoder_tokens(model::VitModel& encoder, const torch::Tensor& pixels, const std::string& feature);

// Records with an image (png, jpg) and a .mask.png. Targets are the masks sampled over the box the
// preprocessed input covers (image::input_window) on the (input / patch) grid times `stride`.
struct SegImageSet {
  std::vector<std::string> keys, images, image_names;
  std::vector<std::string> masks;  // the .mask.png bytes, for augmentation
  torch::Tensor y;  // [N, gh * stride, gw * stride] uint8
  std::vector<std::string> classes;
  nlohmann::json header;
  std::int64_t rows() const { return static_cast<std::int64_t>(keys.size()); }
};
SegImageSet load_seg_images(data::RecordSource& source, const image::PreprocessConfig& preprocess, int patch_size, int stride,
                            const std::vector<std::string>& classes, const std::string& where);

struct SegFinetuneResult {
  SegHead head;
  std::shared_ptr<model::VitModel> encoder;
  bool finished = false;
  std::int64_t steps_done = 0;
};
// Encoder and head trained together, loss ce_dice_loss, validation by mean foreground Dice (on the
// deterministic preprocessing). With options.augment, each sample is augment_gray_with_mask's (the
// mask moved with the image; options.augment_options.flip_p should be 0 for lateral classes), else
// the deterministic preprocessing and the precomputed target. Checkpoints and resume as
// finetune.hpp describes.
SegFinetuneResult finetune_seg(const SegImageSet& train, const SegImageSet* val, const std::string& feature, int stride,
                               SegHeadType head_type, std::int64_t hidden, const FinetuneOptions& options,
                               const std::function<void(const FinetuneProgress&)>& on_progress = {});
// The head folder with the encoder inside (encoder/), atomically; "encoder" names the saved one.
void write_finetuned_seg_head(const std::string& folder, SegFinetuneResult& result, const FinetuneOptions& options);

}  // namespace cx::train
