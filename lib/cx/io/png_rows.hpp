#pragma once
// PNG's row filters (PNG specification, section 9), for cx/io/png's own reader and writer of the
// common layouts; exposed for the tests. A row is `n` bytes of samples as stored (16-bit big-endian),
// `bpp` bytes per pixel (1..8); `prior` is the reconstructed row above, nullptr for the first row
// (the standard's row of zeros).
#include <cstddef>
#include <cstdint>

namespace cx::io::png_rows {

enum FilterType : std::uint8_t { kNone = 0, kSub = 1, kUp = 2, kAverage = 3, kPaeth = 4 };

// The Paeth predictor as the standard writes it.
inline std::uint8_t paeth_reference(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = p > a ? p - a : a - p, pb = p > b ? p - b : b - p, pc = p > c ? p - c : c - p;
  if (pa <= pb && pa <= pc) return static_cast<std::uint8_t>(a);
  return static_cast<std::uint8_t>(pb <= pc ? b : c);
}

// Reconstructs a row filtered with `type` into `out` (which may not alias `filtered`); false for a
// type above 4.
bool unfilter_row(int type, const std::uint8_t* filtered, const std::uint8_t* prior, std::uint8_t* out, std::size_t n,
                  int bpp);

// Paeth-filters `row` into `out` (without the filter-type byte).
void paeth_filter_row(const std::uint8_t* row, const std::uint8_t* prior, std::uint8_t* out, std::size_t n, int bpp);

}  // namespace cx::io::png_rows
