#pragma once
// cx-eval's report: the rows (metrics::Summary, one per metric and label, macro/mean last) with the
// captions that say what the numbers are, and its three renderings:
//  - TSV (stdout not a terminal, -o): a header row, numbers with 6 decimals, NA when undefined, an
//    empty positives cell when not meaningful; paired adds the two estimates and the p-value.
//  - terminal: the captions, then an aligned table (text left, numbers right, two spaces apart, no
//    trailing blanks), 4 decimals, the interval as "[low, high]".
//  - JSON (--json): tool, version, metric, bootstrap settings, models, labeller, rows; undefined
//    numbers are null; indented by 2, one trailing newline.
#include <string>
#include <vector>

#include "cx/metrics/bootstrap.hpp"

namespace cx::eval {

struct Report {
  std::vector<metrics::Summary> rows;
  bool paired = false;
  bool has_threshold = false;      // a threshold column (threshold metrics, not paired)
  std::vector<std::string> notes;  // captions, printed above the terminal table
};

// Summarises `r` (model 0, or A - B when report.paired) and appends its rows, keeping only the
// metrics named in `only` (empty: all). AUROC and AUPRC rows carry no threshold.
void append_rows(Report& report, const metrics::Replicates& r, double ci, const std::vector<std::string>& only = {});

// "95" or "97.5": the confidence level as captions print it.
std::string ci_text(double ci);
// "500 bootstrap resamples (seed 0, stratified), percentile 95% CI".
std::string bootstrap_caption(const metrics::BootstrapOptions& bootstrap);

std::string render_tsv(const Report& report);
std::string render_terminal(const Report& report, double ci);

struct JsonHeader {
  std::string version;  // cli::version_string()
  std::string metric;   // as given
  metrics::BootstrapOptions bootstrap;
  std::vector<std::string> models;
  std::string labeller;  // "" when none was used
};
std::string render_json(const Report& report, const JsonHeader& header);

}  // namespace cx::eval
