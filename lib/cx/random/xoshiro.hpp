#pragma once
// The one random engine of cx, written out so that every platform draws the same numbers (std::
// engines are portable but std:: distributions are not): xoshiro256** (Blackman & Vigna, 2018),
// seeded through SplitMix64 (Steele, Lea & Flood, 2014). Each concern derives its own seeding
// (phantom: seed, record, stream; bootstrap: seed, resample; training: counters) and transforms.
#include <cstdint>

namespace cx::random {

// SplitMix64's output function: a bijective 64-bit mix.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One SplitMix64 step: advances `state` by the golden-ratio increment and returns its mix.
inline std::uint64_t splitmix64_next(std::uint64_t& state) { return mix64(state += 0x9E3779B97F4A7C15ull); }

class Xoshiro256ss {
 public:
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

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 protected:
  Xoshiro256ss() = default;  // a derived generator seeds s_
  std::uint64_t s_[4] = {0, 0, 0, 0};

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
};

}  // namespace cx::random
