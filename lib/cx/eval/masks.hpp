#pragma once
// cx-eval's masks: label maps (gray PNG, value v = class v, 0 background) from a record stream
// (field mask.png) or a folder of PNG files (key = file name up to its first '.'), joined on the key
// in truth order, and scored per image and class (metrics::score_label_maps), then bootstrapped over
// images. Class names: --classes, else the truth's (stream header "classes", the mask.png field's
// "classes", or a record's json), else the prediction's; a list that starts with "background" names
// value 0 first. Without names the classes are 1..the largest value found.
// --group NAME=V,V,...: those values become one class NAME, in the place of its first member; the
// other classes keep their order; a stored value beyond the classes is then an error.
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "cx/cli/bad_inputs.hpp"
#include "cx/eval/inputs.hpp"
#include "cx/metrics/bootstrap.hpp"

namespace cx::eval {

struct MaskSet {
  std::string source;                                 // as messages name it
  std::vector<std::string> keys;                      // in input order
  std::unordered_map<std::string, std::string> png;   // key -> PNG bytes (streams)
  std::unordered_map<std::string, std::string> path;  // key -> file (folders)
  std::vector<std::string> classes;                   // as found, may be empty
  bool has(const std::string& key) const { return png.count(key) || path.count(key); }
};

// A stream (or "-") or a folder of PNG files. A key twice is an error.
MaskSet read_masks(const std::string& input);

struct LabelMap {
  int width = 0, height = 0;
  std::vector<std::uint16_t> v;
};
// binarize >= 1: values >= binarize are 1, others 0.
LabelMap load_mask(const MaskSet& set, const std::string& key, int binarize = -1);

// Keys of the truth, in its order, present in every prediction set; keys on one side only are bad
// inputs (report_unmatched_keys).
std::vector<std::string> common_keys(const MaskSet& truth, const std::vector<MaskSet>& predictions,
                                     cli::BadInputs& bad);

// Names of the scored values 1, 2, ...: a leading "background" (any case) dropped.
std::vector<std::string> scored_classes(std::vector<std::string> names);

// The classes after --group, and the map from a stored value to its scored one (empty: identity).
struct ClassGroups {
  std::vector<std::string> names;  // of scored values 1..names.size()
  std::vector<std::uint16_t> lut;  // stored value v (0..values_known) -> scored value
  std::size_t values_known = 0;
  // Maps every value of m; a value beyond values_known throws cx::Error at `where`.
  void apply(LabelMap& m, const std::string& where) const;
};
// `groups` as given to --group; a malformed one, a value outside 1..names.size() or in two groups
// throws cx::UsageError.
ClassGroups group_classes(const std::vector<std::string>& names, const std::vector<std::string>& groups);

struct MaskOptions {
  std::vector<std::string> metrics;  // dice, iou, hd95
  std::vector<std::string> classes;  // --classes
  int binarize = -1;
  std::vector<std::string> groups;   // --group
};

// Scores every joined pair and bootstraps the per-image means (bootstrap_record_means, row "mean").
// A prediction of another size than its truth is a bad input.
metrics::Replicates score_masks(const MaskSet& truth, const std::vector<MaskSet>& predictions,
                                const MaskOptions& options, const metrics::BootstrapOptions& bootstrap,
                                cli::BadInputs& bad);
// Reads the masks the roles name, then score_masks.
metrics::Replicates load_and_score_masks(const Roles& roles, const MaskOptions& options,
                                         const metrics::BootstrapOptions& bootstrap, cli::BadInputs& bad);

}  // namespace cx::eval
