// cx-eval: metrics with bootstrap medians and percentile confidence intervals, from the terminal.
//   cx-eval auroc preds.tsv                       one table: truth in Edema, score in Edema.score
//   cx-eval auroc --truth truth.tsv --pred p.tsv  two tables joined on --key
//   cx-eval auroc --truth t.tsv --paired a.tsv b.tsv   model A minus model B, CI and p-value
//   cx-eval dice truth.cx pred.cx                 masks from streams (or folders of PNG label maps)
//   cx-eval bleu truth.tsv generated.tsv          reports: key<TAB>text
// See man cx-eval for every metric's definition.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unordered_map>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/paths.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/labels.hpp"
#include "cx/data/table.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/png.hpp"
#include "cx/io/stream.hpp"
#include "cx/metrics/bootstrap.hpp"
#include "cx/metrics/classification.hpp"
#include "cx/metrics/labeller.hpp"
#include "cx/metrics/report.hpp"
#include "cx/metrics/segmentation.hpp"

extern char** environ;

namespace fs = std::filesystem;
using cx::Error;
using cx::UsageError;
using cx::data::Table;
namespace metrics = cx::metrics;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

struct Options {
  std::string metric;
  std::vector<std::string> inputs;
  std::string truth, pred;
  std::vector<std::string> paired;
  std::string key = "key";
  std::string labels;
  std::string uncertain = "ignore";
  std::string threshold = "0.5";
  int bootstrap = 500;
  double ci = 95;
  bool stratified = false;
  bool json = false;
  std::vector<std::string> plots;
  bool skip_bad = false;
  std::string classes;
  int binarize = -1;
  std::vector<std::string> groups;  // masks: NAME=V,V,... scored as one class
  std::string text_column;
  std::string labels_out;
};

enum class Family { classification, segmentation, text, labeller, reports };

struct MetricSpec {
  Family family;
  metrics::ClassificationRequest cls;
  std::vector<std::string> seg;
  bool bleu = false, rouge = false;
  std::vector<std::string> only;  // rows to print (metric names); empty: all computed
};

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

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty() || !out.empty()) out.push_back(cur);
  out.erase(std::remove(out.begin(), out.end(), std::string()), out.end());
  return out;
}

std::string display(const std::string& path) { return path == "-" ? "standard input" : path; }

// Bad inputs: without --skip-bad the first one fails the run; with it each is named and counted.
struct Problems {
  bool skip_bad = false;
  std::int64_t skipped = 0;
  void bad(const std::string& message) {
    if (!skip_bad) throw Error(message);
    cx::log::warn(message + "; skipped");
    ++skipped;
  }
};

// Keys present on one side only: named, exit 1; with --skip-bad each is named and skipped.
void report_unmatched(const std::vector<std::string>& keys, const std::string& missing_in, const std::string& present_in,
                      Problems& problems) {
  if (keys.empty()) return;
  if (!problems.skip_bad)
    throw Error(cx::at(missing_in, "no row for " + std::to_string(keys.size()) + " key" + (keys.size() > 1 ? "s" : "") +
                                       " of " + present_in + ": " + cx::data::name_list(keys)));
  for (const auto& k : keys) problems.bad(cx::at(missing_in, "no row for key '" + k + "' of " + present_in));
}

void stdin_at_most_once(const std::string& truth, const std::vector<std::string>& others) {
  if ((truth == "-") + std::count(others.begin(), others.end(), "-") > 1)
    throw UsageError("standard input can be only one of the inputs");
}

// ---------------------------------------------------------------- classification inputs

struct ClassificationData {
  std::vector<metrics::LabelScores> labels;
  std::size_t n_records = 0;
  std::vector<std::string> model_names;
};

