#pragma once
// Histogram equalisation, as CXformer's training data used it.
// 8-bit: exactly Pillow's ImageOps.equalize (per channel for RGB): with h the histogram and
//   L the last non-empty bin, step = (N - h[L]) / 255 (integer division); if fewer than two
//   bins are used or step is 0 the image is unchanged; else lut[i] = (step/2 + sum_{j<i} h[j])
//   / step (integer division), clipped to 255.
// 16-bit: the same construction over 65536 bins, with a real-valued step (N - h[L]) / 65535 and
//   lut[i] = floor((step/2 + sum_{j<i} h[j]) / step) clipped to 65535. (An integer step would be 0,
//   leaving the image unchanged, for any image of fewer than 65535 pixels.)
#include "cx/image/image.hpp"

namespace cx::image {

// In place; gray or RGB, 8 or 16 bits.
void equalize(Image& image);

}  // namespace cx::image
