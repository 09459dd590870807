// lib/cx/eval (what cx-eval's main held) and lib/cx/cli/process: the one truth/prediction role
// decision, the table, report and mask joins (keys missing on either side, repeats, order), --group,
// the three renderers' exact bytes on a fixed summary and the ROC SVG's exact bytes on a tiny curve
// (worked out by hand below), and the posix_spawn helper.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cx/cli/bad_inputs.hpp"
#include "cx/cli/error.hpp"
#include "cx/cli/process.hpp"
#include "cx/data/table.hpp"
#include "cx/eval/evaluate.hpp"
#include "cx/eval/inputs.hpp"
#include "cx/eval/masks.hpp"
#include "cx/eval/roc_plot.hpp"
#include "cx/eval/summary.hpp"
#include "cx/io/png.hpp"

using cx::cli::BadInputs;
using cx::data::parse_table;
using cx::data::Table;
namespace eval = cx::eval;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Table tsv(const std::string& name, const std::string& text) { return parse_table(text, name, '\t'); }

// The message of the cx::Error (or UsageError) that fn throws; "" when it throws none.
template <typename E, typename F>
std::string thrown(F fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

eval::InputArgs args(std::vector<std::string> positional, std::string truth = "", std::string pred = "",
                     std::vector<std::string> paired = {}) {
  eval::InputArgs a;
  a.positional = std::move(positional);
  a.truth = std::move(truth);
  a.pred = std::move(pred);
  a.paired = std::move(paired);
  return a;
}

}  // namespace

// ---------------------------------------------------------------- roles

TEST(Roles, ScoresMayKeepTheTruthInThePredictionTable) {
  auto r = eval::resolve_roles(args({"one.tsv"}), eval::InputKind::scores);
  EXPECT_EQ(r.truth, "");
  EXPECT_EQ(r.predictions, std::vector<std::string>{"one.tsv"});
  r = eval::resolve_roles(args({}, "", "p.tsv"), eval::InputKind::scores);
  EXPECT_EQ(r.truth, "");
  EXPECT_EQ(r.predictions, std::vector<std::string>{"p.tsv"});
  r = eval::resolve_roles(args({}, "", "", {"a.tsv", "b.tsv"}), eval::InputKind::scores);
  EXPECT_EQ(r.truth, "");
  EXPECT_EQ(r.predictions, (std::vector<std::string>{"a.tsv", "b.tsv"}));
}

TEST(Roles, TheSameFormsForEveryKind) {
  for (auto kind : {eval::InputKind::scores, eval::InputKind::masks, eval::InputKind::reports}) {
    auto r = eval::resolve_roles(args({"t", "p"}), kind);  // TRUTH PRED
    EXPECT_EQ(r.truth, "t");
    EXPECT_EQ(r.predictions, std::vector<std::string>{"p"});
    r = eval::resolve_roles(args({}, "t", "p"), kind);  // --truth --pred
    EXPECT_EQ(r.truth, "t");
    EXPECT_EQ(r.predictions, std::vector<std::string>{"p"});
    r = eval::resolve_roles(args({"-"}, "t"), kind);  // --truth T, predictions on stdin
    EXPECT_EQ(r.truth, "t");
    EXPECT_EQ(r.predictions, std::vector<std::string>{"-"});
    EXPECT_EQ(r.model_names(), std::vector<std::string>{"standard input"});
    r = eval::resolve_roles(args({}, "t", "", {"a", "b"}), kind);  // --truth T --paired A B
    EXPECT_EQ(r.truth, "t");
    EXPECT_EQ(r.predictions, (std::vector<std::string>{"a", "b"}));
    r = eval::resolve_roles(args({"t"}, "", "", {"a", "b"}), kind);  // T --paired A B
    EXPECT_EQ(r.truth, "t");
    EXPECT_EQ(r.predictions, (std::vector<std::string>{"a", "b"}));
  }
}

