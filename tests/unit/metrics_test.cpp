// lib/cx/metrics against independent references: scikit-learn (AUROC, AP, ROC curve), numpy
// (percentiles), medpy's hd95 algorithm in scipy, NLTK's corpus_bleu, all written by
// tests/make_eval_goldens.py into tests/data/eval; hand-worked ROUGE-L and Dice; the bootstrap's
// counting shortcut against explicit resampling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/paths.hpp"
#include "cx/metrics/bootstrap.hpp"
#include "cx/metrics/classification.hpp"
#include "cx/metrics/labeller.hpp"
#include "cx/metrics/text.hpp"
#include "cx/metrics/segmentation.hpp"
#include "cx/random/rng.hpp"

using namespace cx::metrics;
using nlohmann::json;

namespace {

json golden(const std::string& name) {
  // UPDATE_GOLDEN=1 regenerates the references first (once per run), never by hand.
  static const bool regenerated = [] {
    const char* update = std::getenv("UPDATE_GOLDEN");
    if (!update || std::string(update) != "1") return false;
    const std::string cmd = std::string("/usr/bin/python3 ") + CX_TEST_DATA_DIR + "/../make_eval_goldens.py";
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
    return true;
  }();
  (void)regenerated;
  std::ifstream f(std::string(CX_TEST_DATA_DIR) + "/eval/" + name);
  if (!f) throw std::runtime_error("missing golden " + name + ": run /usr/bin/python3 tests/make_eval_goldens.py");
  std::stringstream s;
  s << f.rdbuf();
  return json::parse(s.str());
}

std::vector<std::uint8_t> as_truth(const json& j) {
  std::vector<std::uint8_t> v;
  for (const auto& x : j) v.push_back(static_cast<std::uint8_t>(x.get<int>()));
  return v;
}

// sklearn sums floating-point trapezoids; ours is an exact integer count divided once. They agree to
// a few ulps: 1e-12 leaves room for that rounding and nothing else.
constexpr double kSklearnTol = 1e-12;

double kNaN() { return std::numeric_limits<double>::quiet_NaN(); }

}  // namespace

TEST(Classification, AurocAndAveragePrecisionMatchScikitLearn) {
  for (const auto& c : golden("classification.json")) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto scores = c["scores"].get<std::vector<double>>();
    auto truth = as_truth(c["truth"]);
    EXPECT_NEAR(auroc(scores, truth), c["auroc"].get<double>(), kSklearnTol);
    EXPECT_NEAR(average_precision(scores, truth), c["average_precision"].get<double>(), kSklearnTol);
  }
}

TEST(Classification, RocCurveMatchesScikitLearnWithoutDroppingPoints) {
  for (const auto& c : golden("classification.json")) {
    SCOPED_TRACE(c["name"].get<std::string>());
    RocCurve r = roc_curve(c["scores"].get<std::vector<double>>(), as_truth(c["truth"]));
    auto fpr = c["roc_fpr"].get<std::vector<double>>();
    auto tpr = c["roc_tpr"].get<std::vector<double>>();
    auto thr = c["roc_thresholds"].get<std::vector<double>>();
    ASSERT_EQ(r.fpr.size(), fpr.size());
    EXPECT_TRUE(std::isinf(r.thresholds[0]));
    for (std::size_t i = 0; i < fpr.size(); ++i) {
      EXPECT_DOUBLE_EQ(r.fpr[i], fpr[i]) << i;
      EXPECT_DOUBLE_EQ(r.tpr[i], tpr[i]) << i;
      if (i) {
        EXPECT_EQ(r.thresholds[i], thr[i - 1]) << i;
      }
    }
  }
}

TEST(Classification, ThresholdMetricsAndYoudenMatchNumpy) {
  for (const auto& c : golden("classification.json")) {
    SCOPED_TRACE(c["name"].get<std::string>());
    auto scores = c["scores"].get<std::vector<double>>();
    auto truth = as_truth(c["truth"]);
    Confusion k = confusion_at(scores, truth, 0.5);
    EXPECT_EQ(k.tp, c["confusion_at_0_5"]["tp"].get<int>());
    EXPECT_EQ(k.fp, c["confusion_at_0_5"]["fp"].get<int>());
    EXPECT_EQ(k.tn, c["confusion_at_0_5"]["tn"].get<int>());
    EXPECT_EQ(k.fn, c["confusion_at_0_5"]["fn"].get<int>());
    const double t = youden_threshold(scores, truth);
    if (c["youden_threshold"].is_null()) {
      EXPECT_TRUE(std::isinf(t) && t > 0) << t;
    } else {
      EXPECT_EQ(t, c["youden_threshold"].get<double>());
    }
  }
}

