#pragma once
// Counter-based randomness for training: every random choice is a pure function of (seed, purpose,
// epoch, index), never of a generator's history. Shuffles and augmentations therefore do not depend
// on the thread count, and a resumed run draws exactly what the uninterrupted run would have drawn
// (the checkpoint needs only the step counter). SplitMix64 (Steele, Lea & Flood, 2014) mixes the
// counters; values are the same on every platform (no std:: distributions, whose output is
// implementation-defined).
#include <cstdint>
#include <vector>

#include "cx/random/xoshiro.hpp"

namespace cx::train {

inline std::uint64_t splitmix64(std::uint64_t x) { return random::splitmix64_next(x); }

class CounterRng {
 public:
  CounterRng(std::uint64_t seed, std::uint64_t purpose, std::uint64_t a = 0, std::uint64_t b = 0)
      : state_(splitmix64(splitmix64(splitmix64(seed ^ 0x6378636C61737366ull) ^ purpose) ^ a) ^ b) {}
  std::uint64_t next() { return splitmix64(state_++); }
  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // Uniform integer in [0, n), n > 0, without modulo bias (rejection).
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t limit = ~0ull - (~0ull % n);
    for (;;) {
      std::uint64_t r = next();
      if (r < limit) return r % n;
    }
  }

 private:
  std::uint64_t state_;
};

// A permutation of 0..n-1 (Fisher-Yates) for (seed, purpose, epoch).
inline std::vector<std::int64_t> permutation(std::int64_t n, std::uint64_t seed, std::uint64_t purpose, std::uint64_t epoch) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  CounterRng rng(seed, purpose, epoch);
  for (std::int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

}  // namespace cx::train
