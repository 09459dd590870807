#include "cx/eval/masks.hpp"

#include <algorithm>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/names.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/png.hpp"
#include "cx/io/stream.hpp"
#include "cx/metrics/segmentation.hpp"
#include "cx/util/strings.hpp"

namespace fs = std::filesystem;

namespace cx::eval {

namespace {

std::vector<std::string> classes_from_json(const nlohmann::json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& c : j)
      if (c.is_string()) out.push_back(c.get<std::string>());
  return out;
}

MaskSet read_mask_folder(const std::string& input) {
  MaskSet s;
  s.source = input;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(input))
    if (e.is_regular_file() && util::ends_with_ci(e.path().filename().string(), ".png")) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    const std::string name = f.filename().string();
    const std::string key = name.substr(0, name.find('.'));
    if (s.path.count(key)) throw Error(at(s.source, "two files with key '" + key + "'"));
    s.keys.push_back(key);
    s.path[key] = f.string();
  }
  if (s.keys.empty()) throw Error(at(s.source, "no .png label maps in the folder"));
  return s;
}

}  // namespace

MaskSet read_masks(const std::string& input) {
  if (input != "-" && fs::is_directory(input)) return read_mask_folder(input);
  MaskSet s;
  s.source = cli::input_name(input);
  auto reader = io::StreamReader::open(input);
  const auto& h = reader->header();
  if (h.contains("classes")) s.classes = classes_from_json(h["classes"]);
  if (s.classes.empty() && h.contains("fields") && h["fields"].is_object() && h["fields"].contains("mask.png") &&
      h["fields"]["mask.png"].is_object() && h["fields"]["mask.png"].contains("classes"))
    s.classes = classes_from_json(h["fields"]["mask.png"]["classes"]);
  io::Record rec;
  while (reader->next(rec)) {
    const auto* mask = rec.find("mask.png");
    if (!mask) continue;  // records without a mask are not scored (named if the other side has one)
    if (s.classes.empty()) {
      if (const auto* js = rec.find("json")) {
        try {
          auto j = nlohmann::json::parse(js->data);
          if (j.is_object() && j.contains("classes")) s.classes = classes_from_json(j["classes"]);
        } catch (const nlohmann::json::exception&) {
          throw Error(at(s.source, rec.key + ".json: not valid JSON"));
        }
      }
    }
    if (s.png.count(rec.key)) throw Error(at(s.source, "key '" + rec.key + "' appears twice"));
    s.keys.push_back(rec.key);
    s.png[rec.key] = mask->data;
  }
  return s;
}