ClassificationData load_classification(const Options& o, Problems& problems) {
  // Resolve which table holds the truth and which hold the scores.
  std::string truth_path = o.truth;
  std::vector<std::string> pred_paths;
  if (!o.paired.empty()) {
    if (!o.inputs.empty() || !o.pred.empty()) throw UsageError("--paired takes the two prediction tables; give no other inputs");
    pred_paths = o.paired;
  } else if (!o.pred.empty()) {
    if (!o.inputs.empty()) throw UsageError("give the inputs either as --truth/--pred or as positional arguments");
    pred_paths = {o.pred};
  } else if (o.inputs.size() == 2 && truth_path.empty()) {
    truth_path = o.inputs[0];
    pred_paths = {o.inputs[1]};
  } else if (o.inputs.size() == 1) {
    pred_paths = {o.inputs[0]};
  } else {
    throw UsageError("expected one table (truth NAME and score NAME.score), or --truth T --pred P, or --paired A B");
  }
  stdin_at_most_once(truth_path, pred_paths);

  std::vector<Table> preds;
  for (const auto& p : pred_paths) preds.push_back(cx::data::read_table(p));
  const bool truth_is_pred0 = truth_path.empty();
  Table truth_table;
  if (!truth_is_pred0) truth_table = cx::data::read_table(truth_path);
  const Table& truth = truth_is_pred0 ? preds[0] : truth_table;
  const int M = static_cast<int>(preds.size());

  // Records: truth rows with a row in every prediction table.
  std::vector<std::size_t> rows(truth.rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) rows[i] = i;
  std::vector<std::vector<std::size_t>> pred_row(M);  // [model][truth row] -> pred row, SIZE_MAX if none
  std::vector<char> keep(truth.rows.size(), 1);
  for (int m = 0; m < M; ++m) {
    pred_row[m].assign(truth.rows.size(), static_cast<std::size_t>(-1));
    if (m == 0 && truth_is_pred0) {
      for (std::size_t i = 0; i < truth.rows.size(); ++i) pred_row[m][i] = i;
      continue;
    }
    auto join = cx::data::join_rows(truth, o.key, preds[m], o.key);
    report_unmatched(join.only_left, preds[m].source, truth.source, problems);
    report_unmatched(join.only_right, truth.source, preds[m].source, problems);
    for (auto [t, p] : join.pairs) pred_row[m][t] = p;
    for (std::size_t i = 0; i < truth.rows.size(); ++i)
      if (pred_row[m][i] == static_cast<std::size_t>(-1)) keep[i] = 0;
  }
  std::vector<std::size_t> records;
  for (std::size_t i = 0; i < truth.rows.size(); ++i)
    if (keep[i]) records.push_back(i);

  // Labels: truth column L with a score column L.score (or L in a separate prediction table).
  auto score_column = [&](int m, const std::string& label) -> int {
    int c = preds[m].find_column(label + ".score");
    // A plain NAME column is a score only in a prediction table apart from the truth.
    if (c < 0 && !truth_is_pred0) c = preds[m].find_column(label);
    return c;
  };
  const int key_col = truth.find_column(o.key);
  std::vector<std::string> names;
  if (!o.labels.empty()) {
    names = split_commas(o.labels);
    for (const auto& l : names) {
      truth.require_column(l);
      for (int m = 0; m < M; ++m)
        if (score_column(m, l) < 0) preds[m].require_column(l + ".score");
    }
  } else {
    for (std::size_t c = 0; c < truth.columns.size(); ++c) {
      const std::string& col = truth.columns[c];
      if (static_cast<int>(c) == key_col) continue;
      if (col.size() > 6 && col.compare(col.size() - 6, 6, ".score") == 0) continue;
      bool all = true;
      for (int m = 0; m < M; ++m) all = all && score_column(m, col) >= 0;
      if (all) names.push_back(col);
    }
    if (names.empty())
      throw Error(cx::at(truth.source, "no label columns: expected a truth column NAME with scores in NAME.score" +
                                           std::string(truth_is_pred0 ? "" : " (or NAME in the prediction table)")));
  }

  const cx::data::LabelPolicy policy{cx::data::parse_uncertain_policy(o.uncertain), cx::data::BlankPolicy::ignore};
  ClassificationData d;
  d.n_records = records.size();
  for (int m = 0; m < M; ++m) d.model_names.push_back(display(pred_paths[m]));
  for (const auto& name : names) {
    metrics::LabelScores ls;
    ls.name = name;
    ls.scores.assign(M, {});
    const int tc = truth.require_column(name);
    std::vector<int> sc(M);
    for (int m = 0; m < M; ++m) sc[m] = score_column(m, name);
    for (std::size_t r = 0; r < records.size(); ++r) {
      const std::size_t tr = records[r];
      // Error locations are built only when a cell fails: the happy path stays allocation-free.
      auto value = cx::data::try_parse_label_cell(truth.rows[tr][tc]);
      if (!value) value = cx::data::parse_label_cell(truth.rows[tr][tc], cx::at(truth.where_row(tr), "column " + name));
      const std::optional<bool> target = cx::data::binary_target(*value, policy);
      if (!target) continue;
      const std::uint8_t y = *target ? 1 : 0;
      std::vector<double> s(M);
      bool ok = true;
      for (int m = 0; m < M && ok; ++m) {
        const std::size_t pr = pred_row[m][tr];
        try {
          s[m] = cx::data::parse_score(preds[m].rows[pr][sc[m]], std::string());
        } catch (const Error&) {
          try {
            cx::data::parse_score(preds[m].rows[pr][sc[m]], cx::at(preds[m].where_row(pr), "column " + preds[m].columns[sc[m]]));
          } catch (const Error& e) {
            problems.bad(e.what());
          }
          ok = false;
        }
      }
      if (!ok) continue;
      ls.records.push_back(static_cast<std::uint32_t>(r));
      ls.truth.push_back(y);
      for (int m = 0; m < M; ++m) ls.scores[m].push_back(s[m]);
    }
    const auto pos = std::count(ls.truth.begin(), ls.truth.end(), 1);
    const auto neg = static_cast<std::int64_t>(ls.truth.size()) - pos;
    if (pos == 0 || neg == 0)
      cx::log::warn(name + ": one class only (" + std::to_string(pos) + " positive, " + std::to_string(neg) +
                    " negative): AUROC undefined, reported as NA");
    d.labels.push_back(std::move(ls));
  }
  return d;
}

// ---------------------------------------------------------------- masks

struct MaskSet {
  std::string source;
  std::vector<std::string> keys;
  std::unordered_map<std::string, std::string> png;   // key -> PNG bytes (streams)
  std::unordered_map<std::string, std::string> path;  // key -> file (folders)
  std::vector<std::string> classes;                   // from the header or a record's json, may be empty
};

std::vector<std::string> classes_from_json(const nlohmann::json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& c : j)
      if (c.is_string()) out.push_back(c.get<std::string>());
  return out;
}

MaskSet read_masks(const std::string& input) {
  MaskSet s;
  s.source = display(input);
  if (input != "-" && fs::is_directory(input)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(input)) {
      std::string ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
      if (e.is_regular_file() && ext == ".png") files.push_back(e.path());
    }
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      std::string name = f.filename().string();
      std::string key = name.substr(0, name.find('.'));
      if (s.path.count(key)) throw Error(cx::at(s.source, "two files with key '" + key + "'"));
      s.keys.push_back(key);
      s.path[key] = f.string();
    }
    if (s.keys.empty()) throw Error(cx::at(s.source, "no .png label maps in the folder"));
    return s;
  }
  auto reader = cx::io::StreamReader::open(input);
  const auto& h = reader->header();
  if (h.contains("classes")) s.classes = classes_from_json(h["classes"]);
  if (s.classes.empty() && h.contains("fields") && h["fields"].is_object() && h["fields"].contains("mask.png") &&
      h["fields"]["mask.png"].is_object() && h["fields"]["mask.png"].contains("classes"))
    s.classes = classes_from_json(h["fields"]["mask.png"]["classes"]);
  cx::io::Record rec;
  while (reader->next(rec)) {
    const auto* mask = rec.find("mask.png");
    if (!mask) continue;  // records without a mask are not scored (named below if the other side has one)
    if (s.classes.empty()) {
      if (const auto* js = rec.find("json")) {
        try {
          auto j = nlohmann::json::parse(js->data);
          if (j.is_object() && j.contains("classes")) s.classes = classes_from_json(j["classes"]);
        } catch (const nlohmann::json::exception&) {
          throw Error(cx::at(s.source, rec.key + ".json: not valid JSON"));
        }
      }
    }
    if (s.png.count(rec.key)) throw Error(cx::at(s.source, "key '" + rec.key + "' appears twice"));
    s.keys.push_back(rec.key);
    s.png[rec.key] = mask->data;
  }
  return s;
}

struct LabelMap {
  int width = 0, height = 0;
  std::vector<std::uint16_t> v;
};

LabelMap load_mask(const MaskSet& s, const std::string& key, int binarize) {
  cx::Image im;
  std::string where;
  if (!s.path.empty()) {
    where = s.path.at(key);
    im = cx::io::decode_png(cx::io::read_file_bytes(where), where);
  } else {
    where = cx::at(s.source, key + ".mask.png");
    im = cx::io::decode_png(s.png.at(key), where);
  }
  if (im.channels != 1) throw Error(cx::at(where, "a label map must be a gray PNG, not RGB"));
  LabelMap m;
  m.width = im.width;
  m.height = im.height;
  m.v.resize(im.samples());
  for (std::size_t i = 0; i < m.v.size(); ++i) {
    const std::uint16_t x = im.bits == 16 ? im.u16()[i] : im.u8()[i];
    m.v[i] = binarize >= 0 ? (x >= binarize ? 1 : 0) : x;
  }
  return m;
}

