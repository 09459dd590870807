#pragma once
// The one bound on decoded image size, checked by every decoder (PNG, JPEG, DICOM, JPEG 2000)
// from the header's declared size, before any pixel memory is taken.
//
// The limit counts samples (pixels x samples per pixel): 2^27 = 134,217,728 by default, an
// 11585 x 11585 gray or a 6689 x 6689 RGB image, several times the largest radiograph detector
// (43 x 43 cm at 0.1 mm is 4300 x 4300). A decoder holds at most a few bytes per sample, so one
// image costs at most about 1 GiB however hostile the file. CX_MAX_IMAGE_PIXELS raises (or
// lowers) it; SECURITY.md lists every limit.
#include <cstdint>
#include <string>

namespace cx::image {

constexpr std::uint64_t kDefaultMaxImageSamples = std::uint64_t{1} << 27;

// The limit in force: CX_MAX_IMAGE_PIXELS when set to a positive integer, else the default.
// A malformed value is an error (cx::Error naming the variable), read once per process.
std::uint64_t max_image_samples();

// Throws cx::Error "<where>: <what> of WxH[xC] exceeds the image size limit of N samples
// (CX_MAX_IMAGE_PIXELS)" when width*height*channels is above the limit, or when a side is 0.
void check_image_size(std::uint64_t width, std::uint64_t height, std::uint64_t channels, const std::string& where,
                      const std::string& what);

}  // namespace cx::image