TEST(Roles, FormsThatDoNotFitAreUsageErrors) {
  using U = cx::UsageError;
  auto roles = [](eval::InputArgs a, eval::InputKind k) { return [=] { eval::resolve_roles(a, k); }; };
  EXPECT_EQ(thrown<U>(roles(args({"p"}), eval::InputKind::masks)),
            "masks: expected TRUTH PRED (two streams or folders of PNG label maps), or --truth T --pred P");
  EXPECT_EQ(thrown<U>(roles(args({"a", "b", "c"}), eval::InputKind::reports)),
            "reports: expected TRUTH GENERATED (TSV key<TAB>text), or --truth T --pred P");
  EXPECT_EQ(thrown<U>(roles(args({"t", "p"}, "t2"), eval::InputKind::scores)),
            "expected one table (truth NAME and score NAME.score), or --truth T --pred P, or --paired A B");
  EXPECT_EQ(thrown<U>(roles(args({"x"}, "t", "p"), eval::InputKind::scores)),
            "give the inputs either as --truth/--pred or as positional arguments");
  EXPECT_EQ(thrown<U>(roles(args({}, "", "", {"a", "b"}), eval::InputKind::masks)),
            "--paired A B needs the truth masks: --truth T (or one positional input)");
  EXPECT_EQ(thrown<U>(roles(args({}, "", "", {"a", "b"}), eval::InputKind::reports)),
            "--paired A B needs the reference reports: --truth T (or one positional input)");
  EXPECT_NE(thrown<U>(roles(args({"x"}, "t", "", {"a", "b"}), eval::InputKind::masks)), "");
  EXPECT_NE(thrown<U>(roles(args({}, "t", "p", {"a", "b"}), eval::InputKind::scores)), "");
  EXPECT_EQ(thrown<U>(roles(args({"-", "-"}), eval::InputKind::masks)), "standard input can be only one of the inputs");
  EXPECT_EQ(thrown<U>(roles(args({}, "-", "", {"a", "-"}), eval::InputKind::scores)),
            "standard input can be only one of the inputs");
}

// ---------------------------------------------------------------- score joins

namespace {
const char* kTruth = "key\tEdema\tEffusion\nk1\t1\t0\nk2\t0\t1\nk3\t1\t-1\nk4\t0\t\n";
// Another order; k2 missing, k9 extra; plain label names hold the scores.
const char* kPred = "key\tEdema\tEffusion\nk4\t0.4\t0.2\nk3\t0.9\t0.8\nk1\t0.7\t0.1\nk9\t0.5\t0.5\n";
}  // namespace

TEST(JoinScores, KeysMissingOnEitherSideFailNamedOrAreSkippedOneByOne) {
  const Table truth = tsv("truth.tsv", kTruth);
  const std::vector<Table> preds = {tsv("pred.tsv", kPred)};
  BadInputs strict(false);
  EXPECT_EQ(thrown<cx::Error>([&] { eval::join_scores(&truth, preds, {}, strict); }),
            "pred.tsv: no row for 1 key of truth.tsv: k2");

  BadInputs skip(true);
  testing::internal::CaptureStderr();
  const auto d = eval::join_scores(&truth, preds, {}, skip);
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(skip.count(), 2);
  EXPECT_NE(err.find("pred.tsv: no row for key 'k2' of truth.tsv (skipped)"), std::string::npos) << err;
  EXPECT_NE(err.find("truth.tsv: no row for key 'k9' of pred.tsv (skipped)"), std::string::npos) << err;
  // Records in truth order: k1, k3, k4.
  EXPECT_EQ(d.n_records, 3u);
  ASSERT_EQ(d.labels.size(), 2u);
  EXPECT_EQ(d.labels[0].name, "Edema");
  EXPECT_EQ(d.labels[0].records, (std::vector<std::uint32_t>{0, 1, 2}));
  EXPECT_EQ(d.labels[0].truth, (std::vector<std::uint8_t>{1, 1, 0}));
  EXPECT_EQ(d.labels[0].scores, (std::vector<std::vector<double>>{{0.7, 0.9, 0.4}}));
  // Effusion: k3 uncertain (ignored), k4 blank: k1 alone.
  EXPECT_EQ(d.labels[1].records, (std::vector<std::uint32_t>{0}));
  EXPECT_EQ(d.labels[1].scores, (std::vector<std::vector<double>>{{0.1}}));
}

