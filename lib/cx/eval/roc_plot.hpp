#pragma once
// ROC curves as a self-contained SVG (fixed layout, numbers with 2 decimals: the same inputs give the
// same bytes): one panel per label, four per row; per model the point-estimate curve over every
// distinct threshold (vertices closer than a quarter pixel merged) and the percentile band of the
// resampled sensitivities on the FPR grid; the panel title holds each model's AUROC and interval.
// A .png plot is that SVG drawn by rsvg-convert (run through cli::run_program); there is no other
// rasteriser, and without it a .png plot is refused before any work.
#include <string>
#include <vector>

#include "cx/metrics/bootstrap.hpp"
#include "cx/metrics/classification.hpp"

namespace cx::eval {

// Per model, the AUROC summary of each label, label-major: rows[label * models + model].
std::vector<metrics::Summary> auroc_per_model(const metrics::Replicates& r, const std::vector<std::string>& labels,
                                              double ci);

std::string roc_svg(const metrics::RocBands& bands, const std::vector<std::string>& labels,
                    const std::vector<metrics::Summary>& auroc_rows, const std::vector<std::string>& model_names,
                    double ci, int resamples);

// Throws cx::Error naming the first .png path when rsvg-convert is not on PATH.
void check_plot_paths(const std::vector<std::string>& paths);
// Writes the SVG atomically, or for a .png path the PNG that rsvg-convert draws from it.
void write_plot(const std::string& path, const std::string& svg);

}  // namespace cx::eval
