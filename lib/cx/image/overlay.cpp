#include "cx/image/overlay.hpp"

#include <algorithm>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/image/preprocess.hpp"
#include "cx/metrics/segmentation.hpp"

namespace cx::image {

std::array<std::uint8_t, 3> class_colour(int c) {
  static const std::array<std::uint8_t, 3> palette[10] = {
      {{230, 25, 75}},  {{60, 180, 75}}, {{0, 130, 200}},  {{255, 225, 25}}, {{245, 130, 48}},
      {{145, 30, 180}}, {{70, 240, 240}}, {{240, 50, 230}}, {{210, 245, 60}}, {{250, 190, 212}}};
  return palette[(std::max(c, 1) - 1) % 10];
}

Image draw_contours(const Image& picture, const Image& labels, int thickness) {
  if (picture.width <= 0 || picture.height <= 0) throw Error("draw_contours: empty image");
  const Image scaled = picture.bits == 8 ? Image() : scale_to_8bit(picture);  // no copy of an 8-bit picture
  const Image& gray = picture.bits == 8 ? picture : scaled;
  if (labels.channels != 1 || labels.bits != 8 || labels.width <= 0 || labels.height <= 0)
    throw Error("draw_contours: the label map must be 8-bit gray");
  const int W = gray.width, H = gray.height;
  Image out = Image::make(W, H, 3, 8);
  const std::size_t n = static_cast<std::size_t>(W) * H;
  for (std::size_t i = 0; i < n; ++i)
    for (int ch = 0; ch < 3; ++ch) out.data[i * 3 + ch] = gray.data[i * gray.channels + (gray.channels == 3 ? ch : 0)];
  // The label map at the image's size.
  std::vector<std::uint8_t> map(n);
  for (int y = 0; y < H; ++y) {
    const int sy = std::min(labels.height - 1, static_cast<int>(static_cast<long long>(y) * labels.height / H));
    for (int x = 0; x < W; ++x) {
      const int sx = std::min(labels.width - 1, static_cast<int>(static_cast<long long>(x) * labels.width / W));
      map[static_cast<std::size_t>(y) * W + x] = labels.data[static_cast<std::size_t>(sy) * labels.width + sx];
    }
  }
  const int t = std::max(1, thickness);
  const int lo = -(t - 1) / 2, hi = t / 2;  // the square painted around a boundary pixel
  const int top = *std::max_element(map.begin(), map.end());
  std::vector<std::uint8_t> in_class(n);
  for (int c = 1; c <= top; ++c) {
    for (std::size_t i = 0; i < n; ++i) in_class[i] = map[i] == c;
    const std::vector<std::uint8_t> edge = metrics::mask_boundary(in_class.data(), W, H);  // cx-eval's HD95 boundary
    const auto colour = class_colour(c);
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        if (!edge[static_cast<std::size_t>(y) * W + x]) continue;
        for (int dy = lo; dy <= hi; ++dy)
          for (int dx = lo; dx <= hi; ++dx) {
            const int xx = x + dx, yy = y + dy;
            if (xx < 0 || yy < 0 || xx >= W || yy >= H) continue;
            std::uint8_t* p = &out.data[(static_cast<std::size_t>(yy) * W + xx) * 3];
            p[0] = colour[0];
            p[1] = colour[1];
            p[2] = colour[2];
          }
      }
  }
  return out;
}

}  // namespace cx::image
