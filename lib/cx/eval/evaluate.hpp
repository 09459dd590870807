#pragma once
// cx-eval from parsed options to a report: which family a metric belongs to, then per family the
// inputs (inputs.hpp, masks.hpp), the bootstrap, the rows with captions that say what the numbers
// are (summary.hpp), and for --plot the ROC figures (roc_plot.hpp). Usage errors (a metric unknown,
// --plot without AUROC, --labels-out without the labeller, a bad --threshold) are raised before any
// input is read; bad inputs go through `bad` (cx::cli::BadInputs).
#include <string>
#include <vector>

#include "cx/cli/bad_inputs.hpp"
#include "cx/eval/inputs.hpp"
#include "cx/eval/summary.hpp"
#include "cx/metrics/bootstrap.hpp"
#include "cx/metrics/classification.hpp"

namespace cx::eval {

enum class Family { classification, segmentation, text, labeller, reports };

struct MetricSpec {
  Family family = Family::classification;
  metrics::ClassificationRequest cls;
  std::vector<std::string> seg;    // dice, iou, hd95
  bool bleu = false, rouge = false;
  std::vector<std::string> only;   // rows to keep (metric names); empty: all computed
};

// auroc auprc|ap accuracy sensitivity specificity f1 threshold cls | dice iou hd95 seg |
// bleu rouge chexpert-f1 report; anything else throws cx::UsageError listing them.
MetricSpec parse_metric(const std::string& metric);

struct Request {
  std::string metric;  // as given (the JSON names it)
  MetricSpec spec;
  InputArgs inputs;
  std::string key = "key";
  std::vector<std::string> labels;    // --labels
  std::string uncertain = "ignore";   // --uncertain: ignore, ones, zeros
  std::string threshold = "0.5";      // --threshold: a number or "youden"
  metrics::BootstrapOptions bootstrap;
  std::vector<std::string> plots;     // --plot
  std::vector<std::string> classes;   // --classes
  int binarize = -1;
  std::vector<std::string> groups;    // --group
  std::string text_column;
  std::string labels_out;
};

struct Evaluation {
  Report report;
  std::vector<std::string> models;  // the predictions as messages name them
  std::string labeller;             // the report labeller's name when it ran
};

Evaluation evaluate(const Request& request, cli::BadInputs& bad);

}  // namespace cx::eval
