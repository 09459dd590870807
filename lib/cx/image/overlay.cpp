#include "cx/image/overlay.hpp"

#include <algorithm>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::image {

std::array<std::uint8_t, 3> class_colour(int c) {
  static const std::array<std::uint8_t, 3> palette[10] = {
      {{230, 25, 75}},  {{60, 180, 75}}, {{0, 130, 200}},  {{255, 225, 25}}, {{245, 130, 48}},
      {{145, 30, 180}}, {{70, 240, 240}}, {{240, 50, 230}}, {{210, 245, 60}}, {{250, 190, 212}}};
  return palette[(std::max(c, 1) - 1) % 10];
}

Image draw_contours(const Image& image, const Image& labels, int thickness) {
  if (image.width <= 0 || image.height <= 0) throw Error("draw_contours: empty image");
  if (labels.channels != 1 || labels.bits != 8 || labels.width <= 0 || labels.height <= 0)
    throw Error("draw_contours: the label map must be 8-bit gray");
  const int W = image.width, H = image.height;
  Image out = Image::make(W, H, 3, 8);
  const std::size_t n = static_cast<std::size_t>(W) * H;
  for (std::size_t i = 0; i < n; ++i)
    for (int ch = 0; ch < 3; ++ch) {
      const std::size_t s = i * image.channels + (image.channels == 3 ? ch : 0);
      out.data[i * 3 + ch] =
          image.bits == 16 ? static_cast<std::uint8_t>((image.u16()[s] * 255u + 32767u) / 65535u) : image.data[s];
    }
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
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      const std::uint8_t c = map[static_cast<std::size_t>(y) * W + x];
      if (c == 0) continue;
      auto other = [&](int xx, int yy) {
        return xx < 0 || yy < 0 || xx >= W || yy >= H || map[static_cast<std::size_t>(yy) * W + xx] != c;
      };
      if (!(other(x - 1, y) || other(x + 1, y) || other(x, y - 1) || other(x, y + 1))) continue;
      const auto colour = class_colour(c);
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
  return out;
}

}  // namespace cx::image
