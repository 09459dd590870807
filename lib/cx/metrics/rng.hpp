#pragma once
// The bootstrap's own random numbers, so results do not depend on the standard library's
// implementation: SplitMix64 derives one independent seed per (seed, stream) and xoshiro256** draws.
// Bounded integers use Lemire's multiply-shift with rejection (unbiased).
#include <cstdint>

#include "cx/random/xoshiro.hpp"

namespace cx::metrics {

class Rng : public random::Xoshiro256ss {
 public:
  // One generator per (seed, stream): resample b uses stream b, so any thread count gives the same
  // draws for the same resample.
  Rng(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t st = seed ^ (0xD1B54A32D192ED03ULL * (stream + 1));
    for (auto& w : s_) w = random::splitmix64_next(st);
  }

  // Uniform in [0, n), n > 0.
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

};

}  // namespace cx::metrics
