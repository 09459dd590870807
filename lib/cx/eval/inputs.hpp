#pragma once
// cx-eval's inputs: which input is the truth and which the predictions, and the joins that turn
// tables into records to score.
//  - Roles (resolve_roles, the one place that decides): TRUTH PRED as positional inputs, or
//    --truth T --pred P, or --paired A B with the truth from --truth or the one positional input.
//    Scores alone may keep the truth in the prediction table (columns NAME and NAME.score), so one
//    positional table is enough there. "-" (standard input) may be one input only.
//  - Joins on the key column: the records are the truth's rows, in truth order, that have a row in
//    every prediction table. A key on one side only is a bad input: without --skip-bad the run fails
//    naming the keys, with it each key is named and skipped (cx::cli::BadInputs). A key twice in a
//    table is an error, except a repeated reference key of reports: several references.
//  - Truth cells (data::parse_label_cell): 1, 0, -1 uncertain (left out, or coded by the policy), blank
//    missing (left out). A score that is not a finite number is a bad input.
#include <cstddef>
#include <string>
#include <vector>

#include "cx/cli/bad_inputs.hpp"
#include "cx/data/labels.hpp"
#include "cx/data/table.hpp"
#include "cx/metrics/classification.hpp"
#include "cx/metrics/labeller.hpp"

namespace cx::eval {

// What the command line names, before roles are decided.
struct InputArgs {
  std::vector<std::string> positional;
  std::string truth, pred;
  std::vector<std::string> paired;
};

enum class InputKind { scores, masks, reports };

struct Roles {
  std::string truth;                     // "" only for scores: the truth columns are in predictions[0]
  std::vector<std::string> predictions;  // one, or A and B with --paired
  std::vector<std::string> model_names() const;  // predictions as messages name them ("-": standard input)
};

// Throws cx::UsageError when the inputs do not fit one of the forms above.
Roles resolve_roles(const InputArgs& args, InputKind kind);

// Keys of `present_in` with no row in `missing_in`: none is fine; otherwise a bad input, named
// together ("no row for 2 keys of t.tsv: k03, k07") or, when skipping, one by one.
void report_unmatched_keys(const std::vector<std::string>& keys, const std::string& missing_in,
                           const std::string& present_in, cli::BadInputs& bad);

// ---- scores (classification)

struct ScoreOptions {
  std::string key = "key";
  std::vector<std::string> labels;  // empty: every truth column that has a score column everywhere
  data::UncertainPolicy uncertain = data::UncertainPolicy::ignore;
};

struct ScoreInputs {
  std::vector<metrics::LabelScores> labels;  // scores[model] per label, model order as the predictions
  std::size_t n_records = 0;                 // joined records (a label may use fewer)
};

// Label L: truth column L, scores in L.score, or in a column L of a prediction table apart from the
// truth. truth == nullptr: the truth columns are in predictions[0] (only NAME.score holds scores).
ScoreInputs join_scores(const data::Table* truth, const std::vector<data::Table>& predictions,
                        const ScoreOptions& options, cli::BadInputs& bad);
// Reads the tables the roles name, then join_scores.
ScoreInputs load_scores(const Roles& roles, const ScoreOptions& options, cli::BadInputs& bad);

// ---- reports (text)

struct ReportPairs {
  std::vector<std::string> keys;                     // in reference order
  std::vector<std::vector<std::string>> references;  // [record][reference]
  std::vector<std::vector<std::string>> generated;   // [model][record]
};

// The text column: `wanted`, else the non-key one of two columns, else "text" or "report".
int text_column_of(const data::Table& table, const std::string& key, const std::string& wanted);
ReportPairs join_reports(const data::Table& references, const std::vector<data::Table>& generated,
                         const std::string& key, const std::string& text_column, cli::BadInputs& bad);
// Reads the TSVs the roles name, then join_reports.
ReportPairs load_reports(const Roles& roles, const std::string& key, const std::string& text_column,
                         cli::BadInputs& bad);

}  // namespace cx::eval
