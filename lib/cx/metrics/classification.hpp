#pragma once
// Binary classification metrics, per label, as scikit-learn computes them, and their bootstrap.
//  - AUROC: roc_auc_score. Ties count one half (the trapezoid over distinct thresholds); computed
//    exactly in integers from the sorted scores, so it equals sklearn up to sklearn's rounding.
//  - Average precision: average_precision_score, sum over distinct thresholds (descending) of
//    (R_k - R_{k-1}) P_k, no interpolation.
//  - ROC curve: roc_curve with drop_intermediate=False (every distinct threshold), first point
//    (0, 0) at threshold +inf (newer sklearn; 1.2 writes max+1 there).
//  - At a threshold t, a record is predicted positive when score >= t (roc_curve's convention).
//    Youden's J picks the threshold of the first ROC point (from the highest threshold down) with
//    the largest TPR - FPR, chosen once on all records and kept fixed across the resamples.
//  - accuracy = (TP+TN)/n, sensitivity = TP/P, specificity = TN/N, F1 = 2TP/(2TP+FP+FN); each is
//    undefined (NaN) when its denominator is zero. AUROC is undefined with one class, AP with no
//    positive.
// Bootstrap: the scores are sorted once per label and model; a resample is a vector of counts and
// each metric is one pass over the sorted order with tie groups (no sort per resample).
#include <cstdint>
#include <string>
#include <vector>

#include "cx/metrics/bootstrap.hpp"

namespace cx::metrics {

double auroc(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth);
double average_precision(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth);

struct RocCurve {
  std::vector<double> fpr, tpr, thresholds;  // thresholds descending; thresholds[0] = +inf
};
RocCurve roc_curve(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth);

struct Confusion {
  std::int64_t tp = 0, fp = 0, tn = 0, fn = 0;
  double accuracy() const;
  double sensitivity() const;
  double specificity() const;
  double f1() const;
};
Confusion confusion_at(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth, double threshold);
double youden_threshold(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth);

// One label's records: those with a usable truth (blank and excluded uncertain cells left out).
struct LabelScores {
  std::string name;
  std::vector<std::uint32_t> records;         // index of the record among all records (0..n-1)
  std::vector<std::uint8_t> truth;            // 0 or 1
  std::vector<std::vector<double>> scores;    // [model][i]: one model, or two for --paired
};

struct ClassificationRequest {
  bool auroc = true;
  bool auprc = false;
  bool at_threshold = false;  // accuracy, sensitivity, specificity, f1
  bool youden = false;        // threshold from Youden's J instead of `threshold`
  double threshold = 0.5;
  int curve_points = 0;       // > 0: ROC TPR on this many FPR grid points per resample (plot band)
};

// ROC band for plots: tpr[model][label][resample * points + k] at fpr = k / (points - 1),
// linear interpolation between ROC points; point estimate curves in `curve`.
struct RocBands {
  int points = 0;
  std::vector<std::vector<std::vector<float>>> resample_tpr;
  std::vector<std::vector<RocCurve>> curve;  // [model][label]
};

// Bootstraps the requested metrics over `n_records` records. Metric names in the result:
// auroc, auprc, accuracy, sensitivity, specificity, f1.
Replicates bootstrap_classification(const std::vector<LabelScores>& labels, std::size_t n_records,
                                    const ClassificationRequest& request, const BootstrapOptions& options,
                                    RocBands* bands = nullptr);

}  // namespace cx::metrics