// Class names: --classes, else the truth's, else the prediction's. A list that starts with
// "background" maps index i to value i; otherwise entry i names value i + 1.
std::vector<std::string> scored_classes(std::vector<std::string> names) {
  if (!names.empty()) {
    std::string first = names[0];
    std::transform(first.begin(), first.end(), first.begin(), [](unsigned char c) { return std::tolower(c); });
    if (first == "background") names.erase(names.begin());
  }
  return names;
}

metrics::Replicates run_segmentation(const Options& o, const MetricSpec& spec, const metrics::BootstrapOptions& bo,
                                     Problems& problems, std::vector<std::string>& model_names) {
  std::string truth_path = o.truth;
  std::vector<std::string> pred_paths;
  if (!o.paired.empty()) {
    if (truth_path.empty() && o.inputs.size() == 1) truth_path = o.inputs[0];
    if (truth_path.empty()) throw UsageError("--paired A B needs the truth masks: --truth T (or one positional input)");
    pred_paths = o.paired;
  } else if (!truth_path.empty() && (!o.pred.empty() || o.inputs.size() == 1)) {
    if (!o.pred.empty() && !o.inputs.empty()) throw UsageError("give the inputs either as --truth/--pred or as positional arguments");
    pred_paths = {o.pred.empty() ? o.inputs[0] : o.pred};
  } else if (o.inputs.size() == 2 && truth_path.empty() && o.pred.empty()) {
    truth_path = o.inputs[0];
    pred_paths = {o.inputs[1]};
  } else {
    throw UsageError("masks: expected TRUTH PRED (two streams or folders of PNG label maps), or --truth T --pred P");
  }
  stdin_at_most_once(truth_path, pred_paths);
  MaskSet truth = read_masks(truth_path);
  std::vector<MaskSet> preds;
  for (const auto& p : pred_paths) {
    preds.push_back(read_masks(p));
    model_names.push_back(display(p));
  }
  std::vector<std::string> names;
  if (!o.classes.empty()) names = split_commas(o.classes);
  else if (o.binarize >= 0) names = {"foreground"};
  else if (!truth.classes.empty()) names = truth.classes;
  else if (!preds[0].classes.empty()) names = preds[0].classes;
  names = scored_classes(names);

  // Keys in truth order present in every prediction set.
  std::vector<std::string> keys;
  for (auto& p : preds) {
    std::set<std::string> tk(truth.keys.begin(), truth.keys.end());
    std::vector<std::string> only_truth, only_pred;
    for (const auto& k : truth.keys)
      if (!p.png.count(k) && !p.path.count(k)) only_truth.push_back(k);
    for (const auto& k : p.keys)
      if (!tk.count(k)) only_pred.push_back(k);
    report_unmatched(only_truth, p.source, truth.source, problems);
    report_unmatched(only_pred, truth.source, p.source, problems);
  }
  for (const auto& k : truth.keys) {
    bool all = true;
    for (auto& p : preds) all = all && (p.png.count(k) || p.path.count(k));
    if (all) keys.push_back(k);
  }

  // Without class names, the classes are the values 1..max found in any map.
  if (names.empty()) {
    int max_value = 0;
    for (const auto& k : keys) {
      for (const MaskSet* s : [&] {
             std::vector<const MaskSet*> v{&truth};
             for (auto& p : preds) v.push_back(&p);
             return v;
           }()) {
        LabelMap m = load_mask(*s, k, o.binarize);
        for (auto x : m.v) max_value = std::max<int>(max_value, x);
      }
    }
    for (int c = 1; c <= max_value; ++c) names.push_back("class " + std::to_string(c));
    if (names.empty()) throw Error(cx::at(truth.source, "no class names and no foreground in any mask"));
    cx::log::info("no class names in the inputs: scoring values 1.." + std::to_string(max_value) + " (--classes names them)");
  }
  // --group: values of a group become one class, in the place of its first member; the other
  // classes keep their order. lut maps a stored value to the scored one.
  std::vector<std::uint16_t> lut;
  const std::size_t values_known = names.size();
  if (!o.groups.empty()) {
    std::vector<int> group_of(names.size() + 1, -1);
    std::vector<std::string> group_names;
    for (const auto& g : o.groups) {
      const auto eq = g.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == g.size()) throw UsageError("--group " + g + ": expected NAME=V,V,...");
      const int gi = static_cast<int>(group_names.size());
      group_names.push_back(g.substr(0, eq));
      for (const auto& v : split_commas(g.substr(eq + 1))) {
        int x = 0;
        try {
          std::size_t used = 0;
          x = std::stoi(v, &used);
          if (used != v.size()) throw std::invalid_argument(v);
        } catch (const std::exception&) {
          throw UsageError("--group " + g + ": '" + v + "' is not a class value");
        }
        if (x < 1 || x > static_cast<int>(names.size()))
          throw UsageError("--group " + g + ": value " + v + " is not one of the classes 1.." + std::to_string(names.size()));
        if (group_of[static_cast<std::size_t>(x)] >= 0) throw UsageError("--group: value " + v + " is in two groups");
        group_of[static_cast<std::size_t>(x)] = gi;
      }
    }
    lut.assign(names.size() + 1, 0);
    std::vector<std::string> scored;
    std::vector<int> group_index(group_names.size(), 0);
    for (std::size_t v = 1; v <= names.size(); ++v) {
      const int g = group_of[v];
      if (g < 0) {
        scored.push_back(names[v - 1]);
        lut[v] = static_cast<std::uint16_t>(scored.size());
      } else {
        if (group_index[static_cast<std::size_t>(g)] == 0) {
          scored.push_back(group_names[static_cast<std::size_t>(g)]);
          group_index[static_cast<std::size_t>(g)] = static_cast<int>(scored.size());
        }
        lut[v] = static_cast<std::uint16_t>(group_index[static_cast<std::size_t>(g)]);
      }
    }
    names = scored;
  }
  auto regroup = [&](LabelMap& m, const std::string& where) {
    if (lut.empty()) return;
    for (auto& x : m.v) {
      if (x > values_known)
        throw Error(cx::at(where, "value " + std::to_string(x) + " is outside the classes 0.." + std::to_string(values_known)));
      x = lut[x];
    }
  };

  const int C = static_cast<int>(names.size());
  std::vector<std::vector<double>> values(preds.size());
  std::vector<std::string> used_keys;
  for (const auto& k : keys) {
    LabelMap t = load_mask(truth, k, o.binarize);
    regroup(t, cx::at(truth.source, "key '" + k + "'"));
    std::vector<std::vector<double>> per_model;
    bool ok = true;
    for (auto& p : preds) {
      LabelMap q = load_mask(p, k, o.binarize);
      regroup(q, cx::at(p.source, "key '" + k + "'"));
      if (q.width != t.width || q.height != t.height) {
        problems.bad(cx::at(p.source, "key '" + k + "': mask is " + std::to_string(q.width) + "x" + std::to_string(q.height) +
                                          ", the truth is " + std::to_string(t.width) + "x" + std::to_string(t.height)));
        ok = false;
        break;
      }
      per_model.push_back(metrics::score_label_maps(t.v.data(), q.v.data(), t.width, t.height, C, spec.seg,
                                                    cx::at(truth.source, "key '" + k + "'")));
    }
    if (!ok) continue;
    used_keys.push_back(k);
    // score_label_maps gives [metric][class]: the bootstrap's layout for one record.
    for (std::size_t m = 0; m < preds.size(); ++m)
      values[m].insert(values[m].end(), per_model[m].begin(), per_model[m].end());
  }
  if (used_keys.empty()) throw Error(cx::at(truth.source, "no mask pairs to score"));
  return metrics::bootstrap_record_means(spec.seg, names, "mean", values, used_keys.size(), bo);
}

