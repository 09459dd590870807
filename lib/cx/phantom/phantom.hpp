#pragma once
// Synthetic PA chest radiograph phantoms: the embedded default data of cx (demo, tests, benchmarks).
//
// render_phantom(options, seed, index) is a pure function of its arguments: record i is the same
// whatever the record count or thread count. It draws from random::phantom_rng(seed, index, stream)
// (cx/random/rng.hpp: xoshiro256** and cx's own transforms, never std:: distributions, which differ
// between standard libraries). Anatomy, each finding and the pixel noise draw from separate sub-streams, so turning
// one finding's probability to 0 or 1 changes that finding only and leaves the rest of the picture
// bit-identical (the unit tests rely on this to tie each label to the pixels).
//
// Image: 8-bit gray, size x size, dark air, bright bone. Mask: 8-bit label map (kMaskClasses):
// 0 background, 1 left lung, 2 right lung, 3 heart. "Left" is the PATIENT's left, i.e. the image's
// right half as radiographs are viewed; the heart is drawn over the lungs where they overlap.
// Lung labels cover aerated lung only: pleural fluid and pleural air are not lung.
#include <array>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "cx/image/image.hpp"

namespace cx::phantom {

inline constexpr int kMinSize = 64;
inline constexpr int kMaxSize = 2048;  // a render holds ~10 float planes of size^2 per thread

// The findings, in the order of the stream header's "labels" (followed by "No Finding").
inline constexpr std::array<const char*, 4> kFindings = {"Cardiomegaly", "Effusion", "Nodule", "Pneumothorax"};
inline constexpr const char* kNoFinding = "No Finding";
inline constexpr std::array<const char*, 4> kMaskClasses = {"background", "left lung", "right lung", "heart"};
enum MaskLabel : std::uint8_t { kBackground = 0, kLeftLung = 1, kRightLung = 2, kHeart = 3 };

struct PhantomOptions {
  int size = 512;  // kMinSize..kMaxSize
  double p_cardiomegaly = 0.3;
  double p_effusion = 0.2;
  double p_nodule = 0.15;
  double p_pneumothorax = 0.1;
};

struct Phantom {
  Image image;          // 8-bit gray, size x size
  Image mask;           // 8-bit MaskLabel map, size x size
  nlohmann::json meta;  // the record's .json (see man cx-phantom)
  std::string report;   // FINDINGS/IMPRESSION text
};

// Throws std::invalid_argument for a size outside [kMinSize, kMaxSize] or a probability outside [0, 1].
Phantom render_phantom(const PhantomOptions& options, std::uint64_t seed, std::int64_t index);

// "phantom-000042": the record key of index 42.
std::string phantom_key(std::int64_t index);

// The stream header's "labels" and "fields" entries for phantom streams.
nlohmann::json phantom_labels();
nlohmann::json phantom_fields();

}  // namespace cx::phantom
