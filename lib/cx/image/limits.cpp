#include "cx/image/limits.hpp"

#include <cstdlib>
#include <mutex>

#include "cx/cli/error.hpp"

namespace cx::image {

namespace {

std::uint64_t parse_limit() {
  const char* text = std::getenv("CX_MAX_IMAGE_PIXELS");
  if (!text || !*text) return kDefaultMaxImageSamples;
  std::uint64_t v = 0;
  for (const char* p = text; *p; ++p) {
    if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) {
      throw Error(std::string("CX_MAX_IMAGE_PIXELS: '") + text + "' is not a count of pixels (1 to 2^63)");
    }
    v = v * 10 + static_cast<std::uint64_t>(*p - '0');
  }
  if (v == 0 || v > (std::uint64_t{1} << 63)) {
    throw Error(std::string("CX_MAX_IMAGE_PIXELS: '") + text + "' is not a count of pixels (1 to 2^63)");
  }
  return v;
}

}  // namespace

std::uint64_t max_image_samples() {
  static std::once_flag once;
  static std::uint64_t limit = 0;
  static std::string error;
  std::call_once(once, [] {
    try {
      limit = parse_limit();
    } catch (const Error& e) {
      error = e.what();
    }
  });
  if (!error.empty()) throw Error(error);
  return limit;
}

void check_image_size(std::uint64_t width, std::uint64_t height, std::uint64_t channels, const std::string& where,
                      const std::string& what) {
  const std::string dims = std::to_string(width) + "x" + std::to_string(height) +
                           (channels > 1 ? "x" + std::to_string(channels) : std::string());
  if (width == 0 || height == 0 || channels == 0) throw Error(at(where, what + " of " + dims + " is empty"));
  const std::uint64_t limit = max_image_samples();
  // Each factor is below 2^32 in every format read, so the product of two fits; check the third.
  const std::uint64_t pixels = width * height;
  if (width > limit || height > limit || pixels / height != width || pixels > limit || channels > limit / pixels) {
    throw Error(at(where, what + " of " + dims + " exceeds the image size limit of " + std::to_string(limit) +
                              " samples (CX_MAX_IMAGE_PIXELS raises it)"));
  }
}

}  // namespace cx::image
