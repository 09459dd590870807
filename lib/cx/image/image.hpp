#pragma once
// An image in memory: 8- or 16-bit samples, 1 (gray) or 3 (RGB) interleaved channels, row-major.
#include <cstdint>
#include <vector>

namespace cx {

struct Image {
  int width = 0;
  int height = 0;
  int channels = 1;  // 1 or 3
  int bits = 8;      // 8: data holds uint8 samples; 16: data holds native-endian uint16 samples
  std::vector<std::uint8_t> data;

  static Image gray8(int width, int height) { return make(width, height, 1, 8); }
  static Image gray16(int width, int height) { return make(width, height, 1, 16); }
  static Image make(int width, int height, int channels, int bits) {
    Image im;
    im.width = width;
    im.height = height;
    im.channels = channels;
    im.bits = bits;
    im.data.assign(static_cast<std::size_t>(width) * height * channels * (bits / 8), 0);
    return im;
  }
  std::size_t samples() const { return static_cast<std::size_t>(width) * height * channels; }
  std::uint8_t* u8() { return data.data(); }
  const std::uint8_t* u8() const { return data.data(); }
  std::uint16_t* u16() { return reinterpret_cast<std::uint16_t*>(data.data()); }
  const std::uint16_t* u16() const { return reinterpret_cast<const std::uint16_t*>(data.data()); }
};

}  // namespace cx
