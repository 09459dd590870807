#pragma once
// PNG and JPEG files recognised by their content (the signature), not their name. DICOM is read by
// cx/dicom; anything else is refused as "not a PNG or JPEG file".
#include <string>

#include "cx/image/image.hpp"

namespace cx::io {

enum class ImageFormat { png, jpeg, unknown };

// Looks at the first bytes only; a prefix of a signature (a file cut very short) counts as that format.
ImageFormat sniff_image_format(const std::string& bytes);

Image decode_image(const std::string& bytes, const std::string& where);
Image read_image_file(const std::string& path);

}  // namespace cx::io
