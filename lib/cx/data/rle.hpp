#pragma once
// Run-length encoding of binary masks as CheXmask (and Kaggle) write it: "start length start
// length ...", whitespace-separated, starts 1-based over the row-major (C order) flattened
// H x W mask. An empty string is an empty mask. cx-segment writes masks back in this form.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "cx/image/image.hpp"

namespace cx::data {

// Sets labels[i] = value for every pixel i the runs cover (labels holds height*width bytes).
// Throws cx::Error naming `where` on a non-number, an odd count, start < 1 or a run past H*W.
void rle_paint(std::string_view rle, int height, int width, std::uint8_t value, std::uint8_t* labels,
               const std::string& where);
// A 0/1 mask of height*width bytes.
std::vector<std::uint8_t> rle_decode(std::string_view rle, int height, int width, const std::string& where);
// Runs of the nonzero pixels, in increasing order, as CheXmask writes them.
std::string rle_encode(const std::uint8_t* mask, int height, int width);

// CheXmask's three structures as one 8-bit label map: 0 background, 1 left lung, 2 right lung,
// 3 heart. The heart is painted last: where it overlaps a lung (it does, in CheXmask), it wins.
enum ChexmaskLabel : std::uint8_t { kBackground = 0, kLeftLung = 1, kRightLung = 2, kHeart = 3 };
Image chexmask_label_map(std::string_view left_lung, std::string_view right_lung, std::string_view heart,
                         int height, int width, const std::string& where);

}  // namespace cx::data
