#pragma once
// The training augmentations of CXformer's fine-tuning protocol (its make_classification_train_transform,
// on a gray radiograph), on CPU tensors, every draw from a counter-based generator
// (random::training_rng) so that a sample's augmentation is a function of (seed, epoch, record) only:
//   1. random resized crop to the model's input size: area fraction in [scale_min, 1], aspect ratio
//      log-uniform in [3/4, 4/3], 10 tries then a centre crop (torchvision's RandomResizedCrop), resized
//      with antialiased bicubic and clamped to [0, 1]
//   2. horizontal flip with probability 0.5
//   3. affine about the centre: rotation in [-20, 20] degrees, translation up to 10% of each side
//      (whole pixels), scale in [0.8, 1.2], zero fill (torchvision's RandomAffine; sampled bilinearly
//      where torchvision's default is nearest)
//   4. with probability 0.5, brightness and contrast jitter (factors in [0.6, 1.4], random order;
//      ColorJitter's saturation and hue do nothing to a gray image)
//   5. with probability 0.5, Gaussian blur, kernel 9, sigma in [0.1, 2], reflected borders
//   6. gray replicated to 3 channels, then (x - mean) / std per channel.
// The steps are exposed below as primitives (cx/train/multicrop composes them into DINOv2's crops);
// augment_gray is exactly their composition in this order, drawing in this order from one generator.
#include <array>
#include <cstdint>

#include <torch/torch.h>

#include "cx/image/image.hpp"
#include "cx/random/rng.hpp"

namespace cx::train {

// Training's generator (cx/random/rng.hpp), named here for train's callers.
using random::CounterRng;

struct AugmentOptions {
  int height = 518;
  int width = 518;
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  double flip_p = 0.5;
  double degrees = 20.0, translate = 0.1, zoom_min = 0.8, zoom_max = 1.2;
  double jitter_p = 0.5, brightness = 0.4, contrast = 0.4;
  double blur_p = 0.5, blur_sigma_min = 0.1, blur_sigma_max = 2.0;
  int blur_kernel = 9;
  std::array<double, 3> mean = {0.485, 0.456, 0.406};  // ImageNet, as CXformer normalises
  std::array<double, 3> std = {0.229, 0.224, 0.225};
};

// An 8-bit gray image as float [H, W] in [0, 1].
torch::Tensor gray_to_unit(const Image& gray8);

// [3, height, width] float32, normalised. `gray` is [H, W] in [0, 1].
torch::Tensor augment_gray(const torch::Tensor& gray, const AugmentOptions& options, CounterRng& rng);

// The same draws applied to an image and its label map `labels` (uint8 [H, W], the image's size):
// the map is cropped and resized with nearest neighbour, moved by the same affine (nearest, 0 =
// background where the image is zero-filled) and flipped alike, then sampled at the centres of an
// out_h x out_w lattice into `out_labels` (uint8); the photometric steps touch only the image. The
// image is exactly what augment_gray returns for the same rng state. A flip swaps left and right
// structures: segmentation of lateral classes sets flip_p to 0.
torch::Tensor augment_gray_with_mask(const torch::Tensor& gray, const torch::Tensor& labels, const AugmentOptions& options,
                                     CounterRng& rng, std::int64_t out_h, std::int64_t out_w, torch::Tensor& out_labels);

// ---- The primitives. Images are float [H, W] gray in [0, 1] unless said otherwise. ----

// The crop box torchvision's RandomResizedCrop.get_params would draw: top, left, height, width.
// Draws: per try an area fraction uniform in [scale_min, scale_max) and a log-uniform aspect ratio
// (w / h) in [ratio_min, ratio_max); for the first box that fits, top then left uniform.
struct CropBox {
  std::int64_t top = 0, left = 0, height = 0, width = 0;
};
CropBox random_resized_crop_box(std::int64_t H, std::int64_t W, double scale_min, double scale_max, double ratio_min,
                                double ratio_max, CounterRng& rng);
CropBox random_resized_crop_box(std::int64_t H, std::int64_t W, const AugmentOptions& options, CounterRng& rng);

// The box cut out and resized to out_h x out_w (antialiased bicubic, align_corners false), clamped
// to [0, 1] (bicubic overshoots at edges).
torch::Tensor resized_crop(const torch::Tensor& gray, const CropBox& box, std::int64_t out_h, std::int64_t out_w);

// Left-right mirror.
torch::Tensor hflip(const torch::Tensor& x);

// RandomAffine's parameters (shear 0): rotation in degrees, translation in whole pixels, zoom.
struct AffineParams {
  double angle = 0, tx = 0, ty = 0, zoom = 1;
};
// Draws angle uniform in [-degrees, degrees), tx = round(uniform(-translate * width, translate * width)),
// ty likewise with height, zoom uniform in [zoom_min, zoom_max), in that order (torchvision's order).
AffineParams draw_affine(double degrees, double translate, double zoom_min, double zoom_max, std::int64_t height,
                         std::int64_t width, CounterRng& rng);
// The affine about the image centre, zero fill, sampled bilinearly (nearest when `nearest`, for label
// maps: then `x` holds label values as floats). With `flip` the input is mirrored first, so
// affine(x, p, true) is affine(hflip(x), p, false) sampled in one pass.
torch::Tensor affine(const torch::Tensor& x, const AffineParams& params, bool flip, bool nearest = false);

// ColorJitter's brightness and contrast on gray (saturation and hue do nothing to it): draws the
// brightness factor uniform in [1 - brightness, 1 + brightness), the contrast factor likewise, then
// which comes first (one uniform: below 0.5 brightness first). Brightness multiplies; contrast
// blends with the image mean; each clamps to [0, 1]. The caller draws whether to jitter at all.
torch::Tensor jitter_brightness_contrast(const torch::Tensor& x, double brightness, double contrast, CounterRng& rng);

// Separable Gaussian blur, odd `kernel` taps, reflected borders (torchvision's GaussianBlur).
torch::Tensor gaussian_blur(const torch::Tensor& x, int kernel, double sigma);

// Solarisation as torchvision's RandomSolarize(threshold) on 8-bit values: x >= threshold / 255
// becomes 1 - x.
torch::Tensor solarize(const torch::Tensor& x, double threshold = 128.0);

// Gray replicated to 3 channels, each (x - mean[c]) / std[c]: [3, H, W] float32.
torch::Tensor normalize_gray3(const torch::Tensor& x, const std::array<double, 3>& mean, const std::array<double, 3>& std);

}  // namespace cx::train
