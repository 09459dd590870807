#pragma once
// The bootstrap engine shared by every cx-eval metric.
//  - A resample draws n records with replacement from the n records; it is held as a vector of
//    counts (how often each record was drawn), so a metric is a weighted sum over records and
//    nothing is copied. Resample b draws from its own generator, random::bootstrap_rng(seed, b):
//    the same seed gives the same numbers whatever the thread count.
//  - Every metric is recomputed on every resample. A value that is undefined on a resample (e.g. AUROC
//    when the resample holds one class of a label) is NaN there: it is left out of that metric's
//    median and interval and counted as skipped.
//  - Point estimate: the metric on all records. Median and interval: percentiles of the defined
//    resample values, linear interpolation as numpy.percentile's default; the interval is
//    [(100-ci)/2, 100-(100-ci)/2].
//  - Macro (mean over labels): per resample, the mean over the labels whose point estimate is
//    defined; a resample where one of those labels is undefined is skipped for the macro.
//  - Paired (two models on the same records and the same resamples): the difference A - B per
//    resample; p-value two-sided, p = min(1, 2 (1 + min(#{d <= 0}, #{d >= 0})) / (1 + B')), with B'
//    the resamples where the difference is defined (the +1 keeps p above zero for a finite B).
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cx::metrics {

struct BootstrapOptions {
  int resamples = 500;
  double ci = 95.0;  // percent
  std::uint64_t seed = 0;
  bool stratified = false;  // classification only: resample positives and negatives of each label apart
  int threads = 1;
};

// numpy.percentile(values, q) with the default linear interpolation; q in [0, 100]. values is sorted
// in place. NaN when values is empty.
double percentile_sorted(const std::vector<double>& sorted, double q);
double percentile(std::vector<double> values, double q);

// Runs fn(b, thread) for every b in [0, resamples) on `threads` threads (thread in [0, threads)).
// fn writes only the outputs of its own b, so the result does not depend on the thread count.
void parallel_resamples(int resamples, int threads, const std::function<void(int b, int thread)>& fn);

// Resample b of n records: counts[i] = times record i was drawn in n draws with replacement.
void draw_counts(std::uint64_t seed, std::uint64_t b, std::size_t n, std::vector<std::uint32_t>& counts);

// Metric values of one bootstrap run for M models, K metrics and L labels, each indexed
// [model][metric][label]; NaN marks an undefined value.
struct Replicates {
  std::vector<std::string> metrics;
  std::vector<std::string> labels;
  int models = 1;
  int resamples = 0;
  std::string macro_name;            // "" for no macro row (e.g. corpus BLEU), else "macro" or "mean"
  std::vector<bool> in_macro;        // per label; empty: every label
  std::vector<std::int64_t> n;       // per label: records used (display only)
  std::vector<std::int64_t> positives;  // per label, -1 when not meaningful
  std::vector<double> thresholds;    // [model][label] for threshold metrics; empty when none
  std::vector<double> point;         // models * metrics * labels
  std::vector<double> values;        // resamples * models * metrics * labels

  void resize(int n_models, int n_resamples);
  std::size_t index(int model, int metric, int label) const {
    return (static_cast<std::size_t>(model) * metrics.size() + metric) * labels.size() + label;
  }
  std::size_t stride() const { return static_cast<std::size_t>(models) * metrics.size() * labels.size(); }
  double& at_point(int model, int metric, int label) { return point[index(model, metric, label)]; }
  double& at(int b, int model, int metric, int label) { return values[b * stride() + index(model, metric, label)]; }
};

// One row of the report: a metric for a label (or the macro), for one model or the paired difference.
struct Summary {
  std::string metric;
  std::string label;
  std::int64_t n = 0;
  std::int64_t positives = -1;
  double threshold;  // NaN when not a threshold metric
  double estimate;   // on all records; NaN when undefined
  double median, low, high;
  int used = 0;      // resamples where the value was defined
  int skipped = 0;   // resamples where it was not (a label with one class, an empty mask ...)
  // Paired only: the two models' point estimates and the p-value of the difference.
  double estimate_a, estimate_b, p_value;
};

// Summaries for model 0 (paired = false) or for the difference model 0 - model 1 (paired = true),
// in metric-major order, the macro row after each metric's labels.
std::vector<Summary> summarise(const Replicates& r, double ci, bool paired);

}  // namespace cx::metrics
