#pragma once
// What cx-report does around its two decoders, in one place for both:
//  - training targets: the records of a ReportSet whose report has the chosen section, tokenised
//    (records without it are dropped and counted), and the corpus lines a tokenizer trains on;
//  - generation: a stream read in batches (memory does not grow with the number of records), each
//    batch's memories handed to the decoder, the reports passed on in record order.
// ReportWriter is the decoder side: the small decoder (decoder.json) or LLaVA (llava.json).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/record_source.hpp"
#include "cx/model/generate.hpp"
#include "cx/text/tokenizer.hpp"
#include "cx/train/report_decoder.hpp"
#include "cx/train/report_retrieve.hpp"

namespace cx::train {

// Keeps the records whose report (texts) has `section` (text::report_section), filling their ids
// (no BOS/EOS); warns (named by `where`) about the records left out and returns how many; a set where
// no record has the section is an error.
std::int64_t keep_report_targets(ReportSet& set, const text::Tokenizer& tokenizer, const std::string& section,
                                 const std::string& where);

// load_report_set + keep_report_targets.
ReportSet load_report_targets(data::RecordSource& source, const MemoryOptions& options, const text::Tokenizer& tokenizer,
                              const std::string& section, const std::string& where, const MemoryLayout* layout = nullptr);

// The corpus lines (text::corpus_lines) of the set's reports restricted to `section`.
std::vector<std::string> report_corpus(const ReportSet& set, const std::string& section);

// The validation stream at `path` as load_report_targets reads it, in the training set's memory
// layout; its encoder must be the training streams' (check_same_encoder).
ReportSet load_validation_targets(const std::string& path, const MemoryOptions& options, const text::Tokenizer& tokenizer,
                                  const std::string& section, const ReportSet& train);

// The small decoder's tokenizer: the folder (or tokenizer.model) given, or, when `given` is empty, a
// `vocab`-piece one trained on the training set's `section` (report_corpus) in a hidden folder
// beside `out`, removed with this object. copy_into puts its files into a decoder folder.
class DecoderTokenizer {
 public:
  DecoderTokenizer(const std::string& given, const ReportSet& train, const std::string& section, int vocab, std::uint64_t seed,
                   const std::string& out, const std::string& where);
  ~DecoderTokenizer();
  DecoderTokenizer(const DecoderTokenizer&) = delete;
  DecoderTokenizer& operator=(const DecoderTokenizer&) = delete;
  const std::string& path() const { return path_; }
  void copy_into(const std::string& folder) const;

 private:
  std::string path_, trained_;
};

// The reference reports of a stream: sink(key, section text) for each record whose .txt has
// `section`; returns {written, left out}.
std::pair<std::int64_t, std::int64_t> for_each_reference(data::RecordSource& source, const std::string& section,
                                                         const std::function<void(const std::string& key, const std::string& report)>& sink);

class ReportWriter {
 public:
  virtual ~ReportWriter() = default;
  // The memory of a record as this decoder reads it; records of one batch share a layout.
  virtual MemoryLayout layout_of(const io::Record& record, const std::string& where) const = 0;
  // The encoder the decoder was trained on ({"id", "sha256"}); null when its training streams named
  // none (then there is nothing to check).
  virtual nlohmann::json encoder() const = 0;
  // Reports for memories [B, S, D].
  virtual std::vector<std::string> write(const torch::Tensor& memory, const model::SearchOptions& search) = 0;
};

// The decoder folder of cx-report train: llava.json (LLaVA) or decoder.json (the small decoder).
std::unique_ptr<ReportWriter> load_report_writer(const std::string& folder, const torch::Device& device);

// Reads `source` in batches of `batch` records (a batch also ends where the memory layout changes),
// checks the stream's encoder against the writer's first (unless ignore_encoder or unknown), and calls
// sink(key, report) in record order. Returns the number of reports.
std::int64_t generate_reports(data::RecordSource& source, ReportWriter& writer, std::int64_t batch,
                              const model::SearchOptions& search, const std::string& where, bool ignore_encoder,
                              const std::function<void(const std::string& key, const std::string& report)>& sink);

// The retrieval baseline over `source`: sink(key, the nearest training report) in record order,
// after checking the stream's encoder against the index's (unless ignore_encoder). Returns the count.
std::int64_t retrieve_reports(data::RecordSource& source, const RetrievalIndex& index, const std::string& where, bool ignore_encoder,
                              const std::function<void(const std::string& key, const std::string& report)>& sink);

}  // namespace cx::train
