#include "cx/image/equalize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::image {
namespace {

std::vector<std::uint32_t> pillow_lut8(const std::vector<std::uint64_t>& h) {
  std::vector<std::uint32_t> lut(256);
  int used = 0, last = -1;
  std::uint64_t total = 0;
  for (int i = 0; i < 256; ++i) {
    if (h[i]) {
      ++used;
      last = i;
      total += h[i];
    }
  }
  const std::uint64_t step = used <= 1 ? 0 : (total - h[last]) / 255;
  if (step == 0) {
    for (int i = 0; i < 256; ++i) lut[i] = i;
    return lut;
  }
  std::uint64_t acc = step / 2;
  for (int i = 0; i < 256; ++i) {
    lut[i] = static_cast<std::uint32_t>(std::min<std::uint64_t>(acc / step, 255));  // Image.point clips
    acc += h[i];
  }
  return lut;
}

std::vector<std::uint32_t> lut16(const std::vector<std::uint64_t>& h) {
  std::vector<std::uint32_t> lut(65536);
  int used = 0, last = -1;
  std::uint64_t total = 0;
  for (int i = 0; i < 65536; ++i) {
    if (h[i]) {
      ++used;
      last = i;
      total += h[i];
    }
  }
  const double step = used <= 1 ? 0.0 : static_cast<double>(total - h[last]) / 65535.0;
  if (step <= 0.0) {
    for (int i = 0; i < 65536; ++i) lut[i] = i;
    return lut;
  }
  std::uint64_t before = 0;
  for (int i = 0; i < 65536; ++i) {
    const double v = std::floor((step / 2 + static_cast<double>(before)) / step);
    lut[i] = static_cast<std::uint32_t>(std::min(v, 65535.0));
    before += h[i];
  }
  return lut;
}

}  // namespace

void equalize(Image& im) {
  if (im.bits != 8 && im.bits != 16) throw Error("equalize: " + std::to_string(im.bits) + "-bit images are not supported");
  const int ch = im.channels;
  const std::size_t n = static_cast<std::size_t>(im.width) * im.height;
  const std::size_t bins = im.bits == 8 ? 256 : 65536;
  for (int c = 0; c < ch; ++c) {
    std::vector<std::uint64_t> h(bins, 0);
    if (im.bits == 8) {
      for (std::size_t i = 0; i < n; ++i) ++h[im.u8()[i * ch + c]];
      const auto lut = pillow_lut8(h);
      for (std::size_t i = 0; i < n; ++i) im.u8()[i * ch + c] = static_cast<std::uint8_t>(lut[im.u8()[i * ch + c]]);
    } else {
      for (std::size_t i = 0; i < n; ++i) ++h[im.u16()[i * ch + c]];
      const auto lut = lut16(h);
      for (std::size_t i = 0; i < n; ++i) im.u16()[i * ch + c] = static_cast<std::uint16_t>(lut[im.u16()[i * ch + c]]);
    }
  }
}

}  // namespace cx::image
