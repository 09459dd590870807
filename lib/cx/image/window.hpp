#pragma once
// The display pipeline for a decoded DICOM image, "as a radiologist's viewer shows it":
//   stored value -> Modality LUT (the Modality LUT Sequence when present, else rescale
//   slope/intercept) -> VOI -> MONOCHROME1 inverted (bone bright) -> 8- or 16-bit samples.
// VOI source, first that applies (our precedence; PS3.3 leaves the choice to the viewer):
//   1. options.window (override), 2. the header's first Window Center/Width with its VOI LUT
//   Function (LINEAR, LINEAR_EXACT or SIGMOID; C.11.2.1.2 / C.11.2.1.3), 3. the VOI LUT
//   Sequence's first item, 4. min-max of the modality values (LINEAR with c = (min+max+1)/2,
//   w = max-min+1, which maps min to 0 and max to the top exactly).
//   options.prefer_voi_lut swaps 2 and 3 (pydicom's apply_voi_lut default).
// The continuous VOI output y in [0, 2^bits-1] is rounded half up. Color (RGB) images skip
// modality/VOI and are only rescaled from Bits Stored to the output depth.
// Presentation LUT Shape is recorded, not applied: MONOCHROME1 alone decides the inversion (for
// DX, INVERSE accompanies MONOCHROME1 and means the same inversion, not a second one).
// `applied` records what was done, for the record's .json; "notes" lists header oddities that
// were worked around (an unusable window width, an unknown VOI LUT Function).
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "cx/dicom/dicom.hpp"
#include "cx/image/image.hpp"

namespace cx::image {

enum class VoiFunction { linear, linear_exact, sigmoid };

// "LINEAR", "LINEAR_EXACT", "SIGMOID" (case-sensitive, as DICOM writes them); "" -> linear.
// Anything else -> nullopt (the caller falls back to linear and says so).
std::optional<VoiFunction> parse_voi_function(const std::string& name);
const char* voi_function_name(VoiFunction f);

// The VOI function of PS3.3 C.11.2.1.2 (LINEAR: x <= c-0.5-(w-1)/2 -> 0,
// x > c-0.5+(w-1)/2 -> y_max, else ((x-(c-0.5))/(w-1)+0.5)*y_max), C.11.2.1.3.2 (LINEAR_EXACT:
// ((x-c)/w+0.5)*y_max clamped) and C.11.2.1.3.1 (SIGMOID: y_max/(1+exp(-4(x-c)/w))), with
// y_min = 0. Continuous: no rounding. Requires width >= 1 (LINEAR) or > 0 (others).
double voi_transform(VoiFunction f, double x, double center, double width, double y_max);

struct WindowOptions {
  int bits = 8;                                    // output depth: 8 or 16
  std::optional<std::pair<double, double>> window;  // (center, width) override
  VoiFunction override_function = VoiFunction::linear;  // for the override window
  bool prefer_voi_lut = false;  // use the VOI LUT Sequence before the header window
};

struct Rendered {
  Image image;             // gray (or RGB) at options.bits
  nlohmann::json applied;  // {"modality":{...},"voi":{"source":...},"inverted":b,"bits":n}
};

// Throws cx::UsageError for bits other than 8/16 or an override width that the function
// cannot use; a header window with an unusable width is skipped (the next source is used).
Rendered render_dicom(const dicom::DicomImage& image, const WindowOptions& options = {});

}  // namespace cx::image
