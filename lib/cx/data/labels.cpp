#include "cx/data/labels.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/paths.hpp"
#include "cx/util/strings.hpp"

namespace cx::data {

LabelValue label_from_code(std::int8_t code) {
  switch (code) {
    case 1: return LabelValue::positive;
    case 0: return LabelValue::negative;
    case -1: return LabelValue::uncertain;
    case kBlankCode: return LabelValue::blank;
    default: break;
  }
  throw Error("internal: label code " + std::to_string(code) + " is not 1, 0, -1 or " + std::to_string(kBlankCode));
}

nlohmann::json label_to_json(LabelValue v) {
  switch (v) {
    case LabelValue::positive: return 1;
    case LabelValue::negative: return 0;
    case LabelValue::uncertain: return -1;
    case LabelValue::blank: break;
  }
  return nullptr;
}

LabelValue label_from_json(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return LabelValue::blank;
  if (j.is_number()) {
    double d = j.get<double>();
    if (d == 1) return LabelValue::positive;
    if (d == 0) return LabelValue::negative;
    if (d == -1) return LabelValue::uncertain;
  }
  throw Error(at(where, "label value " + j.dump() + " is not 1, 0, -1 or null"));
}

std::optional<LabelValue> try_parse_label_cell(std::string_view cell) {
  // The spellings of almost every cell first, without allocating.
  if (cell.empty()) return LabelValue::blank;
  if (cell == "1" || cell == "1.0") return LabelValue::positive;
  if (cell == "0" || cell == "0.0") return LabelValue::negative;
  if (cell == "-1" || cell == "-1.0") return LabelValue::uncertain;
  const std::string t = util::lower(util::trim(cell));
  if (t.empty() || t == "nan" || t == "na" || t == "n/a") return LabelValue::blank;
  // strtod alone would take "inf", hex and leading white space: only a plain decimal is a number here.
  if (t.find_first_not_of("0123456789+-.e") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || errno == ERANGE) return std::nullopt;
  if (v == 1) return LabelValue::positive;
  if (v == 0) return LabelValue::negative;
  if (v == -1) return LabelValue::uncertain;
  return std::nullopt;
}

LabelValue parse_label_cell(std::string_view cell, const std::string& where) {
  if (auto v = try_parse_label_cell(cell)) return *v;
  throw Error(at(where, "label cell '" + std::string(cell) + "' is not 1, 0, -1 (uncertain) or blank"));
}

const char* label_cell_text(LabelValue v) {
  switch (v) {
    case LabelValue::positive: return "1";
    case LabelValue::negative: return "0";
    case LabelValue::uncertain: return "-1";
    case LabelValue::blank: break;
  }
  return "";
}

const char* label_name(LabelValue v) {
  switch (v) {
    case LabelValue::positive: return "positive";
    case LabelValue::negative: return "negative";
    case LabelValue::uncertain: return "uncertain";
    case LabelValue::blank: break;
  }
  return "blank";
}

nlohmann::json label_coding_json() {
  return {{"1", "positive"}, {"0", "negative"}, {"-1", "uncertain"}, {"null", "blank or unmentioned"}};
}

UncertainPolicy parse_uncertain_policy(std::string_view text, std::string_view option) {
  if (text == "ignore") return UncertainPolicy::ignore;
  if (text == "ones") return UncertainPolicy::ones;
  if (text == "zeros") return UncertainPolicy::zeros;
  throw UsageError(std::string(option) + " " + std::string(text) + ": expected ignore, ones or zeros");
}

BlankPolicy parse_blank_policy(std::string_view text, std::string_view option) {
  if (text == "ignore") return BlankPolicy::ignore;
  if (text == "zeros") return BlankPolicy::zeros;
  throw UsageError(std::string(option) + " " + std::string(text) + ": expected ignore or zeros");
}

const char* policy_name(UncertainPolicy p) {
  switch (p) {
    case UncertainPolicy::ones: return "ones";
    case UncertainPolicy::zeros: return "zeros";
    case UncertainPolicy::ignore: break;
  }
  return "ignore";
}

const char* policy_name(BlankPolicy p) { return p == BlankPolicy::zeros ? "zeros" : "ignore"; }

std::optional<bool> binary_target(LabelValue v, const LabelPolicy& policy) {
  switch (v) {
    case LabelValue::positive: return true;
    case LabelValue::negative: return false;
    case LabelValue::uncertain:
      if (policy.uncertain == UncertainPolicy::ones) return true;
      if (policy.uncertain == UncertainPolicy::zeros) return false;
      return std::nullopt;
    case LabelValue::blank: break;
  }
  if (policy.blank == BlankPolicy::zeros) return false;
  return std::nullopt;
}

int LabelSet::index(std::string_view cls) const {
  for (std::size_t i = 0; i < classes.size(); ++i)
    if (classes[i] == cls) return static_cast<int>(i);
  return -1;
}

LabelSet parse_label_set(const std::string& text, const std::string& name) {
  LabelSet set;
  set.name = name;
  std::istringstream in(text);
  std::string line;
  std::set<std::string> seen;
  while (std::getline(in, line)) {
    if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
    line = util::trim(line);
    if (line.empty()) continue;
    if (!seen.insert(line).second) throw Error(at(name, "class '" + line + "' listed twice"));
    set.classes.push_back(line);
  }
  if (set.classes.empty()) throw Error(at(name, "label set has no classes"));
  return set;
}

LabelSet load_label_set(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name.find('.') != std::string::npos)
    throw Error("label set '" + name + "': not a label-set name (expected e.g. chexpert14, nih14)");
  std::string path = share_file("labels/" + name + ".txt");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(at(path, "cannot open"));
  std::ostringstream ss;
  ss << f.rdbuf();
  LabelSet set = parse_label_set(ss.str(), path);
  set.name = name;
  return set;
}

nlohmann::json labels_json(const LabelSet& set, const std::vector<LabelValue>& values) {
  if (values.size() != set.classes.size())
    throw Error(at(set.name, "internal: " + std::to_string(values.size()) + " values for " +
                                 std::to_string(set.classes.size()) + " classes"));
  nlohmann::json j = nlohmann::json::object();
  for (std::size_t i = 0; i < values.size(); ++i) j[set.classes[i]] = label_to_json(values[i]);
  return j;
}

}  // namespace cx::data
