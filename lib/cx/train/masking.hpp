#pragma once
// iBOT's block masking of the global crops' patch tokens, as BEiT / DINOv2 draw it
// (dinov2/data/masking.py, dinov2/data/collate.py), every draw from cx's counter-based generator (the
// caller passes random::training_rng(seed, purpose, step, rank)), so a step's masks are a function of
// those counters only and a resumed run draws the same ones.
//
// MaskingGenerator(h, w)(n): blocks are added until n patches are masked or a block fails:
//   remaining = min(n - masked, max_num_patches); up to 10 tries of
//     area ~ U(min_num_patches, remaining), aspect = exp(U(log min_aspect, log max_aspect)),
//     bh = round(sqrt(area aspect)), bw = round(sqrt(area / aspect)) (round half to even, as Python),
//     kept only when bw < w and bh < h; top ~ {0 .. h - bh}, left ~ {0 .. w - bw};
//     the block is masked when it adds between 1 and `remaining` new patches, which ends the tries;
//   a round of 10 tries that adds nothing ends the mask.
// So the masked count never exceeds n (nor does one block add more than max_num_patches), n == 0
// gives an empty mask, and the result can fall short of n when blocks stop fitting.
//
// collate_masks (DINOv2's collate_data_and_cast for B global-crop images):
//   k = int(B probability) images are masked, image i < k with a target of int(N U(r_i, r_{i+1}))
//   patches, r_i = ratio_min + (ratio_max - ratio_min) i / k (linspace's k + 1 edges, in double precision
//   where DINOv2 uses float32), N = h w; the other B - k images are unmasked; then the B masks are shuffled
//   (random::permutation). upperbound = sum over i < k of int(N r_{i+1}) bounds the masked count
//   (DINOv2 sizes its token buffers with it).
#include <cstdint>

#include <torch/torch.h>

#include "cx/random/rng.hpp"

namespace cx::train {

class MaskingGenerator {
 public:
  // max_num_patches -1: floor(0.5 h w); max_aspect -1: 1 / min_aspect. Throws cx::Error on a grid or
  // limits that cannot be drawn from (h, w, min_aspect, max_aspect <= 0, min_num_patches < 0).
  MaskingGenerator(std::int64_t h, std::int64_t w, std::int64_t max_num_patches = -1,
                   std::int64_t min_num_patches = 4, double min_aspect = 0.3, double max_aspect = -1);

  // bool [h, w] with at most num_masking_patches true entries.
  torch::Tensor operator()(std::int64_t num_masking_patches, cx::random::CounterRng& rng) const;

  std::int64_t height() const { return h_; }
  std::int64_t width() const { return w_; }
  std::int64_t max_num_patches() const { return max_num_patches_; }

 private:
  // One round of up to 10 tries on mask (row-major h x w bytes); returns the patches it added.
  std::int64_t add_block(std::vector<std::uint8_t>& mask, std::int64_t max_mask_patches,
                         cx::random::CounterRng& rng) const;

  std::int64_t h_, w_, max_num_patches_, min_num_patches_;
  double log_aspect_min_, log_aspect_max_;
};

struct CollatedMasks {
  torch::Tensor masks;    // bool [B, h*w]
  torch::Tensor indices;  // int64 [M]: the true entries' indices into masks.flatten(), ascending
  torch::Tensor weights;  // float32 [M]: 1 / (masked count of that entry's image)
  std::int64_t upperbound = 0;
  std::int64_t count() const { return indices.defined() ? indices.size(0) : 0; }  // M
};

// Throws cx::Error when B < 1, probability outside [0, 1] or ratios outside [0, 1] / min > max.
CollatedMasks collate_masks(std::int64_t B, std::int64_t h, std::int64_t w, double probability, double ratio_min,
                            double ratio_max, cx::random::CounterRng& rng);

}  // namespace cx::train