TEST(Classification, UndefinedWithOneClass) {
  EXPECT_TRUE(std::isnan(auroc({0.1, 0.2, 0.3}, {1, 1, 1})));
  EXPECT_TRUE(std::isnan(auroc({0.1, 0.2, 0.3}, {0, 0, 0})));
  EXPECT_TRUE(std::isnan(average_precision({0.1, 0.2}, {0, 0})));
  EXPECT_DOUBLE_EQ(average_precision({0.1, 0.2}, {1, 1}), 1.0);
  Confusion k = confusion_at({0.1, 0.9}, {0, 0}, 0.5);
  EXPECT_TRUE(std::isnan(k.sensitivity()));
  EXPECT_DOUBLE_EQ(k.specificity(), 0.5);
}

TEST(Bootstrap, PercentileMatchesNumpy) {
  for (const auto& c : golden("percentile.json")) {
    auto v = c["values"].get<std::vector<double>>();
    auto q = c["q"].get<std::vector<double>>();
    auto e = c["expected"].get<std::vector<double>>();
    for (std::size_t i = 0; i < q.size(); ++i)
      // numpy's lerp formula is reproduced, so the same doubles come out; 1e-15 allows one ulp.
      EXPECT_NEAR(percentile(v, q[i]), e[i], 1e-15 * (1 + std::abs(e[i]))) << "q=" << q[i] << " n=" << v.size();
  }
  EXPECT_TRUE(std::isnan(percentile({}, 50)));
}

TEST(Bootstrap, DrawCountsIsAMultinomialOfNDraws) {
  std::vector<std::uint32_t> c;
  draw_counts(42, 7, 1000, c);
  std::uint64_t total = 0;
  int zeros = 0;
  for (auto x : c) {
    total += x;
    zeros += x == 0;
  }
  EXPECT_EQ(total, 1000u);
  // P(a record is never drawn) -> 1/e: 368 expected, sd ~15; 300..440 fails only for a broken sampler.
  EXPECT_GT(zeros, 300);
  EXPECT_LT(zeros, 440);
  std::vector<std::uint32_t> again;
  draw_counts(42, 7, 1000, again);
  EXPECT_EQ(c, again);
  draw_counts(42, 8, 1000, again);
  EXPECT_NE(c, again);
}

TEST(Bootstrap, CountingShortcutEqualsExplicitResampling) {
  // Each resample's AUROC/AP from counts over the once-sorted scores must equal the metric on the
  // explicitly expanded resample (every record repeated count times), ties included.
  const auto cases = golden("classification.json");
  const auto& c = cases[2];  // ties_one_decimal
  ASSERT_EQ(c["name"], "ties_one_decimal");
  LabelScores ls;
  ls.name = "L";
  ls.truth = as_truth(c["truth"]);
  ls.scores = {c["scores"].get<std::vector<double>>()};
  for (std::uint32_t i = 0; i < ls.truth.size(); ++i) ls.records.push_back(i);
  ClassificationRequest req;
  req.auprc = true;
  req.at_threshold = true;
  BootstrapOptions bo;
  bo.resamples = 40;
  bo.seed = 5;
  Replicates r = bootstrap_classification({ls}, ls.truth.size(), req, bo);
  ASSERT_EQ(r.metrics[0], "auroc");
  ASSERT_EQ(r.metrics[1], "auprc");
  ASSERT_EQ(r.metrics[5], "f1");
  for (int b = 0; b < bo.resamples; ++b) {
    std::vector<std::uint32_t> counts;
    draw_counts(bo.seed, b, ls.truth.size(), counts);
    std::vector<double> s;
    std::vector<std::uint8_t> t;
    for (std::size_t i = 0; i < counts.size(); ++i)
      for (std::uint32_t k = 0; k < counts[i]; ++k) {
        s.push_back(ls.scores[0][i]);
        t.push_back(ls.truth[i]);
      }
    EXPECT_NEAR(r.at(b, 0, 0, 0), auroc(s, t), 1e-14) << b;
    EXPECT_NEAR(r.at(b, 0, 1, 0), average_precision(s, t), 1e-12) << b;
    EXPECT_NEAR(r.at(b, 0, 5, 0), confusion_at(s, t, 0.5).f1(), 1e-15) << b;
  }
  EXPECT_NEAR(r.at_point(0, 0, 0), c["auroc"].get<double>(), kSklearnTol);
}