TEST(JoinScores, UncertainPolicyCodesMinusOne) {
  const Table truth = tsv("truth.tsv", "key\tE\nk1\t1\nk2\t-1\nk3\t0\nk4\t\n");
  const std::vector<Table> preds = {tsv("pred.tsv", "key\tE\nk1\t0.9\nk2\t0.5\nk3\t0.1\nk4\t0.3\n")};
  BadInputs bad(false);
  eval::ScoreOptions o;
  o.uncertain = cx::data::UncertainPolicy::ones;
  auto d = eval::join_scores(&truth, preds, o, bad);
  EXPECT_EQ(d.labels[0].truth, (std::vector<std::uint8_t>{1, 1, 0}));
  EXPECT_EQ(d.labels[0].records, (std::vector<std::uint32_t>{0, 1, 2}));
  o.uncertain = cx::data::UncertainPolicy::zeros;
  d = eval::join_scores(&truth, preds, o, bad);
  EXPECT_EQ(d.labels[0].truth, (std::vector<std::uint8_t>{1, 0, 0}));
  o.uncertain = cx::data::UncertainPolicy::ignore;
  d = eval::join_scores(&truth, preds, o, bad);
  EXPECT_EQ(d.labels[0].truth, (std::vector<std::uint8_t>{1, 0}));
  EXPECT_EQ(d.labels[0].records, (std::vector<std::uint32_t>{0, 2}));
}

TEST(JoinScores, ARepeatedKeyIsAnError) {
  const Table truth = tsv("truth.tsv", kTruth);
  const std::vector<Table> preds = {tsv("pred.tsv", "key\tEdema\tEffusion\nk1\t0.1\t0.2\nk2\t0.1\t0.2\nk1\t0.3\t0.4\n")};
  BadInputs skip(true);  // not a skippable input: the table itself is wrong
  EXPECT_EQ(thrown<cx::Error>([&] { eval::join_scores(&truth, preds, {}, skip); }),
            "pred.tsv: line 4: key 'k1' appears twice");
}

TEST(JoinScores, OneTableHoldsTruthAndScores) {
  // Only NAME.score is a score here; Other has no score column and is no label.
  const std::vector<Table> one = {tsv("one.tsv", "key\tEdema\tEdema.score\tOther\na\t1\t0.8\t0\nb\t0\t0.3\t1\n")};
  BadInputs bad(false);
  const auto d = eval::join_scores(nullptr, one, {}, bad);
  ASSERT_EQ(d.labels.size(), 1u);
  EXPECT_EQ(d.labels[0].name, "Edema");
  EXPECT_EQ(d.labels[0].scores, (std::vector<std::vector<double>>{{0.8, 0.3}}));
  eval::ScoreOptions o;
  o.labels = {"Other"};
  EXPECT_EQ(thrown<cx::Error>([&] { eval::join_scores(nullptr, one, o, bad); }),
            "one.tsv: no column 'Other.score' (columns: key, Edema, Edema.score, Other)");
}

TEST(JoinScores, PairedModelsShareTheRecords) {
  const Table truth = tsv("truth.tsv", kTruth);
  const std::vector<Table> preds = {tsv("a.tsv", kPred), tsv("b.tsv", "key\tEdema\tEffusion\nk1\t0.6\t0\nk3\t0.5\t0\n")};
  BadInputs skip(true);
  testing::internal::CaptureStderr();
  const auto d = eval::join_scores(&truth, preds, {}, skip);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(skip.count(), 4);  // a: k2 missing, k9 extra; b: k2 and k4 missing
  EXPECT_EQ(d.n_records, 2u);  // k1, k3
  EXPECT_EQ(d.labels[0].scores, (std::vector<std::vector<double>>{{0.7, 0.9}, {0.6, 0.5}}));
}

TEST(JoinScores, ANonFiniteScoreIsABadInput) {
  const Table truth = tsv("truth.tsv", "key\tE\nk1\t1\nk2\t0\nk3\t1\n");
  const std::vector<Table> preds = {tsv("pred.tsv", "key\tE\nk1\t0.9\nk2\tnan\nk3\t0.2\n")};
  BadInputs strict(false);
  EXPECT_EQ(thrown<cx::Error>([&] { eval::join_scores(&truth, preds, {}, strict); }),
            "pred.tsv: line 3: column E: NaN score refused (a score must be a finite number)");
  BadInputs skip(true);
  testing::internal::CaptureStderr();
  const auto d = eval::join_scores(&truth, preds, {}, skip);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(skip.count(), 1);
  EXPECT_EQ(d.labels[0].records, (std::vector<std::uint32_t>{0, 2}));
}

