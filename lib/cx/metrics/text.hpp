#pragma once
// Report-generation metrics as the COCO caption evaluation (pycocoevalcap) computes them.
//  - Tokenisation (coco_tokenize), an approximation of pycocoevalcap's PTBTokenizer pass: lowercase
//    (ASCII); ( ) [ ] { } " ` ; ? ! are separators; , and : separate unless between two digits
//    ("1,000", "10:30" stay); . and - separate unless between two letters or digits ("2.5", "e.g",
//    "x-ray" stay); '/' stays inside a token ("and/or"); contractions split as PTB does ("don't" ->
//    "do" "n't", "heart's" -> "heart" "'s"); other apostrophes at a token's edge are dropped; the
//    punctuation tokens pycocoevalcap removes never appear.
//  - BLEU-1..4, corpus level, as pycocoevalcap's BleuScorer with option "closest": n-gram counts
//    clipped by the maximum count over the references, the reference length closest to the
//    hypothesis length (the shorter one on a tie), brevity penalty exp(1 - r/c) when c < r, and the
//    same tiny/small constants (1e-15, 1e-9), so a zero n-gram precision gives ~0 rather than 0.
//  - ROUGE-L per record as pycocoevalcap's Rouge: LCS over tokens, P and R maximised separately over
//    the references, F = (1 + b^2) P R / (R + b^2 P) with b = 1.2 (0 when P or R is 0); the corpus
//    score is the mean over records.
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "cx/metrics/bootstrap.hpp"

namespace cx::metrics {

std::vector<std::string> coco_tokenize(const std::string& text);

// One hypothesis against its references, already tokenised.
struct BleuStats {
  double testlen = 0, reflen = 0;
  std::array<double, 4> guess{}, correct{};
};
BleuStats bleu_stats(const std::vector<std::string>& hypothesis, const std::vector<std::vector<std::string>>& references);
// BLEU-1..4 from summed statistics.
std::array<double, 4> bleu_from_stats(const BleuStats& total);

double rouge_l(const std::vector<std::string>& hypothesis, const std::vector<std::vector<std::string>>& references,
               double beta = 1.2);

// bleu-1..bleu-4 and/or rouge-l over the records, bootstrapped (label "corpus").
Replicates bootstrap_text_metrics(const std::vector<std::vector<std::vector<std::string>>>& hyp_tokens,  // [model][record]
                                  const std::vector<std::vector<std::vector<std::string>>>& ref_tokens,  // [record][ref]
                                  bool want_bleu, bool want_rouge, const BootstrapOptions& options);

}  // namespace cx::metrics
