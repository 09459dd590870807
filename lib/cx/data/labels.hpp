#pragma once
// The label vocabulary of cx, in one place: a label's value, how it is written (stream JSON, table
// cells, the int8 code of truth matrices), the CheXpert policies that turn it into a binary target,
// and label sets.
//
// The coding every cx stream uses, documented once (man 1 cx-ingest, LABEL CODING; man 5 cx-stream):
//   1 positive, 0 negative, -1 uncertain (the radiologist or the labeler hedged), and
//   null blank/unmentioned (the report says nothing about the class).
// A record's `labels` is a JSON object with one key per class of the stream's label set (listed,
// in order, by the header's `labels`); writers put every class in, with null for blank. Readers treat
// a missing key exactly like null, so open-vocabulary sets (PadChest) list only what was mentioned.
// Tables (label files, cx-classify's truth columns, cx-eval's --labels-out) write 1, 0, -1 and an
// empty cell for blank. In memory a value is its int8 code: 1, 0, -1, and kBlankCode (2) for blank.
// Label sets are share/cx/labels/<name>.txt: one class name per line, '#' comments.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cx::data {

enum class LabelValue : std::int8_t { uncertain = -1, negative = 0, positive = 1, blank = 2 };

// The int8 code of a value (truth matrices, tensors): the enum's own number, blank = kBlankCode.
inline constexpr std::int8_t kBlankCode = 2;
constexpr std::int8_t label_code(LabelValue v) { return static_cast<std::int8_t>(v); }
// Inverse of label_code; a code outside 1, 0, -1, 2 throws cx::Error (internal: codes are ours).
LabelValue label_from_code(std::int8_t code);

// 1 / 0 / -1, or null for blank.
nlohmann::json label_to_json(LabelValue v);
// Inverse of label_to_json (a number equal to 1, 0 or -1, or null); a missing value is passed as
// null. Anything else throws cx::Error naming `where`.
LabelValue label_from_json(const nlohmann::json& j, const std::string& where);

// A table cell, in every coding the label files and tables use: CheXpert and MIMIC-CXR write
// "1.0" "0.0" "-1.0" and "" for blank; cx's own tables "1" "0" "-1" and "". Accepted: surrounding
// white space; any decimal spelling of 1, 0 or -1 ("1", "1.0", "+1", "-0.0", "1e0"); blank as an
// empty cell or NaN, NA, N/A (any case: pandas and R write those). nullopt for anything else.
std::optional<LabelValue> try_parse_label_cell(std::string_view cell);
// As try_parse_label_cell; anything else throws cx::Error naming `where` and the cell.
LabelValue parse_label_cell(std::string_view cell, const std::string& where);
// The cell a table writes: "1", "0", "-1", or "" for blank.
const char* label_cell_text(LabelValue v);
// "positive", "negative", "uncertain", "blank" (messages and summaries).
const char* label_name(LabelValue v);

// The coding in words, for the stream header: {"1":"positive","0":"negative",...}.
nlohmann::json label_coding_json();

// How an uncertain (-1) value becomes a binary target: ignore (U-Ignore: left out), ones (U-Ones:
// positive) or zeros (U-Zeros: negative). How a blank one does: ignore (left out) or zeros (blank
// read as "not mentioned", negative). Positive and negative values are always used as they are.
enum class UncertainPolicy { ignore, ones, zeros };
enum class BlankPolicy { ignore, zeros };

struct LabelPolicy {
  UncertainPolicy uncertain = UncertainPolicy::ignore;
  BlankPolicy blank = BlankPolicy::zeros;
};

// Option text: "ignore" | "ones" | "zeros", and "ignore" | "zeros". Anything else throws
// cx::UsageError naming the option and the allowed values ("--uncertain maybe: expected ignore,
// ones or zeros").
UncertainPolicy parse_uncertain_policy(std::string_view text, std::string_view option = "--uncertain");
BlankPolicy parse_blank_policy(std::string_view text, std::string_view option = "--blank");
// The option text of a policy (the inverse of the parsers).
const char* policy_name(UncertainPolicy p);
const char* policy_name(BlankPolicy p);

// A value under a policy: true (positive) or false (negative), or nullopt when the policy leaves it
// out (the record does not count for that label).
std::optional<bool> binary_target(LabelValue v, const LabelPolicy& policy);

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