TEST(Bootstrap, SameSeedSameResultWhateverTheThreadCount) {
  const auto c = golden("classification.json")[1];
  LabelScores ls;
  ls.name = "L";
  ls.truth = as_truth(c["truth"]);
  ls.scores = {c["scores"].get<std::vector<double>>()};
  for (std::uint32_t i = 0; i < ls.truth.size(); ++i) ls.records.push_back(i);
  BootstrapOptions one, four;
  one.resamples = four.resamples = 64;
  one.threads = 1;
  four.threads = 4;
  auto a = bootstrap_classification({ls}, ls.truth.size(), {}, one);
  auto b = bootstrap_classification({ls}, ls.truth.size(), {}, four);
  EXPECT_EQ(a.values, b.values);
  four.seed = 1;
  auto d = bootstrap_classification({ls}, ls.truth.size(), {}, four);
  EXPECT_NE(a.values, d.values);
}

TEST(Bootstrap, ResamplesWithOneClassAreSkippedAndCounted) {
  // One positive among 8 records: a resample misses it with probability (7/8)^8 ~ 0.34; exactly
  // those resamples must be skipped for AUROC, and the macro skips them too.
  LabelScores ls;
  ls.name = "rare";
  ls.truth = {0, 0, 0, 1, 0, 0, 0, 0};
  ls.scores = {{0.1, 0.2, 0.3, 0.9, 0.4, 0.5, 0.6, 0.7}};
  for (std::uint32_t i = 0; i < 8; ++i) ls.records.push_back(i);
  BootstrapOptions bo;
  bo.resamples = 300;
  bo.seed = 3;
  auto r = bootstrap_classification({ls}, 8, {}, bo);
  int expected_skips = 0;
  for (int b = 0; b < bo.resamples; ++b) {
    std::vector<std::uint32_t> counts;
    draw_counts(bo.seed, b, 8, counts);
    expected_skips += counts[3] == 0;
  }
  ASSERT_GT(expected_skips, 0);
  auto rows = summarise(r, 95, false);
  ASSERT_EQ(rows.size(), 2u);  // the label and the macro
  EXPECT_EQ(rows[0].skipped, expected_skips);
  EXPECT_EQ(rows[0].used, bo.resamples - expected_skips);
  EXPECT_EQ(rows[1].label, "macro");
  EXPECT_EQ(rows[1].skipped, expected_skips);
  EXPECT_DOUBLE_EQ(rows[0].estimate, 1.0);
}

TEST(Bootstrap, StratifiedKeepsClassCountsSoNoResampleIsSkipped) {
  LabelScores ls;
  ls.name = "rare";
  ls.truth = {0, 0, 0, 1, 0, 0, 0, 0};
  ls.scores = {{0.1, 0.2, 0.3, 0.9, 0.4, 0.5, 0.6, 0.7}};
  for (std::uint32_t i = 0; i < 8; ++i) ls.records.push_back(i);
  BootstrapOptions bo;
  bo.resamples = 200;
  bo.stratified = true;
  auto rows = summarise(bootstrap_classification({ls}, 8, {}, bo), 95, false);
  EXPECT_EQ(rows[0].skipped, 0);
  // The single positive outranks every negative in every resample.
  EXPECT_DOUBLE_EQ(rows[0].low, 1.0);
}

