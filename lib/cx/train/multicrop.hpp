#pragma once
// DINOv2's multi-crop augmentation (its DataAugmentationDINO) on a gray radiograph, with CXformer's
// changes as options, on CPU tensors. From one source image, in this order, drawing in this order
// from one generator (so the crops are a function of the generator's state only):
//   global crop 1, global crop 2, then local_number local crops; each crop:
//   1. random resized crop (cx/train/augment: random_resized_crop_box, resized_crop) to global_size
//      with area fraction in [global_scale_min, global_scale_max), or to local_size with
//      [local_scale_min, local_scale_max); aspect ratio log-uniform in [3/4, 4/3); antialiased bicubic
//   2. horizontal flip with probability 0.5
//   3. global crops only, with global_affine: CXformer's RandomAffine(degrees 20, translate 0.1,
//      scale 0.8-1.2), zero fill, sampled bilinearly (torchvision's default is nearest)
//   4. with probability jitter_p, brightness and contrast jitter (ColorJitter(0.4, 0.4, 0.2, 0.1) on a
//      gray image: saturation, hue and RandomGrayscale do nothing to it)
//   5. Gaussian blur (kernel 9, sigma uniform in [0.1, 2)) with probability blur_p_global1 (crop 1),
//      blur_p_global2 (crop 2), blur_p_local (local crops)
//   6. crop 2 only: solarisation (threshold 128 of 255) with probability solarize_p_global2
//   7. gray to 3 channels, (x - mean) / std per channel.
// The blur probabilities are the probability of blurring, as DINO (v1) and the DINOv2 paper state
// them (1.0, 0.1, 0.5). DINOv2's code wraps its GaussianBlur(p) in RandomApply with 1 - p, so it blurs
// global crop 1 never and global crop 2 with probability 0.9: a recipe that wants the code's
// behaviour sets blur_p_global1 = 0, blur_p_global2 = 0.9.
// Histogram equalisation (hist_equalize, as CXformer's data sets apply Pillow's ImageOps.equalize) is
// done once on the 8-bit source image before any crop.
// The crops are computed serially on the calling thread (intra-op threads off for the call), so
// their values never depend on the intra-op thread count or on which thread computes them.
#include <array>
#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "cx/image/image.hpp"
#include "cx/train/augment.hpp"

namespace cx::train {

struct MultiCropOptions {
  std::int64_t global_size = 224, local_size = 96, local_number = 8;
  double global_scale_min = 0.32, global_scale_max = 1.0, local_scale_min = 0.05, local_scale_max = 0.32;
  bool global_affine = false;  // CXformer's random affine on global crops (its parameters)
  double jitter_p = 0.8, brightness = 0.4, contrast = 0.4;  // ColorJitter on gray: saturation/hue do nothing
  double blur_p_global1 = 1.0, blur_p_global2 = 0.1, blur_p_local = 0.5, solarize_p_global2 = 0.2;
  bool hist_equalize = false;  // applied to the source image before cropping
  std::array<double, 3> mean{0.485, 0.456, 0.406}, std{0.229, 0.224, 0.225};
};

// Throws cx::UsageError naming the option when a value is out of range (sizes < 1, local_number < 0,
// scales outside (0, 1] or min > max, probabilities outside [0, 1], jitter strengths outside [0, 1],
// std <= 0).
void check_multicrop_options(const MultiCropOptions& options);

struct MultiCrops {
  torch::Tensor global;  // [2, 3, global_size, global_size] float32, normalised
  torch::Tensor local;   // [local_number, 3, local_size, local_size] float32 (an empty [0, 3, L, L] for 0)
};

// `gray` is [H, W] float in [0, 1]. With hist_equalize it is first quantised to 8 bits (round) and
// equalised; the 8-bit overload equalises the image it is given (no second quantisation).
MultiCrops multicrop(const torch::Tensor& gray, const MultiCropOptions& options, CounterRng& rng);
MultiCrops multicrop(const Image& gray8, const MultiCropOptions& options, CounterRng& rng);

}  // namespace cx::train
