#pragma once
// Pictures for a person to check a segmentation: the radiograph in gray with the outline of every
// class of a label map drawn in that class's colour.
#include <array>
#include <cstdint>

#include "cx/image/image.hpp"

namespace cx::image {

// The colour of class c >= 1 (a palette of 10 distinct colours after Trubetskoy's, repeating):
// 1 red, 2 green, 3 blue, 4 yellow, 5 orange, 6 purple, 7 cyan, 8 magenta, 9 lime, 10 pink.
std::array<std::uint8_t, 3> class_colour(int c);

// The image (8/16-bit gray or RGB; 16 bits scaled to 8) as 8-bit RGB, with the boundary of each
// class c >= 1 of `labels` drawn `thickness` pixels wide (a boundary pixel belongs to c and has a
// 4-neighbour of another value or the image's edge, as cx-eval's HD95 defines it). `labels` is an
// 8-bit label map; when its size differs from the image's it is sampled with nearest neighbour.
Image draw_contours(const Image& image, const Image& labels, int thickness = 2);

}  // namespace cx::image
