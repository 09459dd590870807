#pragma once
// JPEG 2000 decoding of one DICOM frame with OpenJPEG (DCMTK has no free J2K codec).
// Internal to cx/dicom: read_dicom uses it for transfer syntaxes 1.2.840.10008.1.2.4.90/.91.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cx::dicom {

struct J2kFrame {
  int width = 0;
  int height = 0;
  int components = 0;
  int precision = 0;       // bits per sample of component 0
  bool is_signed = false;  // as the codestream says
  std::vector<std::int32_t> samples;  // row-major, components interleaved
};

// Decodes a raw J2K codestream (FF 4F FF 51) or a JP2 file (signature box); the format is
// told by the magic bytes. Throws cx::Error naming `name` when the data is not a valid or
// complete codestream (strict mode: a truncated codestream is an error, not a partial image).
// The size the codestream declares is checked against the image limit (cx/image/limits.hpp) and,
// when `expected` has a nonzero width, against it (the DICOM header's), before decoding.
struct J2kExpected {
  int width = 0, height = 0, components = 0;
};
J2kFrame decode_j2k(const std::uint8_t* data, std::size_t size, const std::string& name,
                    const J2kExpected& expected = {});

// True when `data` starts with a J2K codestream SOC+SIZ marker or a JP2 signature box.
bool looks_like_j2k(const std::uint8_t* data, std::size_t size);

}  // namespace cx::dicom
