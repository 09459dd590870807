#pragma once
// Resampling that reproduces Pillow 9.4's Image.resize(size, resample) bit for bit, so that a model
// fed by cx sees the same pixels as one fed by Hugging Face's (slow, PIL-based) image processors.
//
// Contract:
//  - 8-bit images (1 or 3 channels) follow Pillow's "L"/"RGB" path: two separable passes,
//    horizontal first into a uint8 intermediate, then vertical; filter support widened by the
//    downscale factor; weights normalised to sum 1, then fixed point with 22 fractional bits;
//    round half up and clip to 0..255 after each pass. An axis whose size does not change is not
//    resampled.
//  - 16-bit images follow Pillow's "I" (int32) path per channel: double weights and accumulation,
//    rounded half away from zero into an int32 intermediate (not clipped), then the vertical
//    pass, rounded and finally clamped to 0..65535 (Pillow's "I" would keep values outside it).
//  - resize_plane_f32 follows Pillow's "F" path (double accumulation, float32 intermediate).
//  - Filter::nearest follows Pillow's affine nearest-neighbour scaling (pixel centres, truncation).
//  - Coefficients are computed once per axis; cost is O(out_w * in_h * taps + out_w * out_h * taps).
// Filter values are Pillow's integer codes (PIL.Image.Resampling), as preprocessor_config.json
// stores them in "resample".
#include <string>
#include <vector>

#include "cx/image/image.hpp"

namespace cx::image {

enum class Filter : int { nearest = 0, lanczos = 1, bilinear = 2, bicubic = 3, box = 4, hamming = 5 };

// Pillow's resample code (0..5) to a Filter; throws cx::Error naming `where` for other values.
Filter filter_from_pillow(int code, const std::string& where = "");
// "nearest", "bilinear", "bicubic", "lanczos", "box" (alias "area"), "hamming"; throws cx::Error.
Filter filter_from_name(const std::string& name, const std::string& where = "");
std::string filter_name(Filter filter);

// Resize `in` (8 or 16 bit, 1 or 3 channels) to width x height. Throws cx::Error for empty
// images, non-positive sizes, or unsupported layouts.
Image resize(const Image& in, int width, int height, Filter filter);

// One float32 plane, row-major width x height, as Pillow's mode "F".
std::vector<float> resize_plane_f32(const std::vector<float>& in, int width, int height, int out_width,
                                    int out_height, Filter filter);

struct Size {
  int width = 0;
  int height = 0;
};

// The size Hugging Face's get_resize_output_image_size(default_to_square=False) picks: the shorter
// side becomes `shortest_edge`, the longer int(shortest_edge * long / short), truncated. Ties
// (square images) count the width as the shorter side, as HF does.
Size shortest_edge_size(int width, int height, int shortest_edge);
Image resize_shortest_edge(const Image& in, int shortest_edge, Filter filter);

}  // namespace cx::image
