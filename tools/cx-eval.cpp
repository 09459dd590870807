// cx-eval: metrics with bootstrap medians and percentile confidence intervals, from the terminal.
//   cx-eval auroc preds.tsv                       one table: truth in Edema, score in Edema.score
//   cx-eval auroc --truth truth.tsv --pred p.tsv  two tables joined on --key
//   cx-eval auroc --truth t.tsv --paired a.tsv b.tsv   model A minus model B, CI and p-value
//   cx-eval dice truth.cx pred.cx                 masks from streams (or folders of PNG label maps)
//   cx-eval bleu truth.tsv generated.tsv          reports: key<TAB>text
// See man cx-eval for every metric's definition; the work is in lib/cx/eval.
#include <unistd.h>

#include "cx/cli/bad_inputs.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/options.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/eval/evaluate.hpp"
#include "cx/eval/summary.hpp"

namespace {

// The request's fields are bound to the options directly, so --help prints its real defaults.
struct Options {
  cx::eval::Request req;
  std::string labels, classes;  // comma lists
  bool json = false;
};

void add_options(CLI::App& app, Options& o) {
  cx::eval::Request& r = o.req;
  app.add_option("metric", r.metric, "The metric (see above)")->required()->type_name("METRIC");
  app.add_option("inputs", r.inputs.positional,
                 "One table with NAME and NAME.score columns; or TRUTH PRED (tables, mask streams or folders, "
                 "report TSVs); '-' is standard input")
      ->type_name("INPUT");
  app.add_option("--truth", r.inputs.truth, "Truth table, masks or reference reports")->type_name("FILE");
  app.add_option("--pred", r.inputs.pred, "Prediction table, masks or generated reports")->type_name("FILE");
  app.add_option("--paired", r.inputs.paired, "Two models' predictions on the same records: bootstrap of A - B, with a p-value")
      ->expected(2)
      ->allow_extra_args(false)
      ->type_name("A B");
  app.add_option("--key", r.key, "Key column that joins the tables")->capture_default_str()->type_name("NAME");
  app.add_option("--labels", o.labels, "Only these labels (comma-separated)")->type_name("L1,L2");
  app.add_option("--uncertain", r.uncertain, "Uncertain (-1) truth: ignore (left out per label), ones or zeros")
      ->check(CLI::IsMember({"ignore", "ones", "zeros"}))
      ->capture_default_str();
  app.add_option("--threshold", r.threshold, "Threshold for accuracy/sensitivity/specificity/f1: a number or 'youden'")
      ->capture_default_str()
      ->type_name("T|youden");
  app.add_option("--bootstrap", r.bootstrap.resamples, "Bootstrap resamples (0: point estimates only)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--ci", r.bootstrap.ci, "Confidence level of the percentile interval, in percent")
      ->check(CLI::Range(1.0, 99.99))
      ->capture_default_str()
      ->type_name("PCT");
  app.add_flag("--stratified", r.bootstrap.stratified, "Resample each label's positives and negatives apart (classification)");
  app.add_flag("--json", o.json, "Write JSON instead of a table");
  app.add_option("--plot", r.plots, "Write ROC curves with the bootstrap band (.svg; .png needs rsvg-convert); repeatable")
      ->allow_extra_args(false)
      ->type_name("FILE");
  app.add_option("--classes", o.classes, "Mask class names for values 1, 2, ... (comma-separated)")->type_name("A,B");
  app.add_option("--binarize", r.binarize, "Masks: values >= T are the one foreground class")
      ->check(CLI::Range(1, 65535))
      ->type_name("T");
  app.add_option("--group", r.groups, "Masks: score values V,V,... as one class NAME (e.g. lung=1,2); repeatable")
      ->allow_extra_args(false)
      ->type_name("NAME=V,V");
  app.add_option("--text-column", r.text_column, "Reports: the text column (default: the non-key column, or 'text')")
      ->type_name("NAME");
  app.add_option("--labels-out", r.labels_out, "chexpert-f1: also write the labeller's per-report labels as TSV")
      ->type_name("FILE");
}

}  // namespace

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-eval",
                     "Metrics with bootstrap medians and percentile confidence intervals.\n"
                     "  cx-eval METRIC [options] [INPUT...]\n"
                     "METRIC: auroc auprc accuracy sensitivity specificity f1 threshold cls | dice iou hd95 seg |\n"
                     "        bleu rouge chexpert-f1 report   (man cx-eval defines each)");
  Options o;
  add_options(tool.app(), o);
  tool.add_shared_options(cx::cli::Tool::kOutput | cx::cli::Tool::kThreads | cx::cli::Tool::kSeed | cx::cli::Tool::kSkipBad);

  return tool.run(argc, argv, [&]() -> int {
    cx::eval::Request& req = o.req;
    req.spec = cx::eval::parse_metric(req.metric);
    // No input given and stdin not a terminal: "-" (the one-table form, or the predictions).
    if (req.inputs.positional.empty() && req.inputs.pred.empty() && req.inputs.paired.empty())
      req.inputs.positional = tool.inputs_or_stdin({});
    req.labels = cx::cli::parse_list(o.labels, "--labels");
    req.classes = cx::cli::parse_list(o.classes, "--classes");
    req.bootstrap.seed = tool.common().seed;
    req.bootstrap.threads = tool.threads();

    cx::cli::BadInputs bad(tool.common().skip_bad);
    const cx::eval::Evaluation ev = cx::eval::evaluate(req, bad);

    std::string text;
    if (o.json)
      text = cx::eval::render_json(ev.report, {cx::cli::version_string(), req.metric, req.bootstrap, ev.models, ev.labeller});
    else if (tool.common().output == "-" && ::isatty(STDOUT_FILENO))
      text = cx::eval::render_terminal(ev.report, req.bootstrap.ci);
    else
      text = cx::eval::render_tsv(ev.report);
    cx::cli::OutputFile out(tool.common().output);
    out.write(text);
    out.commit();
    if (bad.count() > 0)
      cx::log::warn(std::to_string(bad.count()) + " input" + (bad.count() > 1 ? "s" : "") + " skipped");
    return bad.exit_code();
  });
}
