#include "cx/data/labels.hpp"

#include <fstream>
#include <set>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/paths.hpp"

namespace cx::data {

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

LabelValue parse_label_cell(std::string_view cell, const std::string& where) {
  while (!cell.empty() && (cell.front() == ' ' || cell.front() == '\t')) cell.remove_prefix(1);
  while (!cell.empty() && (cell.back() == ' ' || cell.back() == '\t' || cell.back() == '\r')) cell.remove_suffix(1);
  if (cell.empty()) return LabelValue::blank;
  if (cell == "1" || cell == "1.0") return LabelValue::positive;
  if (cell == "0" || cell == "0.0" || cell == "-0.0") return LabelValue::negative;
  if (cell == "-1" || cell == "-1.0") return LabelValue::uncertain;
  throw Error(at(where, "label cell '" + std::string(cell) + "' is not 1.0, 0.0, -1.0 or blank"));
}

nlohmann::json label_coding_json() {
  return {{"1", "positive"}, {"0", "negative"}, {"-1", "uncertain"}, {"null", "blank or unmentioned"}};
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
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) line.pop_back();
    std::size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos) continue;
    line.erase(0, b);
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