// ---------------------------------------------------------------- reports

struct ReportData {
  std::vector<std::string> keys;
  std::vector<std::vector<std::string>> references;  // [record][ref]
  std::vector<std::vector<std::string>> generated;   // [model][record]
  std::vector<std::string> model_names;
};

int text_column_of(const Table& t, const std::string& key, const std::string& wanted) {
  if (!wanted.empty()) return t.require_column(wanted);
  if (t.columns.size() == 2) return t.columns[0] == key ? 1 : 0;
  for (const char* c : {"text", "report"}) {
    int i = t.find_column(c);
    if (i >= 0) return i;
  }
  throw Error(cx::at(t.source, "which column holds the text? expected KEY<TAB>TEXT, a 'text' column, or --text-column"));
}

ReportData load_reports(const Options& o, Problems& problems) {
  std::string truth_path = o.truth;
  std::vector<std::string> gen_paths;
  if (!o.paired.empty()) {
    if (truth_path.empty() && o.inputs.size() == 1) truth_path = o.inputs[0];
    if (truth_path.empty()) throw UsageError("--paired A B needs the reference reports: --truth T");
    gen_paths = o.paired;
  } else if (!truth_path.empty() && (!o.pred.empty() || o.inputs.size() == 1)) {
    if (!o.pred.empty() && !o.inputs.empty()) throw UsageError("give the inputs either as --truth/--pred or as positional arguments");
    gen_paths = {o.pred.empty() ? o.inputs[0] : o.pred};
  } else if (o.inputs.size() == 2 && truth_path.empty() && o.pred.empty()) {
    truth_path = o.inputs[0];
    gen_paths = {o.inputs[1]};
  } else {
    throw UsageError("reports: expected TRUTH GENERATED (TSV key<TAB>text), or --truth T --pred P");
  }
  stdin_at_most_once(truth_path, gen_paths);
  Table truth = cx::data::read_table(truth_path, '\t');
  const int tk = truth.require_column(o.key);
  const int tt = text_column_of(truth, o.key, o.text_column);
  ReportData d;
  std::unordered_map<std::string, std::size_t> index;  // key -> record
  std::vector<std::vector<std::string>> refs;
  std::vector<std::string> order;
  for (const auto& row : truth.rows) {
    auto [it, fresh] = index.emplace(row[tk], order.size());
    if (fresh) {
      order.push_back(row[tk]);
      refs.emplace_back();
    }
    refs[it->second].push_back(row[tt]);  // repeated keys: several references
  }
  std::vector<std::vector<std::string>> gen(gen_paths.size(), std::vector<std::string>(order.size()));
  std::vector<char> keep(order.size(), 1);
  for (std::size_t m = 0; m < gen_paths.size(); ++m) {
    Table g = cx::data::read_table(gen_paths[m], '\t');
    d.model_names.push_back(display(gen_paths[m]));
    const int gk = g.require_column(o.key);
    const int gt = text_column_of(g, o.key, o.text_column);
    std::vector<char> seen(order.size(), 0);
    std::vector<std::string> only_gen;
    for (std::size_t i = 0; i < g.rows.size(); ++i) {
      auto it = index.find(g.rows[i][gk]);
      if (it == index.end()) {
        only_gen.push_back(g.rows[i][gk]);
        continue;
      }
      if (seen[it->second]) throw Error(cx::at(g.where_row(i), "key '" + g.rows[i][gk] + "' appears twice"));
      seen[it->second] = 1;
      gen[m][it->second] = g.rows[i][gt];
    }
    std::vector<std::string> only_truth;
    for (std::size_t r = 0; r < order.size(); ++r)
      if (!seen[r]) {
        only_truth.push_back(order[r]);
        keep[r] = 0;
      }
    report_unmatched(only_truth, g.source, truth.source, problems);
    report_unmatched(only_gen, truth.source, g.source, problems);
  }
  d.generated.assign(gen_paths.size(), {});
  for (std::size_t r = 0; r < order.size(); ++r) {
    if (!keep[r]) continue;
    d.keys.push_back(order[r]);
    d.references.push_back(refs[r]);
    for (std::size_t m = 0; m < gen_paths.size(); ++m) d.generated[m].push_back(gen[m][r]);
  }
  if (d.keys.empty()) throw Error(cx::at(truth.source, "no report pairs to score"));
  return d;
}

