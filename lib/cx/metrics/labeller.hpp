#pragma once
// The rule-based CheXpert-style labeller: 14 CheXpert observations from report text with
// documented phrase lists (share/cx/labeller/{mentions,negation,uncertainty}.txt). It follows the
// CheXpert labeller's stages (mention, then classification as uncertain / negative / positive, then
// aggregation) with plain phrase rules in place of dependency parses. It is not CheXbert and
// is never called so.
//  - Text: lowercase; sentences end at . ? ! ; : (a '.' between digits does not end one); words are
//    runs of letters and digits with inner - / ' (and '.' between digits); a comma is its own token.
//  - A mention is classified, in order: uncertain if an override-uncertainty cue is in scope;
//    negative if a negation cue is (and is not part of a pseudo-negation); uncertain if an
//    uncertainty cue is; else positive. Scope: the cue's window (see the files) within the clause,
//    clauses ending at termination words and sentence ends.
//  - A report's label: positive if any mention is positive, else uncertain if any is, else negative
//    if any is, else blank (not mentioned). No Finding: positive when no other label except Support
//    Devices is positive or uncertain, else blank.
#include <cstdint>
#include <string>
#include <vector>

#include "cx/data/labels.hpp"
#include "cx/metrics/bootstrap.hpp"

namespace cx::metrics {

// Labels are values of the one label vocabulary (cx/data/labels.hpp; data::label_cell_text writes
// them in CheXpert's CSV coding), named here for the labeller's callers.
using data::LabelValue;
using data::UncertainPolicy;

// CheXpert's 14 observations in the column order of its train.csv.
const std::vector<std::string>& chexpert_labels();

class ReportLabeller {
 public:
  // Reads mentions.txt, negation.txt and uncertainty.txt from `dir` (errors name file and line).
  static ReportLabeller load(const std::string& dir);
  static ReportLabeller from_text(const std::string& mentions, const std::string& negation,
                                  const std::string& uncertainty);
  static constexpr const char* kName = "rule-based CheXpert-style labeller";

  // One value per chexpert_labels() entry.
  std::vector<LabelValue> label(const std::string& report) const;

  struct Phrase {
    std::vector<std::string> words;  // "..." for a gap; a trailing '*' on a word: prefix match
    int window = -1;
  };

 private:
  struct LabelRules {
    std::vector<Phrase> mentions, blocks;
  };
  std::vector<LabelRules> labels_;  // aligned with chexpert_labels()
  std::vector<Phrase> neg_before_, neg_after_, pseudo_, termination_;
  std::vector<Phrase> unc_override_before_, unc_override_after_, unc_before_, unc_after_;
};

// The labeller's tokens for each sentence of a text (exposed for tests).
std::vector<std::vector<std::string>> labeller_sentences(const std::string& text);

// Per-label F1 (positive class) of predicted against truth values ([record][label]); label "micro"
// appended (F1 of the pooled counts, not in the macro), macro = mean over labels with a defined F1.
// Uncertain under `policy`: ignore (the record is left out for that label when truth or any model's
// prediction is uncertain), ones (positive) or zeros (negative). Blank counts as negative.
Replicates bootstrap_label_f1(const std::vector<std::vector<LabelValue>>& truth,
                              const std::vector<std::vector<std::vector<LabelValue>>>& predicted,  // [model][record][label]
                              const std::vector<std::string>& label_names, UncertainPolicy policy,
                              const BootstrapOptions& options);

}  // namespace cx::metrics