TEST(Bootstrap, PairedDifferenceAndPValue) {
  const auto c = golden("classification.json")[1];
  LabelScores ls;
  ls.name = "L";
  ls.truth = as_truth(c["truth"]);
  auto s = c["scores"].get<std::vector<double>>();
  std::vector<double> noise(s.size());
  auto rng = cx::random::bootstrap_rng(9, 0);
  for (auto& x : noise) x = rng.uniform();
  for (std::uint32_t i = 0; i < ls.truth.size(); ++i) ls.records.push_back(i);
  BootstrapOptions bo;
  bo.resamples = 199;
  // Identical models: every difference is 0, so both tails hold all B resamples: p = 1.
  ls.scores = {s, s};
  auto same = summarise(bootstrap_classification({ls}, s.size(), {}, bo), 95, true);
  EXPECT_DOUBLE_EQ(same[0].estimate, 0.0);
  EXPECT_DOUBLE_EQ(same[0].p_value, 1.0);
  // A - B > 0 in every resample, p = 2 (1 + 0) / (1 + 199) = 0.01.
  // A strong model (truth plus a little noise, AUROC near 1) against pure noise (AUROC near 0.5).
  std::vector<double> strong(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) strong[i] = ls.truth[i] + 0.8 * rng.uniform();
  ls.scores = {strong, noise};
  auto diff = summarise(bootstrap_classification({ls}, s.size(), {}, bo), 95, true);
  EXPECT_NEAR(diff[0].estimate_a, auroc(strong, ls.truth), 1e-15);
  EXPECT_NEAR(diff[0].estimate, diff[0].estimate_a - diff[0].estimate_b, 1e-15);
  EXPECT_GT(diff[0].low, 0.0);
  EXPECT_DOUBLE_EQ(diff[0].p_value, 0.01);
}

TEST(Segmentation, DiceAndIouOnHandDrawnMasks) {
  // Truth: a 3x3 square (9 px). Prediction: the square shifted one column right (9 px).
  // Overlap 6 px: Dice = 12/18 = 2/3, IoU = 6/12 = 1/2.
  const char* truth_art =
      "......"
      ".###.."
      ".###.."
      ".###.."
      "......";
  const char* pred_art =
      "......"
      "..###."
      "..###."
      "..###."
      "......";
  std::vector<std::uint8_t> t, p;
  for (int i = 0; i < 30; ++i) {
    t.push_back(truth_art[i] == '#');
    p.push_back(pred_art[i] == '#');
  }
  EXPECT_DOUBLE_EQ(dice(t.data(), p.data(), 30), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(iou(t.data(), p.data(), 30), 0.5);
  std::vector<std::uint8_t> empty(30, 0);
  EXPECT_TRUE(std::isnan(dice(empty.data(), empty.data(), 30)));  // absent and not predicted
  EXPECT_DOUBLE_EQ(dice(t.data(), empty.data(), 30), 0.0);         // missed entirely
  EXPECT_DOUBLE_EQ(iou(empty.data(), p.data(), 30), 0.0);          // predicted where absent
  EXPECT_TRUE(std::isnan(hd95(t.data(), empty.data(), 6, 5)));
  // The square's boundary is its 8 outer pixels; shifted by one column, boundary distances are 0
  // or 1 and the 95th percentile of the 16 distances lands on 1.
  EXPECT_DOUBLE_EQ(hd95(t.data(), p.data(), 6, 5), 1.0);
}

TEST(Segmentation, Hd95MatchesMedpyAlgorithm) {
  for (const auto& c : golden("hd95.json")) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const int w = c["width"], h = c["height"];
    std::vector<std::uint8_t> t, p;
    for (const auto& x : c["truth"]) t.push_back(static_cast<std::uint8_t>(x.get<int>()));
    for (const auto& x : c["pred"]) p.push_back(static_cast<std::uint8_t>(x.get<int>()));
    // Exact EDT and numpy's percentile formula: the same doubles up to sqrt rounding.
    EXPECT_NEAR(hd95(t.data(), p.data(), w, h), c["hd95"].get<double>(), 1e-12);
    EXPECT_NEAR(dice(t.data(), p.data(), t.size()), c["dice"].get<double>(), 1e-15);
    EXPECT_NEAR(iou(t.data(), p.data(), t.size()), c["iou"].get<double>(), 1e-15);
  }
}

TEST(Segmentation, DistanceTransformIsExact) {
  // One feature pixel at (x=2, y=1) in a 5x4 image: every squared distance is dx^2 + dy^2.
  std::vector<std::uint8_t> f(20, 0);
  f[1 * 5 + 2] = 1;
  auto d = squared_distance_transform(f.data(), 5, 4);
  for (int y = 0; y < 4; ++y)
    for (int x = 0; x < 5; ++x) EXPECT_EQ(d[y * 5 + x], (x - 2) * (x - 2) + (y - 1) * (y - 1)) << x << "," << y;
  std::vector<std::uint8_t> none(20, 0);
  EXPECT_TRUE(std::isinf(squared_distance_transform(none.data(), 5, 4)[7]));
}