// ---------------------------------------------------------------- report joins

TEST(JoinReports, RepeatedReferenceKeysAreSeveralReferencesInFirstSeenOrder) {
  const Table ref = tsv("ref.tsv", "key\ttext\nb\tz\na\tx\nb\ty\n");
  const std::vector<Table> gen = {tsv("gen.tsv", "key\ttext\na\tA\nb\tB\n")};
  BadInputs bad(false);
  const auto d = eval::join_reports(ref, gen, "key", "", bad);
  EXPECT_EQ(d.keys, (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(d.references, (std::vector<std::vector<std::string>>{{"z", "y"}, {"x"}}));
  EXPECT_EQ(d.generated, (std::vector<std::vector<std::string>>{{"B", "A"}}));
}

TEST(JoinReports, MissingAndRepeatedGeneratedKeys) {
  const Table ref = tsv("ref.tsv", "key\ttext\na\tx\nb\ty\n");
  BadInputs strict(false);
  const std::vector<Table> missing = {tsv("gen.tsv", "key\ttext\na\tA\nc\tC\n")};
  EXPECT_EQ(thrown<cx::Error>([&] { eval::join_reports(ref, missing, "key", "", strict); }),
            "gen.tsv: no row for 1 key of ref.tsv: b");
  BadInputs skip(true);
  testing::internal::CaptureStderr();
  const auto d = eval::join_reports(ref, missing, "key", "", skip);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(skip.count(), 2);
  EXPECT_EQ(d.keys, std::vector<std::string>{"a"});
  const std::vector<Table> twice = {tsv("gen.tsv", "key\ttext\na\tA\na\tA2\nb\tB\n")};
  EXPECT_EQ(thrown<cx::Error>([&] { eval::join_reports(ref, twice, "key", "", skip); }),
            "gen.tsv: line 3: key 'a' appears twice");
}

TEST(JoinReports, TextColumn) {
  EXPECT_EQ(eval::text_column_of(tsv("t", "key\tfindings\n1\tx\n"), "key", ""), 1);  // two columns: not the key
  EXPECT_EQ(eval::text_column_of(tsv("t", "findings\tkey\nx\t1\n"), "key", ""), 0);
  EXPECT_EQ(eval::text_column_of(tsv("t", "key\tview\treport\n1\tPA\tx\n"), "key", ""), 2);
  EXPECT_EQ(eval::text_column_of(tsv("t", "key\tview\treport\n1\tPA\tx\n"), "key", "view"), 1);
  EXPECT_THROW(eval::text_column_of(tsv("t", "key\ta\tb\n1\t2\t3\n"), "key", ""), cx::Error);
}

// ---------------------------------------------------------------- masks

namespace {
// A label map from rows of digits ('.' is 0).
std::string label_png(const std::vector<std::string>& rows) {
  cx::Image im = cx::Image::gray8(static_cast<int>(rows[0].size()), static_cast<int>(rows.size()));
  for (std::size_t y = 0; y < rows.size(); ++y)
    for (std::size_t x = 0; x < rows[y].size(); ++x)
      im.u8()[y * rows[0].size() + x] = rows[y][x] == '.' ? 0 : static_cast<std::uint8_t>(rows[y][x] - '0');
  return cx::io::encode_png(im);
}

eval::MaskSet masks(const std::string& source, const std::vector<std::pair<std::string, std::vector<std::string>>>& maps) {
  eval::MaskSet s;
  s.source = source;
  for (const auto& [key, rows] : maps) {
    s.keys.push_back(key);
    s.png[key] = label_png(rows);
  }
  return s;
}
}  // namespace

TEST(Masks, CommonKeysInTruthOrderWithEachUnmatchedKeyNamed) {
  const auto truth = masks("gt", {{"c", {"1"}}, {"a", {"1"}}, {"b", {"1"}}});
  const std::vector<eval::MaskSet> preds = {masks("pr", {{"a", {"1"}}, {"d", {"1"}}, {"c", {"1"}}})};
  BadInputs strict(false);
  EXPECT_EQ(thrown<cx::Error>([&] { eval::common_keys(truth, preds, strict); }), "pr: no row for 1 key of gt: b");
  BadInputs skip(true);
  testing::internal::CaptureStderr();
  EXPECT_EQ(eval::common_keys(truth, preds, skip), (std::vector<std::string>{"c", "a"}));
  const std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(skip.count(), 2);
  EXPECT_NE(err.find("pr: no row for key 'b' of gt (skipped)"), std::string::npos) << err;
  EXPECT_NE(err.find("gt: no row for key 'd' of pr (skipped)"), std::string::npos) << err;
}

TEST(Masks, GroupMakesSeveralValuesOneClassInThePlaceOfItsFirstMember) {
  const std::vector<std::string> names = {"heart", "left lung", "right lung", "clavicle"};
  const auto g = eval::group_classes(names, {"lung=3,2"});
  EXPECT_EQ(g.names, (std::vector<std::string>{"heart", "lung", "clavicle"}));
  EXPECT_EQ(g.lut, (std::vector<std::uint16_t>{0, 1, 2, 2, 3}));
  eval::LabelMap m{5, 1, {0, 1, 2, 3, 4}};
  g.apply(m, "x");
  EXPECT_EQ(m.v, (std::vector<std::uint16_t>{0, 1, 2, 2, 3}));
  eval::LabelMap beyond{1, 1, {5}};
  EXPECT_EQ(thrown<cx::Error>([&] { g.apply(beyond, "pr: key 'a'"); }), "pr: key 'a': value 5 is outside the classes 0..4");
  // Two groups; no group: identity.
  EXPECT_EQ(eval::group_classes(names, {"lung=2,3", "other=1,4"}).names, (std::vector<std::string>{"other", "lung"}));
  EXPECT_TRUE(eval::group_classes(names, {}).lut.empty());
}

TEST(Masks, GroupMistakesAreUsageErrors) {
  const std::vector<std::string> names = {"left lung", "right lung", "heart"};
  using U = cx::UsageError;
  EXPECT_EQ(thrown<U>([&] { eval::group_classes(names, {"lung=1,4"}); }),
            "--group lung=1,4: value 4 is not one of the classes 1..3");
  EXPECT_EQ(thrown<U>([&] { eval::group_classes(names, {"lung"}); }), "--group lung: expected NAME=V,V,...");
  EXPECT_EQ(thrown<U>([&] { eval::group_classes(names, {"lung=1,x"}); }), "--group lung=1,x: 'x' is not a class value");
  EXPECT_EQ(thrown<U>([&] { eval::group_classes(names, {"a=1,2", "b=2"}); }), "--group: value 2 is in two groups");
}

TEST(Masks, ScoredClassesDropALeadingBackground) {
  EXPECT_EQ(eval::scored_classes({"Background", "lung"}), std::vector<std::string>{"lung"});
  EXPECT_EQ(eval::scored_classes({"lung", "heart"}), (std::vector<std::string>{"lung", "heart"}));
}

TEST(Masks, DiceWithLeftAndRightLungGroupedAsOneLung) {
  // Left lung 1, right lung 2, heart 3; the prediction swaps the lungs: per lung Dice 0, as one lung 1.
  // Heart: 2 px shared of 2 + 3: Dice 0.8.
  const auto truth = masks("gt", {{"a", {"11.22", "11.33", "....."}}});
  const std::vector<eval::MaskSet> preds = {masks("pr", {{"a", {"22.11", "22.33", "...3."}}})};
  eval::MaskOptions o;
  o.metrics = {"dice"};
  o.classes = {"left lung", "right lung", "heart"};
  cx::metrics::BootstrapOptions bo;
  bo.resamples = 0;
  BadInputs bad(false);
  eval::Report separate, grouped;
  eval::append_rows(separate, eval::score_masks(truth, preds, o, bo, bad), 95);
  o.groups = {"lung=1,2"};
  eval::append_rows(grouped, eval::score_masks(truth, preds, o, bo, bad), 95);
  ASSERT_EQ(separate.rows.size(), 4u);
  EXPECT_EQ(separate.rows[0].estimate, 0.0);
  EXPECT_EQ(separate.rows[1].estimate, 0.0);
  ASSERT_EQ(grouped.rows.size(), 3u);
  EXPECT_EQ(grouped.rows[0].label, "lung");
  EXPECT_DOUBLE_EQ(grouped.rows[0].estimate, 1.0);
  EXPECT_EQ(grouped.rows[1].label, "heart");
  EXPECT_DOUBLE_EQ(grouped.rows[1].estimate, 0.8);
  EXPECT_EQ(grouped.rows[2].label, "mean");
  EXPECT_DOUBLE_EQ(grouped.rows[2].estimate, 0.9);
}

TEST(Masks, AMaskOfAnotherSizeIsABadInput) {
  const auto truth = masks("gt", {{"a", {"11", "11"}}, {"b", {"1."}}});
  const std::vector<eval::MaskSet> preds = {masks("pr", {{"a", {"1.1"}}, {"b", {"1."}}})};
  eval::MaskOptions o;
  o.metrics = {"dice"};
  cx::metrics::BootstrapOptions bo;
  bo.resamples = 0;
  BadInputs strict(false);
  EXPECT_EQ(thrown<cx::Error>([&] { eval::score_masks(truth, preds, o, bo, strict); }),
            "pr: key 'a': mask is 3x1, the truth is 2x2");
  BadInputs skip(true);
  testing::internal::CaptureStderr();
  const auto r = eval::score_masks(truth, preds, o, bo, skip);
  testing::internal::GetCapturedStderr();
  EXPECT_EQ(skip.count(), 1);
  EXPECT_EQ(r.labels, std::vector<std::string>{"class 1"});  // no names: values 1..max
  EXPECT_DOUBLE_EQ(r.point[0], 1.0);                         // record b alone
}

// ---------------------------------------------------------------- renderers

namespace {
cx::metrics::Summary row(std::string metric, std::string label, std::int64_t n, std::int64_t pos, double est,
                         double med, double lo, double hi, int used, int skipped) {
  cx::metrics::Summary s;
  s.metric = std::move(metric);
  s.label = std::move(label);
  s.n = n;
  s.positives = pos;
  s.threshold = kNaN;
  s.estimate = est;
  s.median = med;
  s.low = lo;
  s.high = hi;
  s.used = used;
  s.skipped = skipped;
  s.estimate_a = s.estimate_b = s.p_value = kNaN;
  return s;
}

eval::Report fixed_report() {
  eval::Report r;
  r.notes = {"500 bootstrap resamples (seed 0), percentile 95% CI"};
  r.rows = {row("auroc", "Edema", 10, 4, 0.75, 0.76, 0.5, 0.9375, 498, 2),
            row("auroc", "Effusion", 9, 4, kNaN, kNaN, kNaN, kNaN, 0, 500),
            row("auroc", "macro", 10, -1, 0.75, 0.76, 0.5, 0.9375, 498, 2)};
  return r;
}
}  // namespace

TEST(Render, Tsv) {
  EXPECT_EQ(eval::render_tsv(fixed_report()),
            "metric\tlabel\tn\tpositives\testimate\tmedian\tci_low\tci_high\tresamples\tskipped\n"
            "auroc\tEdema\t10\t4\t0.750000\t0.760000\t0.500000\t0.937500\t498\t2\n"
            "auroc\tEffusion\t9\t4\tNA\tNA\tNA\tNA\t0\t500\n"
            "auroc\tmacro\t10\t\t0.750000\t0.760000\t0.500000\t0.937500\t498\t2\n");
}

TEST(Render, TsvWithThresholdAndPaired) {
  eval::Report r = fixed_report();
  r.has_threshold = true;
  r.rows.resize(1);
  r.rows[0].metric = "f1";
  r.rows[0].threshold = 0.5;
  EXPECT_EQ(eval::render_tsv(r),
            "metric\tlabel\tn\tpositives\testimate\tmedian\tci_low\tci_high\tresamples\tskipped\tthreshold\n"
            "f1\tEdema\t10\t4\t0.750000\t0.760000\t0.500000\t0.937500\t498\t2\t0.500000\n");
  r = fixed_report();
  r.paired = true;
  r.rows.resize(1);
  r.rows[0].estimate_a = 0.875;
  r.rows[0].estimate_b = 0.125;
  r.rows[0].p_value = 0.0004;
  EXPECT_EQ(eval::render_tsv(r),
            "metric\tlabel\tn\tpositives\testimate_a\testimate_b\tdifference\tmedian\tci_low\tci_high\tp_value\t"
            "resamples\tskipped\n"
            "auroc\tEdema\t10\t4\t0.875000\t0.125000\t0.750000\t0.760000\t0.500000\t0.937500\t4.00e-04\t498\t2\n");
}

TEST(Render, Terminal) {
  EXPECT_EQ(eval::render_terminal(fixed_report(), 95),
            "500 bootstrap resamples (seed 0), percentile 95% CI\n"
            "metric  label      n  pos  estimate  median  95% CI            skipped\n"
            "auroc   Edema     10    4    0.7500  0.7600  [0.5000, 0.9375]        2\n"
            "auroc   Effusion   9    4        NA      NA  NA                    500\n"
            "auroc   macro     10    -    0.7500  0.7600  [0.5000, 0.9375]        2\n");
}

TEST(Render, Json) {
  cx::metrics::BootstrapOptions bo;
  bo.resamples = 500;
  bo.ci = 97.5;
  bo.seed = 3;
  eval::Report r = fixed_report();
  r.rows.resize(2);
  EXPECT_EQ(eval::render_json(r, {"cx 0.1.0 (git test)", "auroc", bo, {"pred.tsv"}, ""}),
            R"json({
  "bootstrap": {
    "ci": 97.5,
    "interval": "percentile",
    "resamples": 500,
    "seed": 3,
    "stratified": false
  },
  "metric": "auroc",
  "models": [
    "pred.tsv"
  ],
  "paired": false,
  "rows": [
    {
      "ci_high": 0.9375,
      "ci_low": 0.5,
      "estimate": 0.75,
      "label": "Edema",
      "median": 0.76,
      "metric": "auroc",
      "n": 10,
      "positives": 4,
      "resamples": 498,
      "skipped": 2
    },
    {
      "ci_high": null,
      "ci_low": null,
      "estimate": null,
      "label": "Effusion",
      "median": null,
      "metric": "auroc",
      "n": 9,
      "positives": 4,
      "resamples": 0,
      "skipped": 500
    }
  ],
  "tool": "cx-eval",
  "version": "cx 0.1.0 (git test)"
}
)json");
}

TEST(Render, Captions) {
  cx::metrics::BootstrapOptions bo;
  bo.resamples = 200;
  bo.seed = 7;
  bo.ci = 97.5;
  bo.stratified = true;
  EXPECT_EQ(eval::bootstrap_caption(bo), "200 bootstrap resamples (seed 7, stratified), percentile 97.5% CI");
  EXPECT_EQ(eval::ci_text(95), "95");
}

// ---------------------------------------------------------------- ROC plot

TEST(RocPlot, TinyCurveExactBytes) {
  // One label, one model; band on 3 FPR points over 2 resamples; worked by hand: panel origin
  // (62, 90), 180 px square, X(f) = 62 + 180 f, Y(t) = 90 + 180 (1 - t). Band at FPR 0.5: the
  // resampled TPRs 0.5 and 1.0 give the 2.5th and 97.5th percentiles 0.5125 and 0.9875.
  cx::metrics::RocBands bands;
  bands.points = 3;
  bands.resample_tpr = {{{0.0f, 0.5f, 1.0f, 0.0f, 1.0f, 1.0f}}};
  cx::metrics::RocCurve c;
  c.fpr = {0, 0, 0.5, 1};
  c.tpr = {0, 0.5, 1, 1};
  bands.curve = {{c}};
  auto auroc = row("auroc", "A<B", 4, 2, 0.875, 0.875, 0.75, 1.0, 2, 0);
  EXPECT_EQ(eval::roc_svg(bands, {"A<B"}, {auroc}, {"p&q.tsv"}, 95, 2),
            R"svg(<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="660.00" height="324.00" viewBox="0 0 660.00 324.00" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="13">ROC curves; shaded: 95% percentile band of sensitivity over 2 bootstrap resamples</text>
<rect x="10" y="30.00" width="14" height="10" fill="#1f5fa8"/><text x="30" y="39.00">p&amp;q.tsv</text>
<g>
<text x="62.00" y="68.00" font-size="12" font-weight="bold">A&lt;B</text>
<text x="62.00" y="82.00" fill="#1f5fa8">AUROC 0.875 [0.750, 1.000]</text>
<line x1="62.00" y1="270.00" x2="242.00" y2="90.00" stroke="#aaa" stroke-dasharray="4,3"/>
<polygon fill="#9dc0e8" fill-opacity="0.55" stroke="none" points="62.00,270.00 152.00,92.25 242.00,90.00 242.00,90.00 152.00,177.75 62.00,270.00 "/>
<polyline fill="none" stroke="#1f5fa8" stroke-width="1.6" points="62.00,270.00 62.00,180.00 152.00,90.00 242.00,90.00 "/>
<rect x="62.00" y="90.00" width="180.00" height="180.00" fill="none" stroke="#444"/>
<text x="62.00" y="284.00" text-anchor="middle">0.0</text>
<text x="57.00" y="274.00" text-anchor="end">0.0</text>
<text x="152.00" y="284.00" text-anchor="middle">0.5</text>
<text x="57.00" y="184.00" text-anchor="end">0.5</text>
<text x="242.00" y="284.00" text-anchor="middle">1.0</text>
<text x="57.00" y="94.00" text-anchor="end">1.0</text>
<text x="152.00" y="300.00" text-anchor="middle">1 - specificity</text>
<text transform="translate(28.00,180.00) rotate(-90)" text-anchor="middle">sensitivity</text>
</g>
</svg>
)svg");
}

TEST(RocPlot, AurocPerModelIsLabelMajor) {
  cx::metrics::Replicates r;
  r.metrics = {"auroc"};
  r.labels = {"E", "F"};
  r.n = {4, 4};
  r.positives = {2, 2};
  r.resize(2, 0);
  r.at_point(0, 0, 0) = 0.9;
  r.at_point(0, 0, 1) = 0.8;
  r.at_point(1, 0, 0) = 0.7;
  r.at_point(1, 0, 1) = 0.6;
  const auto rows = eval::auroc_per_model(r, {"E", "F"}, 95);
  ASSERT_EQ(rows.size(), 4u);
  EXPECT_EQ(rows[0].estimate, 0.9);  // E, A
  EXPECT_EQ(rows[1].estimate, 0.7);  // E, B
  EXPECT_EQ(rows[2].estimate, 0.8);  // F, A
  EXPECT_EQ(rows[3].estimate, 0.6);  // F, B
}

// ---------------------------------------------------------------- metric names, process helper

TEST(Metric, FamiliesAndRows) {
  EXPECT_EQ(eval::parse_metric("f1").only, std::vector<std::string>{"f1"});
  EXPECT_TRUE(eval::parse_metric("ap").cls.auprc);
  EXPECT_EQ(eval::parse_metric("seg").seg, (std::vector<std::string>{"dice", "iou", "hd95"}));
  EXPECT_TRUE(eval::parse_metric("report").family == eval::Family::reports);
  EXPECT_THROW(eval::parse_metric("roc"), cx::UsageError);
}

TEST(Process, RunsCapturesAndReportsTheExitStatus) {
  std::string out;
  EXPECT_EQ(cx::cli::run_program({"sh", "-c", "printf 'a b'; echo oops >&2; exit 3"}, {&out, true}), 3);
  EXPECT_EQ(out, "a b");
  // stdin is /dev/null: a child that reads gets end of file at once.
  EXPECT_EQ(cx::cli::run_program({"sh", "-c", "cat"}, {&out, true}), 0);
  EXPECT_EQ(out, "");
  EXPECT_EQ(cx::cli::run_program({"cx-no-such-program-here"}), -1);
  EXPECT_EQ(cx::cli::run_program({"sh", "-c", "kill -9 $$"}), -1);
}

TEST(Process, FindOnPath) {
  EXPECT_NE(cx::cli::find_on_path("sh"), "");
  EXPECT_EQ(cx::cli::find_on_path("cx-no-such-program-here"), "");
  EXPECT_EQ(cx::cli::find_on_path("bin/sh"), "");  // a path is not looked up
}
