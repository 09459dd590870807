#include "cx/image/window.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::image {
namespace {

bool width_ok(VoiFunction f, double width) {
  return std::isfinite(width) && (f == VoiFunction::linear ? width >= 1.0 : width > 0.0);
}

double lut_lookup(const dicom::Lut& lut, double x) {
  const double idx = std::floor(x + 0.5) - lut.first_mapped;
  const double last = static_cast<double>(lut.data.size()) - 1;
  return lut.data[static_cast<std::size_t>(std::clamp(idx, 0.0, last))];
}

// Bits of a LUT's output range: the descriptor's, unless the data exceeds it (some writers
// state 16 bits for 12-bit data; others the reverse, which this corrects).
int lut_bits(const dicom::Lut& lut) {
  const std::uint16_t top = lut.data.empty() ? 0 : *std::max_element(lut.data.begin(), lut.data.end());
  int bits = lut.bits;
  while (bits < 16 && top > (1u << bits) - 1) ++bits;
  return bits;
}

}  // namespace

std::optional<VoiFunction> parse_voi_function(const std::string& name) {
  if (name.empty() || name == "LINEAR") return VoiFunction::linear;
  if (name == "LINEAR_EXACT") return VoiFunction::linear_exact;
  if (name == "SIGMOID") return VoiFunction::sigmoid;
  return std::nullopt;
}

const char* voi_function_name(VoiFunction f) {
  switch (f) {
    case VoiFunction::linear: return "LINEAR";
    case VoiFunction::linear_exact: return "LINEAR_EXACT";
    case VoiFunction::sigmoid: return "SIGMOID";
  }
  return "LINEAR";
}

double voi_transform(VoiFunction f, double x, double c, double w, double y_max) {
  switch (f) {
    case VoiFunction::linear: {
      // C.11.2.1.2.1: the -0.5 and w-1 place the window on pixel centres of integer inputs.
      if (x <= c - 0.5 - (w - 1) / 2) return 0.0;
      if (x > c - 0.5 + (w - 1) / 2) return y_max;
      return ((x - (c - 0.5)) / (w - 1) + 0.5) * y_max;
    }
    case VoiFunction::linear_exact: {
      if (x <= c - w / 2) return 0.0;
      if (x > c + w / 2) return y_max;
      return ((x - c) / w + 0.5) * y_max;
    }
    case VoiFunction::sigmoid:
      return y_max / (1.0 + std::exp(-4.0 * (x - c) / w));
  }
  return 0.0;
}