LabelMap load_mask(const MaskSet& s, const std::string& key, int binarize) {
  Image im;
  std::string where;
  if (!s.path.empty()) {
    where = s.path.at(key);
    im = io::decode_png(io::read_file_bytes(where), where);
  } else {
    where = at(s.source, key + ".mask.png");
    im = io::decode_png(s.png.at(key), where);
  }
  if (im.channels != 1) throw Error(at(where, "a label map must be a gray PNG, not RGB"));
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

std::vector<std::string> common_keys(const MaskSet& truth, const std::vector<MaskSet>& preds, cli::BadInputs& bad) {
  const std::set<std::string> truth_keys(truth.keys.begin(), truth.keys.end());
  for (const auto& p : preds) {
    std::vector<std::string> only_truth, only_pred;
    for (const auto& k : truth.keys)
      if (!p.has(k)) only_truth.push_back(k);
    for (const auto& k : p.keys)
      if (!truth_keys.count(k)) only_pred.push_back(k);
    report_unmatched_keys(only_truth, p.source, truth.source, bad);
    report_unmatched_keys(only_pred, truth.source, p.source, bad);
  }
  std::vector<std::string> keys;
  for (const auto& k : truth.keys)
    if (std::all_of(preds.begin(), preds.end(), [&](const MaskSet& p) { return p.has(k); })) keys.push_back(k);
  return keys;
}

std::vector<std::string> scored_classes(std::vector<std::string> names) {
  if (!names.empty() && util::lower(names[0]) == "background") names.erase(names.begin());
  return names;
}

ClassGroups group_classes(const std::vector<std::string>& names, const std::vector<std::string>& groups) {
  ClassGroups out;
  out.names = names;
  out.values_known = names.size();
  if (groups.empty()) return out;
  std::vector<int> group_of(names.size() + 1, -1);
  std::vector<std::string> group_names;
  for (const auto& g : groups) {
    const auto eq = g.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == g.size()) throw UsageError("--group " + g + ": expected NAME=V,V,...");
    const int gi = static_cast<int>(group_names.size());
    group_names.push_back(g.substr(0, eq));
    for (const auto& v : util::split_list(g.substr(eq + 1))) {
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
  out.lut.assign(names.size() + 1, 0);
  out.names.clear();
  std::vector<int> group_index(group_names.size(), 0);
  for (std::size_t v = 1; v <= names.size(); ++v) {
    const int g = group_of[v];
    if (g < 0) {
      out.names.push_back(names[v - 1]);
      out.lut[v] = static_cast<std::uint16_t>(out.names.size());
    } else {
      const auto gs = static_cast<std::size_t>(g);
      if (group_index[gs] == 0) {
        out.names.push_back(group_names[gs]);
        group_index[gs] = static_cast<int>(out.names.size());
      }
      out.lut[v] = static_cast<std::uint16_t>(group_index[gs]);
    }
  }
  return out;
}

void ClassGroups::apply(LabelMap& m, const std::string& where) const {
  if (lut.empty()) return;
  for (auto& x : m.v) {
    if (x > values_known)
      throw Error(at(where, "value " + std::to_string(x) + " is outside the classes 0.." + std::to_string(values_known)));
    x = lut[x];
  }
}

metrics::Replicates score_masks(const MaskSet& truth, const std::vector<MaskSet>& preds, const MaskOptions& o,
                                const metrics::BootstrapOptions& bootstrap, cli::BadInputs& bad) {
  std::vector<std::string> names;
  if (!o.classes.empty()) names = o.classes;
  else if (o.binarize >= 0) names = {"foreground"};
  else if (!truth.classes.empty()) names = truth.classes;
  else if (!preds.empty() && !preds[0].classes.empty()) names = preds[0].classes;
  names = scored_classes(names);

  const std::vector<std::string> keys = common_keys(truth, preds, bad);

  // Without class names, the classes are the values 1..max found in any map.
  if (names.empty()) {
    int max_value = 0;
    for (const auto& k : keys) {
      for (auto x : load_mask(truth, k, o.binarize).v) max_value = std::max<int>(max_value, x);
      for (const auto& p : preds)
        for (auto x : load_mask(p, k, o.binarize).v) max_value = std::max<int>(max_value, x);
    }
    for (int c = 1; c <= max_value; ++c) names.push_back("class " + std::to_string(c));
    if (names.empty()) throw Error(at(truth.source, "no class names and no foreground in any mask"));
    log::info("no class names in the inputs: scoring values 1.." + std::to_string(max_value) + " (--classes names them)");
  }
  const ClassGroups groups = group_classes(names, o.groups);

  const int C = static_cast<int>(groups.names.size());
  std::vector<std::vector<double>> values(preds.size());
  std::size_t used = 0;
  for (const auto& k : keys) {
    const std::string truth_where = at(truth.source, "key '" + k + "'");
    LabelMap t = load_mask(truth, k, o.binarize);
    groups.apply(t, truth_where);
    std::vector<std::vector<double>> per_model;
    bool ok = true;
    for (const auto& p : preds) {
      LabelMap q = load_mask(p, k, o.binarize);
      groups.apply(q, at(p.source, "key '" + k + "'"));
      if (q.width != t.width || q.height != t.height) {
        bad.report(p.source, "key '" + k + "': mask is " + std::to_string(q.width) + "x" + std::to_string(q.height) +
                                 ", the truth is " + std::to_string(t.width) + "x" + std::to_string(t.height));
        ok = false;
        break;
      }
      per_model.push_back(metrics::score_label_maps(t.v.data(), q.v.data(), t.width, t.height, C, o.metrics, truth_where));
    }
    if (!ok) continue;
    ++used;
    // score_label_maps gives [metric][class]: the bootstrap's layout for one record.
    for (std::size_t m = 0; m < preds.size(); ++m) values[m].insert(values[m].end(), per_model[m].begin(), per_model[m].end());
  }
  if (used == 0) throw Error(at(truth.source, "no mask pairs to score"));
  return metrics::bootstrap_record_means(o.metrics, groups.names, "mean", values, used, bootstrap);
}

metrics::Replicates load_and_score_masks(const Roles& roles, const MaskOptions& options,
                                         const metrics::BootstrapOptions& bootstrap, cli::BadInputs& bad) {
  const MaskSet truth = read_masks(roles.truth);
  std::vector<MaskSet> preds;
  for (const auto& p : roles.predictions) preds.push_back(read_masks(p));
  return score_masks(truth, preds, options, bootstrap, bad);
}

}  // namespace cx::eval
