#pragma once
// Run-length encoding of binary masks as CheXmask (and Kaggle) write it: "start length start
// length ...", whitespace-separated, starts 1-based over the row-major (C order) flattened
// H x W mask. An empty string is an empty mask. cx-segment writes masks back in this form, as a
// CheXmask-style CSV that cx-ingest --dataset chexmask reads again.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cx/image/image.hpp"

namespace cx::data {

// The largest mask the decoders make: 2^26 pixels (8192 x 8192, 64 MiB at 8 bits), four times the
// largest radiograph (CheXmask's are at most 4k x 4k). The size comes from a label file's Height
// and Width cells, which no data backs: a larger one is refused before anything is allocated.
inline constexpr std::int64_t kMaxMaskPixels = std::int64_t{1} << 26;

// Sets labels[i] = value for every pixel i the runs cover (labels holds height*width bytes).
// Throws cx::Error naming `where` on a non-number, an odd count, start < 1, a run past H*W, or a
// size that is not positive or above kMaxMaskPixels.
void rle_paint(std::string_view rle, int height, int width, std::uint8_t value, std::uint8_t* labels,
               const std::string& where);
// A 0/1 mask of height*width bytes.
std::vector<std::uint8_t> rle_decode(std::string_view rle, int height, int width, const std::string& where);
// Runs of the nonzero pixels, in increasing order, as CheXmask writes them.
std::string rle_encode(const std::uint8_t* mask, int height, int width);
// Runs of the pixels of an 8-bit label map equal to `value` (rle_encode of labels == value).
std::string rle_encode_value(const std::uint8_t* labels, int height, int width, std::uint8_t value);

// The CSV of label maps (cx-segment predict --rle): a "key" column, one column per class 1..K-1
// (classes[0] is the background and gets none) named as CheXmask names its structures ("left lung"
// -> "Left Lung", "right lung" -> "Right Lung", "heart" -> "Heart"; other names as they are), each
// holding the RLE of that class, then Height and Width. Cells are quoted as RFC 4180 asks.
std::string chexmask_column(const std::string& class_name);
std::string rle_csv_header(const std::vector<std::string>& classes);  // "key,Left Lung,...,Height,Width\n"
// One row for an 8-bit label map of `classes` values (background included).
std::string rle_csv_row(const std::string& key, const Image& label_map, int classes);

// CheXmask's three structures as one 8-bit label map: 0 background, 1 left lung, 2 right lung,
// 3 heart. The heart is painted last: where it overlaps a lung (it does, in CheXmask), it wins.
enum ChexmaskLabel : std::uint8_t { kBackground = 0, kLeftLung = 1, kRightLung = 2, kHeart = 3 };
Image chexmask_label_map(std::string_view left_lung, std::string_view right_lung, std::string_view heart,
                         int height, int width, const std::string& where);

}  // namespace cx::data
