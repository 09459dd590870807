#pragma once
// The phantom's own random numbers: xoshiro256** seeded through splitmix64 from (seed, index,
// stream), with uniform and normal transforms written here, because std:: distributions give
// different numbers on different standard libraries and the phantom must not.
#include <cmath>
#include <cstdint>

#include "cx/random/xoshiro.hpp"

namespace cx::phantom {

class Rng : public random::Xoshiro256ss {
 public:
  // Independent sub-streams of one record: the same (seed, index, stream) always gives the same
  // sequence, and changing any of the three gives an unrelated one.
  Rng(std::uint64_t seed, std::int64_t index, std::uint64_t stream) {
    using random::mix64;
    std::uint64_t h = mix64(seed + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ mix64(static_cast<std::uint64_t>(index) + 0x632BE59BD9B4E019ull));
    h = mix64(h ^ mix64(stream + 0xD1B54A32D192ED03ull));
    for (auto& s : s_) s = random::splitmix64_next(h);  // the 64-bit state expanded into xoshiro's 256 bits
  }

  using Xoshiro256ss::uniform;  // [0, 1) with 53 random bits
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool chance(double p) { return uniform() < p; }
  // 0 .. n-1 (n > 0); the modulo bias is below 2^-40 for the small n used here.
  int below(int n) { return static_cast<int>((next() >> 11) % static_cast<std::uint64_t>(n)); }
  // Standard normal by Box-Muller (one value per call, so the sequence never depends on a cache).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double normal(double mean, double sd) { return mean + sd * normal(); }
  // Gaussian-like noise for pixels, two samples per generator call: each the sum of four 8-bit
  // uniforms (Irwin-Hall, 1021 levels), scaled to unit variance. Far cheaper than normal(), and
  // plenty for image grain.
  void grain2(float& a, float& b) {
    const std::uint64_t r = next();
    auto sum4 = [](std::uint32_t v) {
      return static_cast<float>((v & 0xFF) + ((v >> 8) & 0xFF) + ((v >> 16) & 0xFF) + (v >> 24));
    };
    // mean 4 * 127.5, variance 4 * (256^2 - 1) / 12
    a = (sum4(static_cast<std::uint32_t>(r)) - 510.0f) * (1.0f / 147.7949f);
    b = (sum4(static_cast<std::uint32_t>(r >> 32)) - 510.0f) * (1.0f / 147.7949f);
  }

};

}  // namespace cx::phantom
