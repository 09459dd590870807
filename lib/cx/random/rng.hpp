#pragma once
// cx's random numbers: one generator API over two engines (cx/random/xoshiro.hpp), the named seeders
// of the three uses, and the transforms they share. Every value is the same on every platform (no
// std:: distributions, whose output is implementation-defined).
//   phantom_rng(seed, record, stream)   xoshiro256**: one independent stream per (seed, record, stream),
//                                       so a phantom never depends on the record count or thread count
//   bootstrap_rng(seed, resample)       xoshiro256**: resample b draws from its own generator, so any
//                                       thread count gives the same resamples
//   training_rng(seed, purpose, a, b)   counter-based (SplitMix64 of counters): shuffles and
//                                       augmentations are pure functions of (seed, purpose, epoch,
//                                       record), so a resumed run needs only the step counter
// Changing a seeder or a transform changes that use's bytes (phantom images, bootstrap intervals,
// trained heads): they are fixed, and tests/unit/random_test.cpp pins their first values.
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "cx/random/xoshiro.hpp"

namespace cx::random {

template <class Engine>
class Generator : public Engine {
 public:
  using Engine::Engine;
  using Engine::next;

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  // Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  // True with probability p.
  bool chance(double p) { return uniform() < p; }

  // Uniform integer in [0, n), n > 0, unbiased: Lemire's multiply-shift with rejection (Lemire,
  // "Fast random integer generation in an interval", 2019). The high word of next() * n is the
  // draw; the rare low words below 2^64 mod n are redrawn, so every value has the same weight.
  std::uint64_t below(std::uint64_t n) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * n;
    std::uint64_t low = static_cast<std::uint64_t>(m);
    if (low < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<unsigned __int128>(next()) * n;
        low = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }

  // Standard normal by Box-Muller, one value per call (so the sequence never depends on a cache).
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]: log stays finite
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double normal(double mean, double sd) { return mean + sd * normal(); }
};

using Rng = Generator<Xoshiro256ss>;
using CounterRng = Generator<SplitMix64Counter>;

// The phantom's generator for one stream of one record: the same (seed, record, stream) always
// gives the same sequence, and changing any of the three gives an unrelated one.
inline Rng phantom_rng(std::uint64_t seed, std::int64_t record, std::uint64_t stream) {
  std::uint64_t h = mix64(seed + 0x9E3779B97F4A7C15ull);
  h = mix64(h ^ mix64(static_cast<std::uint64_t>(record) + 0x632BE59BD9B4E019ull));
  h = mix64(h ^ mix64(stream + 0xD1B54A32D192ED03ull));
  return Rng(h);
}

// The bootstrap's generator for resample `resample` (or any other numbered draw of one run).
inline Rng bootstrap_rng(std::uint64_t seed, std::uint64_t resample) {
  return Rng(seed ^ (0xD1B54A32D192ED03ull * (resample + 1)));
}

// Training's counter-based generator: `purpose` names the use (shuffle, augmentation, dropout ...),
// a and b its counters (epoch, record).
inline CounterRng training_rng(std::uint64_t seed, std::uint64_t purpose, std::uint64_t a = 0, std::uint64_t b = 0) {
  return CounterRng(seed, purpose, a, b);
}

// A permutation of 0 .. n-1 (Fisher-Yates, drawing from the end).
template <class G>
std::vector<std::int64_t> permutation(std::int64_t n, G&& rng) {
  std::vector<std::int64_t> p(static_cast<std::size_t>(n > 0 ? n : 0));
  for (std::int64_t i = 0; i < n; ++i) p[static_cast<std::size_t>(i)] = i;
  for (std::int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(p[static_cast<std::size_t>(i)], p[static_cast<std::size_t>(j)]);
  }
  return p;
}

}  // namespace cx::random
