#pragma once
// Training data for heads, read once into memory: a whole embedding stream's chosen feature as one
// [N, F] float32 tensor (mini-batches are then rows picked by index, so a probe trains at memory
// bandwidth), the records' labels as an [N, L] matrix in the stream coding, and the CheXpert label
// policies that turn that coding into targets and a loss mask:
//   uncertain (-1):  ignore (U-Ignore: masked out of the loss), ones (U-Ones: 1), zeros (U-Zeros: 0)
//   blank (null or absent): ignore (masked), zeros (0: "not mentioned" read as negative)
// Positive (1) and negative (0) cells are always used as they are.
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/labels.hpp"
#include "cx/data/record_source.hpp"
#include "cx/io/stream.hpp"

namespace cx::train {

// The label vocabulary (values, codes, policies and their option text) is data's
// (cx/data/labels.hpp); these names are its, declared here for train's callers.
using data::BlankPolicy;
using data::kBlankCode;
using data::LabelPolicy;
using data::parse_blank_policy;
using data::parse_uncertain_policy;
using data::policy_name;
using data::UncertainPolicy;

// One cell under a policy (data::binary_target): the target (0 or 1) and whether it enters the loss.
struct Target {
  float value = 0.0f;
  bool used = false;
};
Target apply_policy(data::LabelValue value, const LabelPolicy& policy);

// The label set of a run: a comma-separated list, else a preset (share/cx/labels/<name>.txt),
// else every label the stream header declares (`labels`). Both given is a usage error; none and a
// header without labels is an error naming `where`.
std::vector<std::string> choose_labels(const nlohmann::json& header, const std::string& list, const std::string& preset,
                                       const std::string& where);

// A record's values for `labels`, from `labels` in its .json (a missing field, object or key:
// blank). Values outside the coding throw cx::Error naming the record.
std::vector<data::LabelValue> record_labels(const io::Record& record, const std::vector<std::string>& labels);

struct FeatureSet {
  std::vector<std::string> keys;
  torch::Tensor x;      // [N, F] float32, contiguous
  torch::Tensor truth;  // [N, L] int8 label codes (data::label_code): 1, 0, -1, kBlankCode blank
  nlohmann::json header;  // the stream's header (its "model" names the encoder)
  std::int64_t rows() const { return x.defined() ? x.size(0) : 0; }
};

// Reads every record's `<field>.npy` (f32 or f16, shape [F]) and labels. A record without the field,
// or with a different F, throws cx::Error naming the record. An empty stream is an error too.
FeatureSet load_features(data::RecordSource& source, const std::string& field, const std::vector<std::string>& labels,
                         const std::string& where);

// Targets and mask of a truth matrix under a policy: y and mask float32 [N, L], mask 1 where used.
void make_targets(const torch::Tensor& truth, const LabelPolicy& policy, torch::Tensor& y, torch::Tensor& mask);

}  // namespace cx::train
