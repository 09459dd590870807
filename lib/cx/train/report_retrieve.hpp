#pragma once
// The nearest-neighbour retrieval baseline of report generation (cx-report retrieve): a query record
// gets the report of the training record whose embedding is closest by cosine similarity.
//   embedding  cls.npy when the training records have it ("cls"), else the mean of patch.npy over the
//              grid ("patch_mean"); float32 [D], L2-normalised (a zero vector stays zero). Every
//              training record and every query must have the index's feature.
//   search     exact: each similarity a dot product summed in float64 in one fixed order, so the
//              result does not depend on the thread count; ties go to the lower training index.
//              Queries are answered one at a time from the index alone (memory does not grow with
//              the number of queries).
// An index folder (written atomically):
//   retrieval.json          format "cx-report-retrieval" 1.0: feature, dim, records, the encoder of
//                           the embeddings ({"id", "sha256"}), the files below
//   reports.jsonl           one {"key": ..., "text": ...} per training record, in index order
//   embeddings.safetensors  "embeddings" [records, dim] float32, the normalised embeddings
// Errors name the folder or file and the problem (missing file, another format, counts or shapes
// that disagree with retrieval.json).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/record_source.hpp"
#include "cx/io/stream.hpp"

namespace cx::train {

struct RetrievalIndex {
  std::string feature = "cls";  // "cls" | "patch_mean"
  std::int64_t dim = 0;
  std::vector<std::string> keys, texts;
  torch::Tensor embeddings;  // [N, dim] float32, contiguous, rows L2-normalised
  nlohmann::json encoder = nlohmann::json::object();
  std::int64_t size() const { return static_cast<std::int64_t>(keys.size()); }
};

// "cls" when the record has cls.npy, else "patch_mean" when it has patch.npy; else cx::Error naming `where`.
std::string retrieval_feature_of(const io::Record& record, const std::string& where);
// The record's embedding for `feature`, float32 [D], L2-normalised. Errors name `where`.
torch::Tensor retrieval_embedding(const io::Record& record, const std::string& feature, const std::string& where);

// Every record of `source` with its report: the .txt field as it is, or with `section` given its
// report_section (findings, impression or both). The feature is the first record's; the header's
// "model" is the encoder. Errors name `where` and the record (a record without .txt is one); an
// empty source is an error.
RetrievalIndex build_retrieval_index(data::RecordSource& source, const std::string& where, const std::string& section = "");

struct Neighbour {
  std::int64_t index = -1;  // into the index's keys and texts
  double similarity = 0;    // cosine
};
// The nearest training report to a normalised query embedding [dim].
Neighbour nearest(const RetrievalIndex& index, const torch::Tensor& query);
// The same for a query record (its embedding of the index's feature).
Neighbour nearest_report(const RetrievalIndex& index, const io::Record& record, const std::string& where);

void write_retrieval_index(const std::string& folder, const RetrievalIndex& index);
RetrievalIndex load_retrieval_index(const std::string& folder);

}  // namespace cx::train
