#pragma once
// Segmentation metrics per image and class, on binary masks (row-major, width x height, nonzero = in).
//  - Dice = 2|A∩B| / (|A| + |B|), IoU = |A∩B| / |A∪B|. When truth and prediction are both empty the
//    class is absent and correctly so: undefined (NaN), left out of the means rather than counted as
//    1. When exactly one is empty, both are 0.
//  - HD95 in pixels, as medpy.metric.binary.hd95 (connectivity 1): the boundary of a mask is its
//    pixels with a 4-neighbour outside the mask or outside the image; distances are Euclidean from
//    each boundary pixel of one mask to the nearest boundary pixel of the other, in both
//    directions, and HD95 is the 95th percentile (numpy linear) of the two lists together.
//    Undefined (NaN) when either mask is empty (medpy raises there).
// Over a data set: per class, the mean over images where the value is defined; "mean" row: the mean
// over classes (background, class 0, is never scored). The bootstrap resamples images.
#include <cstdint>
#include <string>
#include <vector>

#include "cx/metrics/bootstrap.hpp"

namespace cx::metrics {

double dice(const std::uint8_t* truth, const std::uint8_t* pred, std::size_t pixels);
double iou(const std::uint8_t* truth, const std::uint8_t* pred, std::size_t pixels);
double hd95(const std::uint8_t* truth, const std::uint8_t* pred, int width, int height);

// Boundary (as above) of a binary mask: 1 on boundary pixels.
std::vector<std::uint8_t> mask_boundary(const std::uint8_t* mask, int width, int height);
// Exact squared Euclidean distance from every pixel to the nearest nonzero pixel of `features`
// (Felzenszwalb & Huttenlocher); +inf everywhere when there is none.
std::vector<double> squared_distance_transform(const std::uint8_t* features, int width, int height);

// Scores of one label-map pair: [metric][class - 1] for classes 1..n_classes, metrics in the order
// asked (names "dice", "iou", "hd95"). Values outside 0..n_classes in either map are an error.
std::vector<double> score_label_maps(const std::uint16_t* truth, const std::uint16_t* pred, int width, int height,
                                     int n_classes, const std::vector<std::string>& metrics, const std::string& where);

// Bootstrap of per-record values: values[model][(record * K + metric) * L + label] (NaN: undefined
// for that record); each resample's value is the count-weighted mean over records where defined.
Replicates bootstrap_record_means(const std::vector<std::string>& metrics, const std::vector<std::string>& labels,
                                  const std::string& macro_name, const std::vector<std::vector<double>>& values,
                                  std::size_t n_records, const BootstrapOptions& options);

}  // namespace cx::metrics