metrics::Replicates run_text(const ReportData& d, const MetricSpec& spec, const metrics::BootstrapOptions& bo) {
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

metrics::Replicates run_labeller(const ReportData& d, const Options& o, const metrics::BootstrapOptions& bo) {
  const auto labeller = metrics::ReportLabeller::load(cx::share_dir() + "/labeller");
  std::vector<std::vector<cx::data::LabelValue>> truth;
  for (const auto& rs : d.references) {
    std::string joined;
    for (const auto& r : rs) joined += r + ".\n";  // several references: their mentions pooled
    truth.push_back(labeller.label(joined));
  }
  std::vector<std::vector<std::vector<cx::data::LabelValue>>> pred(d.generated.size());
  for (std::size_t m = 0; m < d.generated.size(); ++m)
    for (const auto& g : d.generated[m]) pred[m].push_back(labeller.label(g));
  if (!o.labels_out.empty()) {
    std::string out = "key\tsource";
    for (const auto& n : metrics::chexpert_labels()) out += "\t" + n;
    out += "\n";
    auto put = [&](const std::string& key, const std::string& source, const std::vector<cx::data::LabelValue>& codes) {
      out += key + "\t" + source;
      for (auto c : codes) out += std::string("\t") + cx::data::label_cell_text(c);
      out += "\n";
    };
    for (std::size_t i = 0; i < d.keys.size(); ++i) {
      put(d.keys[i], "truth", truth[i]);
      for (std::size_t m = 0; m < pred.size(); ++m) put(d.keys[i], pred.size() > 1 ? (m ? "B" : "A") : "pred", pred[m][i]);
    }
    cx::cli::write_file_atomic(o.labels_out, out);
  }
  return metrics::bootstrap_label_f1(truth, pred, metrics::chexpert_labels(), cx::data::parse_uncertain_policy(o.uncertain), bo);
}

// ---------------------------------------------------------------- output

std::string fmt(double v, int decimals = 4) { return cx::log::number(v, decimals); }

std::string fmt_p(double p) {
  if (std::isnan(p)) return "NA";
  char buf[64];
  std::snprintf(buf, sizeof buf, p < 0.001 ? "%.2e" : "%.4f", p);
  return buf;
}

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

struct Report {
  std::vector<metrics::Summary> rows;
  bool paired = false;
  bool has_threshold = false;
  std::vector<std::string> notes;  // captions: what the numbers are
};

std::string render_tsv(const Report& r) {
  std::ostringstream s;
  if (!r.paired) {
    s << "metric\tlabel\tn\tpositives\testimate\tmedian\tci_low\tci_high\tresamples\tskipped";
    if (r.has_threshold) s << "\tthreshold";
    s << "\n";
    for (const auto& x : r.rows) {
      s << x.metric << '\t' << x.label << '\t' << x.n << '\t' << (x.positives >= 0 ? std::to_string(x.positives) : "")
        << '\t' << fmt(x.estimate, 6) << '\t' << fmt(x.median, 6) << '\t' << fmt(x.low, 6) << '\t' << fmt(x.high, 6)
        << '\t' << x.used << '\t' << x.skipped;
      if (r.has_threshold) s << '\t' << (std::isnan(x.threshold) ? "" : fmt(x.threshold, 6));
      s << '\n';
    }
  } else {
    s << "metric\tlabel\tn\tpositives\testimate_a\testimate_b\tdifference\tmedian\tci_low\tci_high\tp_value\tresamples\tskipped\n";
    for (const auto& x : r.rows)
      s << x.metric << '\t' << x.label << '\t' << x.n << '\t' << (x.positives >= 0 ? std::to_string(x.positives) : "")
        << '\t' << fmt(x.estimate_a, 6) << '\t' << fmt(x.estimate_b, 6) << '\t' << fmt(x.estimate, 6) << '\t'
        << fmt(x.median, 6) << '\t' << fmt(x.low, 6) << '\t' << fmt(x.high, 6) << '\t' << fmt_p(x.p_value) << '\t' << x.used
        << '\t' << x.skipped << '\n';
  }
  return s.str();
}

std::string render_terminal(const Report& r, double ci) {
  std::vector<std::vector<std::string>> cells;
  std::vector<bool> right;
  const std::string ci_name = fmt(ci, ci == std::floor(ci) ? 0 : 1) + "% CI";
  if (!r.paired) {
    cells.push_back({"metric", "label", "n", "pos", "estimate", "median", ci_name, "skipped"});
    right = {false, false, true, true, true, true, false, true};
    if (r.has_threshold) {
      cells[0].push_back("threshold");
      right.push_back(true);
    }
    for (const auto& x : r.rows) {
      std::vector<std::string> row = {x.metric, x.label, std::to_string(x.n), x.positives >= 0 ? std::to_string(x.positives) : "-",
                                      fmt(x.estimate), fmt(x.median),
                                      std::isnan(x.low) ? "NA" : "[" + fmt(x.low) + ", " + fmt(x.high) + "]",
                                      std::to_string(x.skipped)};
      if (r.has_threshold) row.push_back(std::isnan(x.threshold) ? "-" : fmt(x.threshold));
      cells.push_back(row);
    }
  } else {
    cells.push_back({"metric", "label", "n", "A", "B", "A - B", "median", ci_name, "p", "skipped"});
    right = {false, false, true, true, true, true, true, false, true, true};
    for (const auto& x : r.rows)
      cells.push_back({x.metric, x.label, std::to_string(x.n), fmt(x.estimate_a), fmt(x.estimate_b), fmt(x.estimate),
                       fmt(x.median), std::isnan(x.low) ? "NA" : "[" + fmt(x.low) + ", " + fmt(x.high) + "]",
                       fmt_p(x.p_value), std::to_string(x.skipped)});
  }
  std::vector<std::size_t> width(cells[0].size(), 0);
  for (const auto& row : cells)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::ostringstream s;
  for (const auto& n : r.notes) s << n << "\n";
  for (std::size_t i = 0; i < cells.size(); ++i) {
    std::string line;
    for (std::size_t c = 0; c < cells[i].size(); ++c) {
      const std::string& v = cells[i][c];
      std::string pad(width[c] - v.size(), ' ');
      if (c) line += "  ";
      line += right[c] ? pad + v : v + (c + 1 < cells[i].size() ? pad : "");
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    s << line << "\n";
  }
  return s.str();
}

nlohmann::json render_json(const Report& r, const Options& o, const metrics::BootstrapOptions& bo,
                           const std::vector<std::string>& model_names, const std::string& labeller) {
  nlohmann::json j;
  j["tool"] = "cx-eval";
  j["version"] = cx::cli::version_string();
  j["metric"] = o.metric;
  j["bootstrap"] = {{"resamples", bo.resamples}, {"ci", bo.ci}, {"seed", bo.seed}, {"stratified", bo.stratified},
                    {"interval", "percentile"}};
  j["paired"] = r.paired;
  j["models"] = model_names;
  if (!labeller.empty()) j["labeller"] = labeller;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& x : r.rows) {
    nlohmann::json row = {{"metric", x.metric}, {"label", x.label}, {"n", x.n}};
    if (x.positives >= 0) row["positives"] = x.positives;
    row["estimate"] = num(x.estimate);
    row["median"] = num(x.median);
    row["ci_low"] = num(x.low);
    row["ci_high"] = num(x.high);
    row["resamples"] = x.used;
    row["skipped"] = x.skipped;
    if (!std::isnan(x.threshold)) row["threshold"] = num(x.threshold);
    if (r.paired) {
      row["estimate_a"] = num(x.estimate_a);
      row["estimate_b"] = num(x.estimate_b);
      row["p_value"] = num(x.p_value);
    }
    rows.push_back(row);
  }
  j["rows"] = rows;
  return j;
}

// ---------------------------------------------------------------- ROC plot

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o.push_back(c);
    }
  }
  return o;
}

