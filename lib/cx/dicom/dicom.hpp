#pragma once
// DICOM image decoding: the stored pixel values of the first frame plus the header facts that the
// display pipeline (cx/image/window.hpp) and the record metadata need. No DCMTK types leak out.
//
// Contract:
// - Reads Part 10 files (128-byte preamble + "DICM" + meta header), meta headers without the
//   preamble, and bare datasets (no meta: the transfer syntax is guessed, as DCMTK does).
// - Transfer syntaxes: implicit/explicit VR little endian, explicit big endian, deflated, RLE,
//   JPEG baseline/extended/lossless (DCMTK dcmjpeg), JPEG-LS (dcmjpls), JPEG 2000 (.90/.91,
//   OpenJPEG). Any other -> cx::Error "<name>: unsupported transfer syntax <uid> (<name>)".
// - Bits allocated 8 or 16; bits stored 1..16 at HighBit = BitsStored-1 (other bits are masked
//   away, e.g. overlay bits); signed samples are sign-extended from BitsStored.
// - Multi-frame: only the first frame is returned (`frames` says how many the file holds). JPEG
//   2000 decodes only that frame's fragments; DCMTK codecs decompress the whole Pixel Data first.
// - Color (RGB/YBR): samples_per_pixel == 3, returned interleaved RGB (JPEG/J2K YBR converted).
// - A corrupt or truncated file -> cx::Error (cx::TruncatedError when the data ends early) whose
//   one-line message starts with the file name.
// Thread safety: read_dicom may run on many threads at once; the DCMTK codec registration it
// needs happens once per process (DCMTK's codec list is global by design).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace cx::dicom {

// A lookup table from a Modality or VOI LUT Sequence item (PS3.3 C.11.1 / C.11.2).
struct Lut {
  int first_mapped = 0;  // input value mapped to data[0]; inputs below/above clamp to the ends
  int bits = 16;         // bits per entry, per LUT Descriptor value 3: entries lie in [0, 2^bits-1]
  std::vector<std::uint16_t> data;
  std::string explanation;  // LUT Explanation (0028,3003), may be empty
};

struct DicomImage {
  int width = 0;   // Columns
  int height = 0;  // Rows
  int samples_per_pixel = 1;
  int frames = 1;  // NumberOfFrames in the file; only frame 1 is decoded
  // Stored values of frame 1, row-major, samples interleaved; sign-extended when is_signed.
  std::vector<std::int32_t> stored;
  int bits_allocated = 0;
  int bits_stored = 0;
  bool is_signed = false;     // PixelRepresentation == 1
  std::string photometric;    // as decoded: "MONOCHROME1", "MONOCHROME2", "RGB", ...

  // Modality LUT: a sequence when present (it wins over slope/intercept), else slope/intercept.
  double rescale_slope = 1.0;
  double rescale_intercept = 0.0;
  std::optional<Lut> modality_lut;
  // VOI: windows (center, width) in header order; the function applies to all of them.
  std::vector<std::pair<double, double>> windows;
  std::vector<std::string> window_explanations;  // may be shorter than windows
  std::string voi_lut_function;                  // "", "LINEAR", "LINEAR_EXACT", "SIGMOID"
  std::optional<Lut> voi_lut;                    // first item of the VOI LUT Sequence
  std::string presentation_lut_shape;            // "", "IDENTITY", "INVERSE" (recorded only)

  std::string transfer_syntax_uid;
  std::string transfer_syntax_name;
  bool has_meta_header = true;  // false for a bare dataset (no "DICM" file meta group)

  // Descriptive metadata ("" or nullopt when absent).
  std::string patient_id, patient_sex, patient_age, view_position, modality, body_part_examined;
  std::string sop_instance_uid, study_instance_uid, series_instance_uid, sop_class_uid;
  // (row spacing, column spacing) in mm: PixelSpacing, else ImagerPixelSpacing.
  std::optional<std::pair<double, double>> pixel_spacing;
  std::string pixel_spacing_source;  // "PixelSpacing" or "ImagerPixelSpacing" when set

  std::size_t pixel_count() const { return static_cast<std::size_t>(width) * height; }
};

// Decodes `path`. Throws cx::Error / cx::TruncatedError naming `path`.
DicomImage read_dicom(const std::string& path);

// Decodes a DICOM file held in memory; `name` is used in error messages.
DicomImage read_dicom_bytes(const std::uint8_t* data, std::size_t size, const std::string& name);

// The header facts as JSON for a record's .json (no pixels): sizes, bits, photometric,
// transfer syntax, modality/VOI attributes, and the descriptive metadata that is present
// (sex, age, view, modality, body part, UIDs, pixel spacing; not PatientID).
nlohmann::json dicom_metadata_json(const DicomImage& image);

// True for transfer syntaxes read_dicom decodes (used to say "unsupported" before reading pixels).
bool transfer_syntax_supported(const std::string& uid);

}  // namespace cx::dicom
