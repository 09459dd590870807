#pragma once
// The engines of cx's random numbers, written out so that every platform draws the same numbers
// (std:: engines are portable but std:: distributions are not): xoshiro256** (Blackman & Vigna,
// 2018) seeded through SplitMix64 (Steele, Lea & Flood, 2014), and SplitMix64's mix itself (also the
// stream's key hash). The draws every use shares (below, uniform, normal) and the seeders of each
// use are cx/random/rng.hpp.
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
  // The 64-bit seed expanded into xoshiro's 256 bits of state by four SplitMix64 steps.
  explicit Xoshiro256ss(std::uint64_t seed) {
    for (auto& w : s_) w = splitmix64_next(seed);
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

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// Counter-based: the state is a counter, and each draw is SplitMix64 of the next counter value. A
// generator is a pure function of the counters it is built from, so a draw never depends on a
// generator's history: the thread count does not matter, and a resumed run needs only its counters.
class SplitMix64Counter {
 public:
  SplitMix64Counter(std::uint64_t seed, std::uint64_t purpose, std::uint64_t a = 0, std::uint64_t b = 0)
      : state_(step(step(step(step(seed ^ 0x6378636C61737366ull) ^ purpose) ^ a) ^ b)) {}
  // Every counter is mixed before the next goes in, the last one too: XORed into the state unmixed, b
  // and b + 1 started one draw apart on the same sequence (neighbouring records shared augmentations).
  std::uint64_t next() { return step(state_++); }

 private:
  static std::uint64_t step(std::uint64_t x) { return splitmix64_next(x); }
  std::uint64_t state_;
};

}  // namespace cx::random
