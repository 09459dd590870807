#pragma once
// Model preprocessing: an image in, pixel_values out (float32, [3, H, W], channel-first), exactly as
// Hugging Face's slow BitImageProcessor (also CLIP-/ViTImageProcessor) computes it with Pillow 9.4:
//   convert("RGB") -> resize (shortest edge, or height x width; Pillow filter) -> center crop (zero
//   padded when the image is smaller, as HF pads) -> x * rescale_factor (double, then float32) ->
//   (x - mean) / std in float32.
// Two pipelines, chosen by name (`--preprocess hf|cxformer`):
//   hf        the steps above, driven by preprocessor_config.json.
//   cxformer  CXformer's: grayscale (Pillow's convert("L")), optional histogram equalisation
//             (cx::image::equalize, Pillow's ImageOps.equalize), then the same resize / crop /
//             rescale / normalise with 518 / 518 and ImageNet mean and std by default, the gray
//             replicated into three channels.
// A 16-bit image is clamped to 0..255, not rescaled, as Pillow's convert() does to a 16-bit PNG:
// window radiographs to 8 bits first (cx-ingest does). Processors of the "Fast" (torchvision)
// family are read with the same Pillow semantics; their own output differs by a few gray levels.
#include <array>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "cx/image/image.hpp"
#include "cx/image/resize.hpp"

namespace cx::image {

enum class Pipeline { hf, cxformer };

// "hf" or "cxformer"; anything else throws cx::Error naming `where`.
Pipeline pipeline_from_name(const std::string& name, const std::string& where = "");
std::string pipeline_name(Pipeline pipeline);

struct PreprocessConfig {
  Pipeline pipeline = Pipeline::hf;
  std::string processor_type = "BitImageProcessor";  // as the file names it
  bool do_convert_rgb = true;                         // gray input is replicated to RGB regardless
  bool do_resize = true;
  int shortest_edge = 224;  // size {"shortest_edge": n}; 0 when an exact size is given
  int resize_height = 0;    // size {"height", "width"}: used when shortest_edge == 0
  int resize_width = 0;
  Filter resample = Filter::bicubic;
  bool do_center_crop = true;
  int crop_height = 224;
  int crop_width = 224;
  bool do_rescale = true;
  double rescale_factor = 1.0 / 255.0;
  bool do_normalize = true;
  std::array<double, 3> image_mean = {0.48145466, 0.4578275, 0.40821073};  // BitImageProcessor's
  std::array<double, 3> image_std = {0.26862954, 0.26130258, 0.27577711};  // defaults (OpenAI CLIP)
  bool equalize = false;  // cxformer pipeline only

  // A preprocessor_config.json: fields missing from it take the processor class's defaults.
  // Errors (wrong types, unknown sizes or filters) name `where` and the field.
  static PreprocessConfig from_json(const nlohmann::json& j, const std::string& where);
  static PreprocessConfig from_file(const std::string& path);
  // CXformer's pipeline: 518 shortest edge, bicubic, 518 x 518 crop, ImageNet mean / std.
  static PreprocessConfig cxformer(bool equalize = false);
};

struct PixelValues {
  int height = 0;
  int width = 0;
  std::vector<float> data;  // [3, height, width]
};

// Pillow's convert("RGB"): gray replicated; 16-bit gray clamped to 0..255 (Pillow's mode "I");
// 16-bit RGB keeps the high byte (Pillow decodes 16-bit RGB PNGs as "RGB;16B").
Image to_rgb_u8(const Image& in);
// cx's rule for feeding a model: cx-ingest has already windowed 16-bit radiographs, so 16-bit
// samples are scaled to 8 bits (round(v * 255 / 65535)), not clamped as Pillow's convert() would;
// 8-bit images are passed through (moved, not copied).
Image scale_to_8bit(Image in);
// Pillow's convert("L"): RGB as (19595 R + 38470 G + 7471 B + 0x8000) >> 16; 16-bit as above.
Image to_gray_u8(const Image& in);
// HF's center_crop: offsets (h - crop_h) // 2 and (w - crop_w) // 2 (floor division); where the
// crop reaches outside the image the samples are 0. Any channel count and depth.
Image center_crop(const Image& in, int crop_height, int crop_width);
// 8-bit gray or RGB in; gray is replicated. Rescale and normalise per the config's do_* flags.
PixelValues rescale_normalize(const Image& in, const PreprocessConfig& config);
// The whole pipeline the config names.
PixelValues preprocess(const Image& in, const PreprocessConfig& config);

// Where the model's input lies on the image it was made from: the box [x0, x1) x [y0, y1) in the
// image's continuous pixel coordinates (pixel i spans [i, i + 1)) that the input covers after the
// resize and centre crop (it reaches outside the image where the crop was zero-padded), and the
// input's size. Segmentation uses it to put patch-grid predictions back on the image.
struct InputWindow {
  double x0 = 0, y0 = 0, x1 = 0, y1 = 0;
  int width = 0, height = 0;  // the model input's size
};
InputWindow input_window(int image_width, int image_height, const PreprocessConfig& config);

}  // namespace cx::image
