#pragma once
// The label coding every cx stream uses, documented once (man 1 cx-ingest, LABEL CODING):
//   1 positive, 0 negative, -1 uncertain (the radiologist or the labeler hedged), and
//   null blank/unmentioned (the report says nothing about the class).
// A record's `labels` is a JSON object with one key per class of the stream's label set (listed,
// in order, by the header's `labels`); writers put every class in, with null for blank. Readers treat
// a missing key exactly like null, so open-vocabulary sets (PadChest) list only what was mentioned.
// Label sets are share/cx/labels/<name>.txt: one class name per line, '#' comments.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cx::data {

enum class LabelValue : std::int8_t { uncertain = -1, negative = 0, positive = 1, blank = 2 };

// 1 / 0 / -1, or null for blank.
nlohmann::json label_to_json(LabelValue v);
// Inverse of label_to_json; a missing value is passed as null. Throws cx::Error naming `where`.
LabelValue label_from_json(const nlohmann::json& j, const std::string& where);
// A CSV cell as CheXpert and MIMIC-CXR write them: "1.0" "0.0" "-1.0" (or "1" "0" "-1"), ""
// blank. Anything else throws cx::Error naming `where`.
LabelValue parse_label_cell(std::string_view cell, const std::string& where);

// The coding in words, for the stream header: {"1":"positive","0":"negative",...}.
nlohmann::json label_coding_json();

struct LabelSet {
  std::string name;
  std::vector<std::string> classes;
  // Position of a class, or -1.
  int index(std::string_view cls) const;
};

// Parses the text of a label-set file; throws on an empty set or a repeated class.
LabelSet parse_label_set(const std::string& text, const std::string& name);
// Loads share/cx/labels/<name>.txt (chexpert14, chexpert5, nih14, nih8, vindr, rsna).
LabelSet load_label_set(const std::string& name);

// {"Atelectasis": 1, "Cardiomegaly": null, ...}: values.size() must equal classes.size().
nlohmann::json labels_json(const LabelSet& set, const std::vector<LabelValue>& values);

}  // namespace cx::data