std::string svg_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string roc_svg(const metrics::RocBands& bands, const std::vector<metrics::LabelScores>& labels,
                    const std::vector<metrics::Summary>& auroc_rows, const std::vector<std::string>& model_names,
                    double ci, int resamples) {
  const int L = static_cast<int>(labels.size());
  const int M = static_cast<int>(bands.curve.size());
  const int cols = std::min(L, 4), rows = (L + cols - 1) / cols;
  const double plot = 180, left = 52, top = 24 + 14.0 * M, bottom = 44, panel_w = 260;
  const double panel_h = top + plot + bottom;
  const double legend = 34 + 18.0 * M;
  const double W = std::max(cols * panel_w + 20, 660.0), H = legend + rows * panel_h + 10;
  const char* colours[] = {"#1f5fa8", "#d9661f"};
  const char* bands_fill[] = {"#9dc0e8", "#f5bf9a"};
  const double tail = (100 - ci) / 2;
  const std::string ci_text = fmt(ci, ci == std::floor(ci) ? 0 : 1);
  std::ostringstream s;
  s << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << svg_num(W) << "\" height=\"" << svg_num(H)
    << "\" viewBox=\"0 0 " << svg_num(W) << " " << svg_num(H) << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"10\" y=\"20\" font-size=\"13\">ROC curves; shaded: " << ci_text << "% percentile band of sensitivity over "
    << resamples << " bootstrap resamples</text>\n";
  for (int m = 0; m < M; ++m)
    s << "<rect x=\"10\" y=\"" << svg_num(30 + 18.0 * m) << "\" width=\"14\" height=\"10\" fill=\"" << colours[m % 2]
      << "\"/><text x=\"30\" y=\"" << svg_num(39 + 18.0 * m) << "\">" << (M > 1 ? (m ? "B: " : "A: ") : "")
      << xml_escape(model_names[m]) << "</text>\n";
  for (int l = 0; l < L; ++l) {
    const double ox = 10 + (l % cols) * panel_w + left, oy = legend + (l / cols) * panel_h + top;
    auto X = [&](double f) { return ox + f * plot; };
    auto Y = [&](double t) { return oy + (1 - t) * plot; };
    s << "<g>\n<text x=\"" << svg_num(ox) << "\" y=\"" << svg_num(oy - 8 - 14.0 * M)
      << "\" font-size=\"12\" font-weight=\"bold\">" << xml_escape(labels[l].name) << "</text>\n";
    for (int m = 0; m < M; ++m) {
      const auto& row = auroc_rows[static_cast<std::size_t>(l) * M + m];
      s << "<text x=\"" << svg_num(ox) << "\" y=\"" << svg_num(oy - 8 - 14.0 * (M - 1 - m)) << "\" fill=\""
        << colours[m % 2] << "\">AUROC " << fmt(row.estimate, 3)
        << (std::isnan(row.low) ? "" : " [" + fmt(row.low, 3) + ", " + fmt(row.high, 3) + "]") << "</text>\n";
    }
    s << "<line x1=\"" << svg_num(X(0)) << "\" y1=\"" << svg_num(Y(0)) << "\" x2=\"" << svg_num(X(1)) << "\" y2=\""
      << svg_num(Y(1)) << "\" stroke=\"#aaa\" stroke-dasharray=\"4,3\"/>\n";
    // Bands first, then curves, so no band hides a curve.
    for (int m = 0; m < M; ++m) {
      const int P = bands.points;
      const auto& tpr = bands.resample_tpr[m][l];
      if (P < 2 || resamples == 0) continue;
      std::vector<double> lo(P), hi(P);
      bool any = false;
      for (int k = 0; k < P; ++k) {
        std::vector<double> v;
        for (int b = 0; b < resamples; ++b) {
          const float x = tpr[static_cast<std::size_t>(b) * P + k];
          if (!std::isnan(x)) v.push_back(x);
        }
        std::sort(v.begin(), v.end());
        lo[k] = metrics::percentile_sorted(v, tail);
        hi[k] = metrics::percentile_sorted(v, 100 - tail);
        any = any || !v.empty();
      }
      if (!any) continue;
      s << "<polygon fill=\"" << bands_fill[m % 2] << "\" fill-opacity=\"0.55\" stroke=\"none\" points=\"";
      for (int k = 0; k < P; ++k) s << svg_num(X(double(k) / (P - 1))) << "," << svg_num(Y(hi[k])) << " ";
      for (int k = P - 1; k >= 0; --k) s << svg_num(X(double(k) / (P - 1))) << "," << svg_num(Y(lo[k])) << " ";
      s << "\"/>\n";
    }
    for (int m = 0; m < M; ++m) {
      const auto& c = bands.curve[m][l];
      s << "<polyline fill=\"none\" stroke=\"" << colours[m % 2] << "\" stroke-width=\"1.6\" points=\"";
      // A vertex per distinct threshold would be 100,000 points for 100,000 records: keep those that
      // move the line by a quarter pixel or more (and the last), which draws the same picture.
      double px = -1e9, py = -1e9;
      for (std::size_t i = 0; i < c.fpr.size(); ++i) {
        if (std::isnan(c.fpr[i]) || std::isnan(c.tpr[i])) continue;
        const double x = X(c.fpr[i]), y = Y(c.tpr[i]);
        if (i + 1 < c.fpr.size() && std::abs(x - px) < 0.25 && std::abs(y - py) < 0.25) continue;
        s << svg_num(x) << "," << svg_num(y) << " ";
        px = x;
        py = y;
      }
      s << "\"/>\n";
    }
    s << "<rect x=\"" << svg_num(X(0)) << "\" y=\"" << svg_num(Y(1)) << "\" width=\"" << svg_num(plot) << "\" height=\""
      << svg_num(plot) << "\" fill=\"none\" stroke=\"#444\"/>\n";
    for (double t : {0.0, 0.5, 1.0}) {
      s << "<text x=\"" << svg_num(X(t)) << "\" y=\"" << svg_num(Y(0) + 14) << "\" text-anchor=\"middle\">" << fmt(t, 1)
        << "</text>\n";
      s << "<text x=\"" << svg_num(X(0) - 5) << "\" y=\"" << svg_num(Y(t) + 4) << "\" text-anchor=\"end\">" << fmt(t, 1)
        << "</text>\n";
    }
    s << "<text x=\"" << svg_num(X(0.5)) << "\" y=\"" << svg_num(Y(0) + 30) << "\" text-anchor=\"middle\">1 - specificity</text>\n";
    s << "<text transform=\"translate(" << svg_num(X(0) - 34) << "," << svg_num(Y(0.5))
      << ") rotate(-90)\" text-anchor=\"middle\">sensitivity</text>\n</g>\n";
  }
  s << "</svg>\n";
  return s.str();
}

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::stringstream ss(path);
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    if (dir.empty()) dir = ".";
    if (::access((dir + "/" + program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

int run_quietly(const std::vector<std::string>& args, bool capture_version = false, std::string* out = nullptr) {
  int pipefd[2] = {-1, -1};
  if (capture_version && ::pipe(pipefd) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (capture_version) {
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  } else {
    posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);  // never into our data stream
  }
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (capture_version) {
    ::close(pipefd[1]);
    if (rc == 0 && out) {
      char buf[4096];
      ssize_t got;
      while ((got = ::read(pipefd[0], buf, sizeof buf)) > 0) out->append(buf, static_cast<std::size_t>(got));
    }
    ::close(pipefd[0]);
  }
  if (rc != 0) return -1;
  int status = 0;
  if (::waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// rsvg-convert, else ImageMagick's convert (a stand-in named convert that is not ImageMagick is
// passed over); empty when neither is present.
std::vector<std::string> find_rasteriser() {
  if (on_path("rsvg-convert")) return {"rsvg-convert", "-b", "white", "-o"};
  for (const char* name : {"magick", "convert"}) {
    if (!on_path(name)) continue;
    std::string version;
    run_quietly({name, "-version"}, true, &version);
    if (version.find("ImageMagick") != std::string::npos) return {name};
  }
  return {};
}

void write_plot(const std::string& path, const std::string& svg, const std::vector<std::string>& rasteriser) {
  std::string lower = path;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (lower.size() < 4 || lower.compare(lower.size() - 4, 4, ".png") != 0) {
    cx::cli::write_file_atomic(path, svg);
    return;
  }
  const std::string tmp_svg = path + ".tmp." + std::to_string(::getpid()) + ".svg";
  const std::string tmp_png = path + ".tmp." + std::to_string(::getpid()) + ".png";
  {
    cx::cli::OutputFile f(tmp_svg);
    f.write(svg);
    f.commit();
  }
  std::vector<std::string> args = rasteriser;
  if (args[0] == "rsvg-convert") {
    args.push_back(tmp_png);
    args.push_back(tmp_svg);
  } else {
    args.push_back(tmp_svg);
    args.push_back(tmp_png);
  }
  const int rc = run_quietly(args);
  ::unlink(tmp_svg.c_str());
  if (rc != 0 || std::rename(tmp_png.c_str(), path.c_str()) != 0) {
    ::unlink(tmp_png.c_str());
    throw Error(cx::at(path, args[0] + " failed to rasterise the plot"));
  }
}

}  // namespace

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-eval",
                     "Metrics with bootstrap medians and percentile confidence intervals.\n"
                     "  cx-eval METRIC [options] [INPUT...]\n"
                     "METRIC: auroc auprc accuracy sensitivity specificity f1 threshold cls | dice iou hd95 seg |\n"
                     "        bleu rouge chexpert-f1 report   (man cx-eval defines each)");
  Options o;
  auto& app = tool.app();
  app.add_option("metric", o.metric, "The metric (see above)")->required()->type_name("METRIC");
  app.add_option("inputs", o.inputs,
                 "One table with NAME and NAME.score columns; or TRUTH PRED (tables, mask streams or folders, "
                 "report TSVs); '-' is standard input")
      ->type_name("INPUT");
  app.add_option("--truth", o.truth, "Truth table, masks or reference reports")->type_name("FILE");
  app.add_option("--pred", o.pred, "Prediction table, masks or generated reports")->type_name("FILE");
  app.add_option("--paired", o.paired, "Two models' predictions on the same records: bootstrap of A - B, with a p-value")
      ->expected(2)
      ->allow_extra_args(false)
      ->type_name("A B");
  app.add_option("--key", o.key, "Key column that joins the tables")->capture_default_str()->type_name("NAME");
  app.add_option("--labels", o.labels, "Only these labels (comma-separated)")->type_name("L1,L2");
  app.add_option("--uncertain", o.uncertain, "Uncertain (-1) truth: ignore (left out per label), ones or zeros")
      ->check(CLI::IsMember({"ignore", "ones", "zeros"}))
      ->capture_default_str();
  app.add_option("--threshold", o.threshold, "Threshold for accuracy/sensitivity/specificity/f1: a number or 'youden'")
      ->capture_default_str()
      ->type_name("T|youden");
  app.add_option("--bootstrap", o.bootstrap, "Bootstrap resamples (0: point estimates only)")
      ->check(CLI::Range(0, 1000000))
      ->capture_default_str()
      ->type_name("N");
  app.add_option("--ci", o.ci, "Confidence level of the percentile interval, in percent")
      ->check(CLI::Range(1.0, 99.99))
      ->capture_default_str()
      ->type_name("PCT");
  app.add_flag("--stratified", o.stratified, "Resample each label's positives and negatives apart (classification)");
  app.add_flag("--json", o.json, "Write JSON instead of a table");
  app.add_option("--plot", o.plots, "Write ROC curves with the bootstrap band (.svg; .png needs rsvg-convert or ImageMagick); repeatable")
      ->allow_extra_args(false)
      ->type_name("FILE");
  app.add_flag("--skip-bad", o.skip_bad, "Skip unmatched keys and bad cells, naming each (exit 3)");
  app.add_option("--classes", o.classes, "Mask class names for values 1, 2, ... (comma-separated)")->type_name("A,B");
  app.add_option("--binarize", o.binarize, "Masks: values >= T are the one foreground class")
      ->check(CLI::Range(1, 65535))
      ->type_name("T");
  app.add_option("--group", o.groups, "Masks: score values V,V,... as one class NAME (e.g. lung=1,2); repeatable")
      ->allow_extra_args(false)
      ->type_name("NAME=V,V");
  app.add_option("--text-column", o.text_column, "Reports: the text column (default: the non-key column, or 'text')")
      ->type_name("NAME");
  app.add_option("--labels-out", o.labels_out, "chexpert-f1: also write the labeller's per-report labels as TSV")
      ->type_name("FILE");
  tool.add_output_option();
  tool.add_threads_option();
  tool.add_seed_option(0);

  return tool.run(argc, argv, [&]() -> int {
    MetricSpec spec = parse_metric(o.metric);
    // Inputs: none given and stdin not a terminal -> "-" (for one-table classification).
    if (o.inputs.empty() && o.pred.empty() && o.paired.empty()) o.inputs = tool.inputs_or_stdin({});
    double threshold = 0.5;
    bool youden = false;
    if (o.threshold == "youden") {
      youden = true;
    } else {
      try {
        threshold = cx::data::parse_number(o.threshold, "--threshold");
      } catch (const Error& e) {
        throw UsageError(std::string(e.what()) + " (a number or 'youden')");
      }
    }
    if (!o.plots.empty() && (spec.family != Family::classification || !spec.cls.auroc))
      throw UsageError("--plot draws ROC curves: use it with auroc or cls");
    std::vector<std::string> rasteriser;
    for (const auto& p : o.plots) {
      std::string lower = p;
      std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
      if (lower.size() >= 4 && lower.compare(lower.size() - 4, 4, ".png") == 0 && rasteriser.empty()) {
        rasteriser = find_rasteriser();
        if (rasteriser.empty())
          throw Error(cx::at(p, "no SVG rasteriser found (rsvg-convert or ImageMagick); write an .svg plot instead"));
      }
    }
    if (!o.labels_out.empty() && spec.family != Family::labeller && spec.family != Family::reports)
      throw UsageError("--labels-out goes with chexpert-f1 or report");

    metrics::BootstrapOptions bo;
    bo.resamples = o.bootstrap;
    bo.ci = o.ci;
    bo.seed = tool.common().seed;
    bo.stratified = o.stratified;
    bo.threads = tool.threads();
    Problems problems;
    problems.skip_bad = o.skip_bad;

    Report report;
    report.paired = !o.paired.empty();
    std::vector<std::string> model_names;
    std::string labeller_name;
    metrics::RocBands bands;
    std::vector<metrics::LabelScores> plotted_labels;
    char caption[256];
    std::snprintf(caption, sizeof caption, "%d bootstrap resamples (seed %llu%s), percentile %s%% CI", o.bootstrap,
                  static_cast<unsigned long long>(bo.seed), bo.stratified ? ", stratified" : "",
                  fmt(o.ci, o.ci == std::floor(o.ci) ? 0 : 1).c_str());
    report.notes.push_back(caption);

    auto append = [&](const metrics::Replicates& r) {
      auto rows = metrics::summarise(r, bo.ci, report.paired);
      for (auto& row : rows) {
        if (row.metric == "auroc" || row.metric == "auprc") row.threshold = kNaN;
      }
      for (auto& row : rows)
        if (spec.only.empty() || std::find(spec.only.begin(), spec.only.end(), row.metric) != spec.only.end())
          report.rows.push_back(std::move(row));
    };

    if (spec.family == Family::classification) {
      if (o.stratified && report.paired) cx::log::debug("stratified and paired: the same per-label draws for both models");
      ClassificationData d = load_classification(o, problems);
      model_names = d.model_names;
      spec.cls.threshold = threshold;
      spec.cls.youden = youden;
      spec.cls.curve_points = o.plots.empty() ? 0 : 101;
      auto r = metrics::bootstrap_classification(d.labels, d.n_records, spec.cls, bo, o.plots.empty() ? nullptr : &bands);
      report.has_threshold = spec.cls.at_threshold && !report.paired;
      if (spec.cls.at_threshold)
        report.notes.push_back(youden ? "threshold: Youden's J on all records, fixed across resamples; positive when score >= threshold"
                                      : "threshold " + o.threshold + ": positive when score >= threshold");
      append(r);
      if (!o.plots.empty()) {
        // AUROC rows per model for the panel titles.
        std::vector<metrics::Summary> auroc_rows;
        auto single = [&](int model) {
          metrics::Replicates one = r;
          one.models = 1;
          one.point.assign(r.stride() / r.models, kNaN);
          one.values.assign(static_cast<std::size_t>(r.resamples) * (r.stride() / r.models), kNaN);
          const std::size_t per = r.metrics.size() * r.labels.size();
          std::copy(r.point.begin() + model * per, r.point.begin() + (model + 1) * per, one.point.begin());
          for (int b = 0; b < r.resamples; ++b)
            std::copy(r.values.begin() + b * r.stride() + model * per, r.values.begin() + b * r.stride() + (model + 1) * per,
                      one.values.begin() + b * per);
          return metrics::summarise(one, bo.ci, false);
        };
        std::vector<std::vector<metrics::Summary>> per_model;
        for (int m = 0; m < r.models; ++m) per_model.push_back(single(m));
        for (std::size_t l = 0; l < d.labels.size(); ++l)
          for (int m = 0; m < r.models; ++m)
            for (const auto& row : per_model[m])
              if (row.metric == "auroc" && row.label == d.labels[l].name) auroc_rows.push_back(row);
        const std::string svg = roc_svg(bands, d.labels, auroc_rows, model_names, bo.ci, bo.resamples);
        for (const auto& p : o.plots) write_plot(p, svg, rasteriser);
      }
    } else if (spec.family == Family::segmentation) {
      append(run_segmentation(o, spec, bo, problems, model_names));
      report.notes.push_back("per image and class, then the mean over images; background excluded; hd95 in pixels");
    } else {
      ReportData d = load_reports(o, problems);
      model_names = d.model_names;
      if (spec.family == Family::text || spec.family == Family::reports) {
        append(run_text(d, spec, bo));
        report.notes.push_back("BLEU (corpus, pycocoevalcap 'closest') and ROUGE-L (beta 1.2) on coco_tokenize tokens");
      }
      if (spec.family == Family::labeller || spec.family == Family::reports) {
        labeller_name = metrics::ReportLabeller::kName;
        append(run_labeller(d, o, bo));
        report.notes.push_back("chexpert-f1: labels from the " + labeller_name +
                               " (share/cx/labeller), uncertain: " + o.uncertain);
      }
    }

    if (report.paired && model_names.size() == 2)
      report.notes.push_back("A: " + model_names[0] + "   B: " + model_names[1] + "   (A - B on the same resamples)");
    const bool to_terminal = (o.json ? false : (tool.common().output == "-" && ::isatty(STDOUT_FILENO)));
    std::string text;
    if (o.json) text = render_json(report, o, bo, model_names, labeller_name).dump(2) + "\n";
    else if (to_terminal) text = render_terminal(report, bo.ci);
    else text = render_tsv(report);
    cx::cli::OutputFile out(tool.common().output);
    out.write(text);
    out.commit();
    if (problems.skipped) {
      cx::log::warn(std::to_string(problems.skipped) + " input" + (problems.skipped > 1 ? "s" : "") + " skipped");
      return cx::kExitPartial;
    }
    return cx::kExitOk;
  });
}
