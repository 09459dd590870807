#pragma once
// The phantom's own random numbers: xoshiro256** seeded through splitmix64 from (seed, index,
// stream), with uniform and normal transforms written here, because std:: distributions give
// different numbers on different standard libraries and the phantom must not.
#include <cmath>
#include <cstdint>

namespace cx::phantom {

inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  // Independent sub-streams of one record: the same (seed, index, stream) always gives the same
  // sequence, and changing any of the three gives an unrelated one.
  Rng(std::uint64_t seed, std::int64_t index, std::uint64_t stream) {
    std::uint64_t h = mix64(seed + 0x9E3779B97F4A7C15ull);
    h = mix64(h ^ mix64(static_cast<std::uint64_t>(index) + 0x632BE59BD9B4E019ull));
    h = mix64(h ^ mix64(stream + 0xD1B54A32D192ED03ull));
    for (auto& s : s_) {  // splitmix64 expansion of the 64-bit state into xoshiro's 256 bits
      h += 0x9E3779B97F4A7C15ull;
      s = mix64(h);
    }
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  // [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
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

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

}  // namespace cx::phantom
