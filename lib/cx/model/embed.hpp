#pragma once
// The work of cx-embed, record by record: image (or a given pixel_values.npy) -> preprocessing ->
// batched encoder forward -> the requested token fields, in input order.
//   cls.npy                f32 [D]        the final-LayerNorm'd CLS token (HF pooler_output)
//   patch.npy              f16|f32 [h,w,D] last-layer normed patch tokens on the patch grid
//   patch4.npy             f16|f32 [n,h,w,D] final-LayerNorm'd patch tokens of the last n = min(4, L)
//                          blocks, oldest first (DINOv2's multi-layer segmentation input)
//   reg.npy                f32 [R,D]      normed register tokens (absent for models without)
//   last_hidden_state.npy  f32 [N,D]      every token, HF order: CLS, registers, patches
//   pixel_values.npy       f32 [3,H,W]    the model's input after preprocessing
//   cx5.npy                f32 [5D]       CXformer's classification feature (cx5_features)
// Other fields pass through, except the image (png/jpg/jpeg, kept with keep_image) and a consumed
// pixel_values.npy (kept only when emitted). A record that carries pixel_values.npy is fed as it is.
// With patch or patch4, the record's .json gets "patch_grid": {"image_size": [W, H], "box": [x0, y0,
// x1, y1], "grid": [h, w]}: the box on the W x H image that the grid covers (image::input_window;
// for a given pixel_values.npy the input itself), so that masks can be put back on the image.
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/image/preprocess.hpp"
#include "cx/io/stream.hpp"
#include "cx/model/runtime.hpp"
#include "cx/model/vit.hpp"

namespace cx::model {

// The field names --emit accepts, in the order they are written.
const std::vector<std::string>& embed_field_names();

struct EmbedOptions {
  std::set<std::string> emit = {"cls"};
  bool patch_f16 = true;
  bool keep_image = false;
  image::PreprocessConfig preprocess;
  // Empty when the folder has no preprocessor_config.json: then only records that carry
  // pixel_values.npy can be embedded (others fail naming the missing file).
  std::string preprocess_missing;
  int batch = 8;
  torch::Device device = torch::kCPU;
  Precision precision = Precision::f32;
};

class Embedder {
 public:
  // A record that cannot be embedded (no image, undecodable, too small, non-finite output): its key
  // and the one-line error, which names the record (or its field) already.
  using BadRecord = std::function<void(const std::string& key, const std::string& why)>;

  Embedder(std::shared_ptr<VitModel> model, EmbedOptions options, BadRecord on_bad = nullptr);

  // The output header: the input's, with the fields updated and `model` recorded.
  nlohmann::json output_header(const nlohmann::json& input_header, const nlohmann::json& model_info) const;

  // Queues a record; records whose batch ran are appended to `done`, in input order. Errors in a
  // record go to on_bad when set (the record is dropped), else throw cx::Error naming the key.
  void push(io::Record record, std::vector<io::Record>& done);
  void flush(std::vector<io::Record>& done);

  // The feature of one emitted field as floats, for --format npy (cls or cx5).
  static std::vector<float> field_floats(const io::Record& record, const std::string& field);

 private:
  struct Pending {
    io::Record record;
    torch::Tensor pixels;  // [3, H, W] f32, CPU
    image::InputWindow window;  // where the input lies on the image
    int image_width = 0, image_height = 0;
  };
  torch::Tensor pixels_of(io::Record& record, Pending& where) const;
  void run_batch(std::vector<io::Record>& done);

  std::shared_ptr<VitModel> model_;
  EmbedOptions options_;
  BadRecord on_bad_;
  std::vector<Pending> pending_;
};

}  // namespace cx::model