Rendered render_dicom(const dicom::DicomImage& im, const WindowOptions& options) {
  if (options.bits != 8 && options.bits != 16) {
    throw UsageError("output depth must be 8 or 16 bits, not " + std::to_string(options.bits));
  }
  const int out_bits = options.bits;
  const double y_max = out_bits == 8 ? 255.0 : 65535.0;
  const std::size_t n = im.pixel_count();
  if (im.stored.size() != n * im.samples_per_pixel) {
    throw Error("render_dicom: stored values do not match " + std::to_string(im.width) + "x" + std::to_string(im.height));
  }
  Rendered r;
  r.applied["bits"] = out_bits;
  auto put = [&](std::size_t i, double y) {
    const double q = std::clamp(std::floor(y + 0.5), 0.0, y_max);
    if (out_bits == 8) {
      r.image.u8()[i] = static_cast<std::uint8_t>(q);
    } else {
      r.image.u16()[i] = static_cast<std::uint16_t>(q);
    }
  };

  if (im.samples_per_pixel == 3) {
    r.image = Image::make(im.width, im.height, 3, out_bits);
    const double scale = y_max / (std::ldexp(1.0, im.bits_stored) - 1);
    for (std::size_t i = 0; i < im.stored.size(); ++i) put(i, im.stored[i] * scale);
    r.applied["color"] = true;
    r.applied["inverted"] = false;
    return r;
  }

  // Modality LUT stage.
  std::function<double(std::int32_t)> modality;
  if (im.modality_lut && !im.modality_lut->data.empty()) {
    const dicom::Lut& lut = *im.modality_lut;
    modality = [&lut](std::int32_t x) { return lut_lookup(lut, x); };
    r.applied["modality"] = {{"source", "modality-lut"}, {"entries", lut.data.size()}, {"first_mapped", lut.first_mapped}};
  } else {
    const double s = im.rescale_slope, b = im.rescale_intercept;
    modality = [s, b](std::int32_t x) { return s * x + b; };
    r.applied["modality"] = {{"source", "rescale"}, {"slope", s}, {"intercept", b}};
  }

  std::int32_t smin = 0, smax = 0;
  if (!im.stored.empty()) {
    const auto [lo, hi] = std::minmax_element(im.stored.begin(), im.stored.end());
    smin = *lo;
    smax = *hi;
  }

  // VOI stage: choose the source. Oddities go into applied["notes"] rather than the log: this
  // function does not know the file's name, its caller does.
  std::vector<std::string> notes;
  std::function<double(double)> voi;
  nlohmann::json voi_json;
  auto use_window = [&](double c, double w, VoiFunction f, const char* source) {
    voi = [f, c, w, y_max](double x) { return voi_transform(f, x, c, w, y_max); };
    voi_json = {{"source", source}, {"center", c}, {"width", w}, {"function", voi_function_name(f)}};
  };
  auto try_header_window = [&]() {
    if (im.windows.empty()) return false;
    auto f = parse_voi_function(im.voi_lut_function);
    if (!f) {
      notes.push_back("unknown VOI LUT Function '" + im.voi_lut_function + "', used LINEAR");
      f = VoiFunction::linear;
    }
    const auto [c, w] = im.windows.front();
    if (!std::isfinite(c) || !width_ok(*f, w)) {
      notes.push_back("header window " + std::to_string(c) + "/" + std::to_string(w) + " has an unusable width, skipped");
      return false;
    }
    use_window(c, w, *f, "header");
    if (!im.window_explanations.empty() && !im.window_explanations.front().empty()) {
      voi_json["explanation"] = im.window_explanations.front();
    }
    return true;
  };
  auto try_voi_lut = [&]() {
    if (!im.voi_lut || im.voi_lut->data.empty()) return false;
    const dicom::Lut& lut = *im.voi_lut;
    const int bits = lut_bits(lut);
    const double scale = y_max / (std::ldexp(1.0, bits) - 1);
    voi = [&lut, scale](double x) { return lut_lookup(lut, x) * scale; };
    voi_json = {{"source", "voi-lut"}, {"entries", lut.data.size()}, {"first_mapped", lut.first_mapped}, {"bits", bits}};
    if (!lut.explanation.empty()) voi_json["explanation"] = lut.explanation;
    return true;
  };

  if (options.window) {
    const auto [c, w] = *options.window;
    if (!std::isfinite(c) || !width_ok(options.override_function, w)) {
      throw UsageError("window width must be " +
                       std::string(options.override_function == VoiFunction::linear ? ">= 1" : "> 0") +
                       ", not " + std::to_string(w));
    }
    use_window(c, w, options.override_function, "override");
  } else if (options.prefer_voi_lut ? (try_voi_lut() || try_header_window())
                                    : (try_header_window() || try_voi_lut())) {
    // chosen above
  } else {
    double lo = modality(smin), hi = modality(smax);
    if (!im.modality_lut) {
      // Rescale is monotone; with a negative slope the ends swap.
      if (lo > hi) std::swap(lo, hi);
    } else {
      lo = hi = modality(smin);
      for (std::int32_t v = smin; v <= smax; ++v) {
        const double m = modality(v);
        lo = std::min(lo, m);
        hi = std::max(hi, m);
      }
    }
    use_window((lo + hi + 1) / 2, hi - lo + 1, VoiFunction::linear, "minmax");
    voi_json["min"] = lo;
    voi_json["max"] = hi;
  }
  r.applied["voi"] = voi_json;
  if (!notes.empty()) r.applied["notes"] = notes;

  const bool invert = im.photometric == "MONOCHROME1";
  r.applied["inverted"] = invert;
  r.applied["photometric"] = im.photometric;
  if (!im.presentation_lut_shape.empty()) r.applied["presentation_lut_shape"] = im.presentation_lut_shape;

  // Every stored value goes through the same chain; a table over the stored range makes
  // 16-bit images cost one lookup per pixel.
  auto chain = [&](std::int32_t x) {
    const double y = std::clamp(std::floor(voi(modality(x)) + 0.5), 0.0, y_max);
    return invert ? y_max - y : y;
  };
  r.image = Image::make(im.width, im.height, 1, out_bits);
  const std::int64_t span = static_cast<std::int64_t>(smax) - smin + 1;
  if (span <= (std::int64_t{1} << 20)) {
    std::vector<double> table(static_cast<std::size_t>(span));
    for (std::int64_t k = 0; k < span; ++k) table[k] = chain(static_cast<std::int32_t>(smin + k));
    for (std::size_t i = 0; i < n; ++i) put(i, table[static_cast<std::size_t>(im.stored[i] - smin)]);
  } else {
    for (std::size_t i = 0; i < n; ++i) put(i, chain(im.stored[i]));
  }
  return r;
}

}  // namespace cx::image