TEST(Segmentation, LabelMapsScorePerClassAndBootstrapMeans) {
  // 2 classes on 4x2 maps. Class 1: truth 2 px, pred 2 px, 1 shared -> Dice 0.5. Class 2 absent in
  // both -> undefined and left out.
  std::vector<std::uint16_t> t = {1, 1, 0, 0, 0, 0, 0, 0};
  std::vector<std::uint16_t> p = {1, 0, 1, 0, 0, 0, 0, 0};
  auto v = score_label_maps(t.data(), p.data(), 4, 2, 2, {"dice", "iou"}, "test");
  ASSERT_EQ(v.size(), 4u);
  EXPECT_DOUBLE_EQ(v[0], 0.5);
  EXPECT_TRUE(std::isnan(v[1]));
  EXPECT_DOUBLE_EQ(v[2], 1.0 / 3.0);
  std::vector<std::uint16_t> bad = {3, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_THROW(score_label_maps(t.data(), bad.data(), 4, 2, 2, {"dice"}, "test"), cx::Error);
  // Two records: class-1 Dice 0.5 and 1.0; the point estimate is their mean.
  std::vector<double> values = {0.5, kNaN(), 1.0, 0.25};
  BootstrapOptions bo;
  bo.resamples = 50;
  auto r = bootstrap_record_means({"dice"}, {"a", "b"}, "mean", {values}, 2, bo);
  auto rows = summarise(r, 95, false);
  EXPECT_DOUBLE_EQ(rows[0].estimate, 0.75);
  EXPECT_DOUBLE_EQ(rows[1].estimate, 0.25);
  EXPECT_EQ(rows[2].label, "mean");
  EXPECT_DOUBLE_EQ(rows[2].estimate, 0.5);
}

TEST(Report, TokeniserAgreesWithThePythonReference) {
  const auto g = golden("bleu.json");
  for (std::size_t i = 0; i < g["hypotheses"].size(); ++i) {
    EXPECT_EQ(coco_tokenize(g["hypotheses"][i]), g["hypothesis_tokens"][i].get<std::vector<std::string>>());
    for (std::size_t j = 0; j < g["references"][i].size(); ++j)
      EXPECT_EQ(coco_tokenize(g["references"][i][j]), g["reference_tokens"][i][j].get<std::vector<std::string>>());
  }
  EXPECT_EQ(coco_tokenize("Don't (see) x-ray... 3.5cm -- heart's"),
            (std::vector<std::string>{"do", "n't", "see", "x-ray", "3.5cm", "heart", "'s"}));
}

TEST(Report, CorpusBleuMatchesNltk) {
  const auto g = golden("bleu.json");
  BleuStats total;
  std::vector<BleuStats> per;
  for (std::size_t i = 0; i < g["hypotheses"].size(); ++i) {
    std::vector<std::vector<std::string>> refs;
    for (const auto& r : g["references"][i]) refs.push_back(coco_tokenize(r));
    per.push_back(bleu_stats(coco_tokenize(g["hypotheses"][i]), refs));
    total.testlen += per.back().testlen;
    total.reflen += per.back().reflen;
    for (int k = 0; k < 4; ++k) {
      total.guess[k] += per.back().guess[k];
      total.correct[k] += per.back().correct[k];
    }
  }
  auto b = bleu_from_stats(total);
  // pycocoevalcap's tiny (1e-15) and small (1e-9) guards shift the value by ~1e-9 relative to
  // NLTK's exact fractions; 1e-8 covers that and nothing more.
  for (int k = 0; k < 4; ++k) EXPECT_NEAR(b[k], g["nltk_corpus_bleu"][k].get<double>(), 1e-8) << "BLEU-" << k + 1;
  auto b0 = bleu_from_stats(per[0]);
  EXPECT_NEAR(b0[0], g["nltk_record0"][0].get<double>(), 1e-8);
  EXPECT_NEAR(b0[1], g["nltk_record0"][1].get<double>(), 1e-8);
  EXPECT_NEAR(bleu_from_stats(per[2])[0], g["nltk_record2_bleu1"].get<double>(), 1e-8);  // brevity penalty
  // A hypothesis shorter than n has no n-grams: pycocoevalcap divides tiny by small there (NLTK
  // would count a denominator of 1). "a b" against "a b": BLEU-3 = (1 * 1 * 1e-15/1e-9)^(1/3).
  auto short_hyp = bleu_from_stats(bleu_stats({"a", "b"}, {{"a", "b"}}));
  // The small = 1e-9 guard moves each value by about 1e-9 relative: 1e-8 covers it.
  EXPECT_NEAR(short_hyp[1], 1.0, 1e-8);
  EXPECT_NEAR(short_hyp[2], 0.01, 1e-8);
}

TEST(Report, RougeLHandWorked) {
  // hyp a b c d e (5), ref a x c e y z (6): LCS a c e = 3, P = 3/5, R = 3/6,
  // F = (1 + 1.44) * 0.6 * 0.5 / (0.5 + 1.44 * 0.6) = 0.732 / 1.364.
  std::vector<std::string> hyp = {"a", "b", "c", "d", "e"};
  std::vector<std::string> ref = {"a", "x", "c", "e", "y", "z"};
  EXPECT_NEAR(rouge_l(hyp, {ref}), 0.732 / 1.364, 1e-15);
  // Two references: P and R are maximised separately (pycocoevalcap): a second reference "a b"
  // gives P = 2/5 (< 3/5) and R = 2/2 = 1, so P = 0.6, R = 1: F = 2.44 * 0.6 / (1 + 0.864).
  EXPECT_NEAR(rouge_l(hyp, {ref, {"a", "b"}}), 2.44 * 0.6 / 1.864, 1e-15);
  EXPECT_DOUBLE_EQ(rouge_l({}, {ref}), 0.0);
  EXPECT_DOUBLE_EQ(rouge_l({"q"}, {ref}), 0.0);
}

TEST(Report, TextBootstrapPointEstimatesAreTheCorpusScores) {
  std::vector<std::vector<std::vector<std::string>>> hyp = {{{"a", "b", "c", "d", "e"}, {"a", "b"}}};
  std::vector<std::vector<std::vector<std::string>>> refs = {{{"a", "x", "c", "e", "y", "z"}}, {{"a", "b"}}};
  BootstrapOptions bo;
  bo.resamples = 20;
  auto r = bootstrap_text_metrics(hyp, refs, true, true, bo);
  ASSERT_EQ(r.metrics.size(), 5u);
  EXPECT_EQ(r.metrics[4], "rouge-l");
  EXPECT_NEAR(r.at_point(0, 4, 0), (0.732 / 1.364 + 1.0) / 2, 1e-15);
  // BLEU-1: clipped unigram matches 3 + 2 = 5 of 7; c = 7 >= r = 8? no: r = 6 + 2 = 8, so BP =
  // exp(1 - 8/7).
  EXPECT_NEAR(r.at_point(0, 0, 0), 5.0 / 7.0 * std::exp(1 - 8.0 / 7.0), 1e-8);
}

namespace {
std::vector<LabelValue> label_of(const std::string& text) {
  static const ReportLabeller labeller = ReportLabeller::load(cx::share_dir() + "/labeller");
  return labeller.label(text);
}
int index_of(const std::string& name) {
  const auto& n = chexpert_labels();
  return static_cast<int>(std::find(n.begin(), n.end(), name) - n.begin());
}
LabelValue code(const std::string& text, const std::string& label) { return label_of(text)[index_of(label)]; }
}  // namespace

TEST(Labeller, MentionNegationUncertainty) {
  EXPECT_EQ(code("Small left pleural effusion.", "Pleural Effusion"), LabelValue::positive);
  EXPECT_EQ(code("No pleural effusion.", "Pleural Effusion"), LabelValue::negative);
  EXPECT_EQ(code("There is no pneumothorax.", "Pneumothorax"), LabelValue::negative);
  EXPECT_EQ(code("Pneumothorax is not seen.", "Pneumothorax"), LabelValue::negative);
  EXPECT_EQ(code("Pneumothorax cannot be excluded.", "Pneumothorax"), LabelValue::uncertain);
  EXPECT_EQ(code("Possible right lower lobe pneumonia.", "Pneumonia"), LabelValue::uncertain);
  // A list stays in the negation's scope, across commas.
  for (const char* l : {"Pleural Effusion", "Pneumothorax", "Consolidation"})
    EXPECT_EQ(code("No focal consolidation, pleural effusion, or pneumothorax.", l), LabelValue::negative) << l;
  // A gap with a negation inside the mention; a pseudo-negation; a blocked phrase.
  EXPECT_EQ(code("The heart is mildly enlarged.", "Cardiomegaly"), LabelValue::positive);
  EXPECT_EQ(code("The heart is not enlarged.", "Cardiomegaly"), LabelValue::negative);
  EXPECT_EQ(code("No change in cardiomegaly.", "Cardiomegaly"), LabelValue::positive);
  EXPECT_EQ(code("Small pericardial effusion.", "Pleural Effusion"), LabelValue::blank);
  // A termination word ends the negation's scope.
  EXPECT_EQ(code("No pneumothorax but there is a right pleural effusion.", "Pleural Effusion"), LabelValue::positive);
  // Sentences are separate scopes, and a positive mention outranks a negative one.
  EXPECT_EQ(code("No effusion on the left. Small effusion on the right.", "Pleural Effusion"), LabelValue::positive);
}

TEST(Labeller, NoFindingRule) {
  EXPECT_EQ(code("Normal chest. No pneumothorax or effusion.", "No Finding"), LabelValue::positive);
  EXPECT_EQ(code("Right PICC line in place. Lungs are clear.", "No Finding"), LabelValue::positive);  // devices allowed
  EXPECT_EQ(code("Right PICC line in place. Lungs are clear.", "Support Devices"), LabelValue::positive);
  EXPECT_EQ(code("Possible pneumonia.", "No Finding"), LabelValue::blank);
}

TEST(Labeller, BadPhraseFilesAreNamed) {
  try {
    ReportLabeller::from_text("Edema\tedema\nNot A Label\tthing\n", "[before]\nno\n", "[before]\nmay\n");
    FAIL();
  } catch (const cx::Error& e) {
    EXPECT_STREQ(e.what(), "mentions.txt: line 2: unknown label 'Not A Label'");
  }
  EXPECT_THROW(ReportLabeller::from_text("Edema\tedema\n", "[nonsense]\nno\n", ""), cx::Error);
  EXPECT_THROW(ReportLabeller::from_text("Edema\t... edema\n", "", ""), cx::Error);
}

TEST(Labeller, F1PerLabelMicroAndMacro) {
  using C = LabelValue;
  // Two labels over 4 records. Label a: truth 1 1 0 0, pred 1 0 1 0 -> tp 1 fp 1 fn 1: F1 0.5.
  // Label b: truth uncertain in record 0 (ignored), then 1 0 0; pred 1 1 0 -> tp 1 fp 1 fn 0: 2/3.
  std::vector<std::vector<C>> truth = {{C::positive, C::uncertain}, {C::positive, C::positive}, {C::negative, C::blank}, {C::blank, C::negative}};
  std::vector<std::vector<C>> pred = {{C::positive, C::positive}, {C::negative, C::positive}, {C::positive, C::positive}, {C::blank, C::blank}};
  BootstrapOptions bo;
  bo.resamples = 10;
  auto rows = summarise(bootstrap_label_f1(truth, {pred}, {"a", "b"}, UncertainPolicy::ignore, bo), 95, false);
  ASSERT_EQ(rows.size(), 4u);  // a, b, micro, macro
  EXPECT_DOUBLE_EQ(rows[0].estimate, 0.5);
  EXPECT_DOUBLE_EQ(rows[1].estimate, 2.0 / 3.0);
  EXPECT_EQ(rows[1].n, 3);
  EXPECT_EQ(rows[2].label, "micro");
  EXPECT_DOUBLE_EQ(rows[2].estimate, 2.0 * 2 / (2 * 2 + 2 + 1));
  EXPECT_EQ(rows[3].label, "macro");
  EXPECT_DOUBLE_EQ(rows[3].estimate, (0.5 + 2.0 / 3.0) / 2);
  // ones: the uncertain truth becomes positive: label b tp 2 fp 1 fn 0 -> 0.8.
  auto ones = summarise(bootstrap_label_f1(truth, {pred}, {"a", "b"}, UncertainPolicy::ones, bo), 95, false);
  EXPECT_DOUBLE_EQ(ones[1].estimate, 0.8);
}
