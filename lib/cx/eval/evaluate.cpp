#include "cx/eval/evaluate.hpp"

#include <algorithm>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/paths.hpp"
#include "cx/data/labels.hpp"
#include "cx/data/table.hpp"
#include "cx/eval/masks.hpp"
#include "cx/eval/roc_plot.hpp"
#include "cx/metrics/labeller.hpp"
#include "cx/metrics/text.hpp"

namespace cx::eval {

MetricSpec parse_metric(const std::string& m) {
  MetricSpec s;
  s.family = Family::classification;
  s.cls.auroc = false;
  if (m == "auroc") {
    s.cls.auroc = true;
  } else if (m == "auprc" || m == "ap") {
    s.cls.auprc = true;
  } else if (m == "accuracy" || m == "sensitivity" || m == "specificity" || m == "f1") {
    s.cls.at_threshold = true;
    s.only = {m};
  } else if (m == "threshold") {
    s.cls.at_threshold = true;
  } else if (m == "cls") {
    s.cls.auroc = s.cls.auprc = s.cls.at_threshold = true;
  } else if (m == "dice" || m == "iou" || m == "hd95") {
    s.family = Family::segmentation;
    s.seg = {m};
  } else if (m == "seg") {
    s.family = Family::segmentation;
    s.seg = {"dice", "iou", "hd95"};
  } else if (m == "bleu") {
    s.family = Family::text;
    s.bleu = true;
  } else if (m == "rouge") {
    s.family = Family::text;
    s.rouge = true;
  } else if (m == "chexpert-f1") {
    s.family = Family::labeller;
  } else if (m == "report") {
    s.family = Family::reports;
    s.bleu = s.rouge = true;
  } else {
    throw UsageError("unknown metric '" + m +
                     "' (auroc, auprc, accuracy, sensitivity, specificity, f1, threshold, cls, dice, iou, hd95, seg, "
                     "bleu, rouge, chexpert-f1, report)");
  }
  return s;
}

namespace {

metrics::Replicates score_text(const ReportPairs& d, const MetricSpec& spec, const metrics::BootstrapOptions& bo) {
  std::vector<std::vector<std::vector<std::string>>> hyp(d.generated.size());
  for (std::size_t m = 0; m < d.generated.size(); ++m)
    for (const auto& g : d.generated[m]) hyp[m].push_back(metrics::coco_tokenize(g));
  std::vector<std::vector<std::vector<std::string>>> refs;
  for (const auto& rs : d.references) {
    refs.emplace_back();
    for (const auto& r : rs) refs.back().push_back(metrics::coco_tokenize(r));
  }
  return metrics::bootstrap_text_metrics(hyp, refs, spec.bleu, spec.rouge, bo);
}

// The labeller's codes as TSV: key, source (truth, pred or A/B), one column per label.
std::string labels_tsv(const ReportPairs& d, const std::vector<std::vector<data::LabelValue>>& truth,
                       const std::vector<std::vector<std::vector<data::LabelValue>>>& pred) {
  std::string out = "key\tsource";
  for (const auto& n : metrics::chexpert_labels()) out += "\t" + n;
  out += "\n";
  auto put = [&](const std::string& key, const std::string& source, const std::vector<data::LabelValue>& codes) {
    out += key + "\t" + source;
    for (auto c : codes) out += std::string("\t") + data::label_cell_text(c);
    out += "\n";
  };
  for (std::size_t i = 0; i < d.keys.size(); ++i) {
    put(d.keys[i], "truth", truth[i]);
    for (std::size_t m = 0; m < pred.size(); ++m) put(d.keys[i], pred.size() > 1 ? (m ? "B" : "A") : "pred", pred[m][i]);
  }
  return out;
}

metrics::Replicates score_labeller(const ReportPairs& d, const Request& req, data::UncertainPolicy uncertain) {
  const auto labeller = metrics::ReportLabeller::load(share_dir() + "/labeller");
  std::vector<std::vector<data::LabelValue>> truth;
  for (const auto& rs : d.references) {
    std::string joined;
    for (const auto& r : rs) joined += r + ".\n";  // several references: their mentions pooled
    truth.push_back(labeller.label(joined));
  }
  std::vector<std::vector<std::vector<data::LabelValue>>> pred(d.generated.size());
  for (std::size_t m = 0; m < d.generated.size(); ++m)
    for (const auto& g : d.generated[m]) pred[m].push_back(labeller.label(g));
  if (!req.labels_out.empty()) cli::write_file_atomic(req.labels_out, labels_tsv(d, truth, pred));
  if (req.labels.empty()) return metrics::bootstrap_label_f1(truth, pred, metrics::chexpert_labels(), uncertain, req.bootstrap);
  // --labels: F1 of a subset (micro and macro over it), e.g. the five CheXpert competition labels
  // that report-generation papers (and CXformer's table) give as "5-label" F1.
  const auto& all = metrics::chexpert_labels();
  std::vector<std::string> names = req.labels;
  if (names.size() == 1 && names[0] == "chexpert5") names = {"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"};
  std::vector<std::size_t> columns;
  for (const auto& n : names) {
    const auto it = std::find(all.begin(), all.end(), n);
    if (it == all.end()) {
      std::string known;
      for (const auto& a : all) known += (known.empty() ? "" : ", ") + a;
      throw UsageError("--labels " + n + ": not a label of the labeller (chexpert5, or any of: " + known + ")");
    }
    columns.push_back(static_cast<std::size_t>(it - all.begin()));
  }
  auto pick = [&](const std::vector<data::LabelValue>& row) {
    std::vector<data::LabelValue> out;
    for (std::size_t c : columns) out.push_back(row[c]);
    return out;
  };
  for (auto& row : truth) row = pick(row);
  for (auto& model : pred)
    for (auto& row : model) row = pick(row);
  return metrics::bootstrap_label_f1(truth, pred, names, uncertain, req.bootstrap);
}

}  // namespace

Evaluation evaluate(const Request& req, cli::BadInputs& bad) {
  const MetricSpec& spec = req.spec;
  const metrics::BootstrapOptions& bo = req.bootstrap;
  const bool youden = req.threshold == "youden";
  double threshold = 0.5;
  if (!youden) {
    try {
      threshold = data::parse_number(req.threshold, "--threshold");
    } catch (const Error& e) {
      throw UsageError(std::string(e.what()) + " (a number or 'youden')");
    }
  }
  const data::UncertainPolicy uncertain = data::parse_uncertain_policy(req.uncertain);
  if (!req.plots.empty() && (spec.family != Family::classification || !spec.cls.auroc))
    throw UsageError("--plot draws ROC curves: use it with auroc or cls");
  check_plot_paths(req.plots);
  if (!req.labels_out.empty() && spec.family != Family::labeller && spec.family != Family::reports)
    throw UsageError("--labels-out goes with chexpert-f1 or report");

  Evaluation ev;
  Report& report = ev.report;
  report.paired = !req.inputs.paired.empty();
  report.notes.push_back(bootstrap_caption(bo));

  if (spec.family == Family::classification) {
    if (bo.stratified && report.paired) log::debug("stratified and paired: the same per-label draws for both models");
    const Roles roles = resolve_roles(req.inputs, InputKind::scores);
    ev.models = roles.model_names();
    const ScoreInputs d = load_scores(roles, {req.key, req.labels, uncertain}, bad);
    metrics::ClassificationRequest cls = spec.cls;
    cls.threshold = threshold;
    cls.youden = youden;
    cls.curve_points = req.plots.empty() ? 0 : 101;
    metrics::RocBands bands;
    const auto r = metrics::bootstrap_classification(d.labels, d.n_records, cls, bo, req.plots.empty() ? nullptr : &bands);
    report.has_threshold = cls.at_threshold && !report.paired;
    if (cls.at_threshold)
      report.notes.push_back(youden ? "threshold: Youden's J on all records, fixed across resamples; positive when score >= threshold"
                                    : "threshold " + req.threshold + ": positive when score >= threshold");
    append_rows(report, r, bo.ci, spec.only);
    if (!req.plots.empty()) {
      std::vector<std::string> labels;
      for (const auto& l : d.labels) labels.push_back(l.name);
      const std::string svg = roc_svg(bands, labels, auroc_per_model(r, labels, bo.ci), ev.models, bo.ci, bo.resamples);
      for (const auto& p : req.plots) write_plot(p, svg);
    }
  } else if (spec.family == Family::segmentation) {
    const Roles roles = resolve_roles(req.inputs, InputKind::masks);
    ev.models = roles.model_names();
    append_rows(report, load_and_score_masks(roles, {spec.seg, req.classes, req.binarize, req.groups}, bo, bad), bo.ci,
                spec.only);
    report.notes.push_back("per image and class, then the mean over images; background excluded; hd95 in pixels");
  } else {
    const Roles roles = resolve_roles(req.inputs, InputKind::reports);
    ev.models = roles.model_names();
    const ReportPairs d = load_reports(roles, req.key, req.text_column, bad);
    if (spec.family == Family::text || spec.family == Family::reports) {
      append_rows(report, score_text(d, spec, bo), bo.ci, spec.only);
      report.notes.push_back("BLEU (corpus, pycocoevalcap 'closest') and ROUGE-L (beta 1.2) on coco_tokenize tokens");
    }
    if (spec.family == Family::labeller || spec.family == Family::reports) {
      ev.labeller = metrics::ReportLabeller::kName;
      append_rows(report, score_labeller(d, req, uncertain), bo.ci, spec.only);
      report.notes.push_back("chexpert-f1: labels from the " + ev.labeller + " (share/cx/labeller), uncertain: " +
                             req.uncertain);
    }
  }
  if (report.paired && ev.models.size() == 2)
    report.notes.push_back("A: " + ev.models[0] + "   B: " + ev.models[1] + "   (A - B on the same resamples)");
  return ev;
}

}  // namespace cx::eval
