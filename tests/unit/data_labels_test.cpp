// The label vocabulary (cx/data/labels.hpp): every cell spelling of every coding cx reads, the
// stream's JSON coding, the int8 codes, the CheXpert policies and their option text, label sets.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/data/labels.hpp"
#include "test_support.hpp"

using cx_test::error_of;

using nlohmann::json;
using namespace cx::data;

namespace {

const LabelValue kAll[] = {LabelValue::positive, LabelValue::negative, LabelValue::uncertain, LabelValue::blank};


}  // namespace

TEST(Labels, CellsOfEveryCoding) {
  struct Case {
    const char* cell;
    LabelValue want;
    const char* coding;
  };
  const Case cases[] = {
      // CheXpert train.csv/valid.csv and MIMIC-CXR's chexpert.csv/negbio.csv.
      {"1.0", LabelValue::positive, "chexpert"},
      {"0.0", LabelValue::negative, "chexpert"},
      {"-1.0", LabelValue::uncertain, "chexpert"},
      {"", LabelValue::blank, "chexpert"},
      // cx's own tables (folder labels.csv, cx-classify's truth columns, cx-eval's --labels-out).
      {"1", LabelValue::positive, "cx"},
      {"0", LabelValue::negative, "cx"},
      {"-1", LabelValue::uncertain, "cx"},
      // pandas and R spell a missing value NaN / NA.
      {"NaN", LabelValue::blank, "pandas"},
      {"nan", LabelValue::blank, "pandas"},
      {"NA", LabelValue::blank, "R"},
      {"n/a", LabelValue::blank, "hand-made"},
      {"N/A", LabelValue::blank, "hand-made"},
      // Other decimal spellings of the three numbers, and white space around a cell.
      {"+1", LabelValue::positive, "decimal"},
      {"1.00", LabelValue::positive, "decimal"},
      {"1e0", LabelValue::positive, "decimal"},
      {"-0.0", LabelValue::negative, "decimal"},
      {"-1.00", LabelValue::uncertain, "decimal"},
      {" 1.0 ", LabelValue::positive, "padded"},
      {"\t-1\r", LabelValue::uncertain, "padded"},
      {" \r", LabelValue::blank, "padded"},
      {" nan ", LabelValue::blank, "padded"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(parse_label_cell(c.cell, "t"), c.want) << "'" << c.cell << "' (" << c.coding << ")";
    EXPECT_EQ(try_parse_label_cell(c.cell), c.want) << "'" << c.cell << "' (" << c.coding << ")";
  }
}

TEST(Labels, BadCellsNameTheFileTheColumnAndTheCell) {
  for (const char* bad : {"2", "2.0", "0.5", "-2", "yes", "positive", "inf", "-inf", "0x1", "1.0.0", "--1", ".", "e", "1 0"}) {
    EXPECT_FALSE(try_parse_label_cell(bad).has_value()) << bad;
    EXPECT_THROW(parse_label_cell(bad, "w"), cx::Error) << bad;
  }
  EXPECT_EQ(error_of([] { parse_label_cell("2.0", "train.csv:5: Edema"); }),
            "train.csv:5: Edema: label cell '2.0' is not 1, 0, -1 (uncertain) or blank");
}

TEST(Labels, TextJsonAndCodeRoundTrip) {
  const char* cells[] = {"1", "0", "-1", ""};
  const char* names[] = {"positive", "negative", "uncertain", "blank"};
  const json jsons[] = {1, 0, -1, nullptr};
  const std::int8_t codes[] = {1, 0, -1, kBlankCode};
  for (int i = 0; i < 4; ++i) {
    const LabelValue v = kAll[i];
    EXPECT_STREQ(label_cell_text(v), cells[i]);
    EXPECT_STREQ(label_name(v), names[i]);
    EXPECT_EQ(label_to_json(v), jsons[i]);
    EXPECT_EQ(label_code(v), codes[i]);
    // value -> text -> value, value -> json (as written in a stream) -> value, value -> code -> value
    EXPECT_EQ(parse_label_cell(label_cell_text(v), "t"), v);
    EXPECT_EQ(label_from_json(json::parse(label_to_json(v).dump()), "t"), v);
    EXPECT_EQ(label_from_code(label_code(v)), v);
  }
  EXPECT_EQ(kBlankCode, 2);  // the int8 in FeatureSet::truth: never one of 1, 0, -1
  // The stream bytes of a labels object: 1, 0, -1 and null, in the label set's order.
  LabelSet set{"s", {"A", "B", "C", "D"}};
  EXPECT_EQ(labels_json(set, {kAll[0], kAll[1], kAll[2], kAll[3]}).dump(), R"({"A":1,"B":0,"C":-1,"D":null})");
  EXPECT_EQ(label_coding_json().dump(), R"({"-1":"uncertain","0":"negative","1":"positive","null":"blank or unmentioned"})");
}

TEST(Labels, JsonAcceptsTheNumbersAndNullOnly) {
  EXPECT_EQ(label_from_json(json(1.0), "t"), LabelValue::positive);
  EXPECT_EQ(label_from_json(json(-1.0), "t"), LabelValue::uncertain);
  for (const json& bad : {json(0.5), json(2), json("1"), json(true), json::array(), json::object()})
    EXPECT_THROW(label_from_json(bad, "t"), cx::Error) << bad.dump();
  EXPECT_EQ(error_of([] { label_from_json(json("1"), "a.json: labels.Edema"); }),
            R"(a.json: labels.Edema: label value "1" is not 1, 0, -1 or null)");
  EXPECT_THROW(label_from_code(3), cx::Error);
  EXPECT_THROW(label_from_code(-2), cx::Error);
}

TEST(Labels, PolicyOptionText) {
  EXPECT_EQ(parse_uncertain_policy("ignore"), UncertainPolicy::ignore);
  EXPECT_EQ(parse_uncertain_policy("ones"), UncertainPolicy::ones);
  EXPECT_EQ(parse_uncertain_policy("zeros"), UncertainPolicy::zeros);
  EXPECT_EQ(parse_blank_policy("ignore"), BlankPolicy::ignore);
  EXPECT_EQ(parse_blank_policy("zeros"), BlankPolicy::zeros);
  for (auto p : {UncertainPolicy::ignore, UncertainPolicy::ones, UncertainPolicy::zeros})
    EXPECT_EQ(parse_uncertain_policy(policy_name(p)), p);
  for (auto p : {BlankPolicy::ignore, BlankPolicy::zeros}) EXPECT_EQ(parse_blank_policy(policy_name(p)), p);
  // Bad text is a usage error naming the option and the values it takes.
  for (const char* bad : {"maybe", "", "Ones", "ones ", "u-ones"}) {
    EXPECT_THROW(parse_uncertain_policy(bad), cx::UsageError) << bad;
    EXPECT_THROW(parse_blank_policy(bad), cx::UsageError) << bad;
  }
  EXPECT_EQ(error_of([] { parse_uncertain_policy("maybe"); }), "--uncertain maybe: expected ignore, ones or zeros");
  EXPECT_EQ(error_of([] { parse_blank_policy("ones"); }), "--blank ones: expected ignore or zeros");
  EXPECT_EQ(error_of([] { parse_uncertain_policy("half", "head.json: policy.uncertain"); }),
            "head.json: policy.uncertain half: expected ignore, ones or zeros");
  const LabelPolicy defaults;
  EXPECT_EQ(defaults.uncertain, UncertainPolicy::ignore);
  EXPECT_EQ(defaults.blank, BlankPolicy::zeros);
}

TEST(Labels, BinaryTargetUnderEveryPolicy) {
  // want[uncertain policy][blank policy][value]: 1, 0, or -1 left out.
  const UncertainPolicy us[] = {UncertainPolicy::ignore, UncertainPolicy::ones, UncertainPolicy::zeros};
  const BlankPolicy bs[] = {BlankPolicy::ignore, BlankPolicy::zeros};
  const int want[3][2][4] = {
      {{1, 0, -1, -1}, {1, 0, -1, 0}},  // U-Ignore
      {{1, 0, 1, -1}, {1, 0, 1, 0}},    // U-Ones
      {{1, 0, 0, -1}, {1, 0, 0, 0}},    // U-Zeros
  };
  for (int u = 0; u < 3; ++u)
    for (int b = 0; b < 2; ++b)
      for (int v = 0; v < 4; ++v) {
        const auto t = binary_target(kAll[v], LabelPolicy{us[u], bs[b]});
        EXPECT_EQ(t ? static_cast<int>(*t) : -1, want[u][b][v])
            << policy_name(us[u]) << "/" << policy_name(bs[b]) << " " << label_name(kAll[v]);
      }
}

TEST(Labels, SetsLoadByName) {
  EXPECT_EQ(load_label_set("chexpert14").classes.size(), 14u);
  auto c5 = load_label_set("chexpert5");
  EXPECT_EQ(c5.classes, (std::vector<std::string>{"Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"}));
  EXPECT_EQ(load_label_set("nih14").classes.size(), 14u);
  EXPECT_EQ(load_label_set("nih8").classes.size(), 8u);
  auto v = load_label_set("vindr");
  EXPECT_EQ(v.classes.size(), 15u);
  EXPECT_EQ(v.classes.front(), "Aortic enlargement");
  EXPECT_EQ(v.classes.back(), "No finding");
  EXPECT_EQ(load_label_set("rsna").classes, std::vector<std::string>{"Pneumonia"});
  EXPECT_THROW(load_label_set("nonexistent"), cx::Error);
  EXPECT_THROW(load_label_set("../etc/passwd"), cx::Error);
  EXPECT_THROW(parse_label_set("A\nB\nA\n", "x"), cx::Error);
  // Comments, blank lines and white space around names.
  auto p = parse_label_set("# a set\n  A  \r\n\nB # the second\n\t\n", "x");
  EXPECT_EQ(p.classes, (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(p.index("B"), 1);
  EXPECT_EQ(p.index("C"), -1);
  EXPECT_EQ(error_of([] { parse_label_set("# only a comment\n", "x.txt"); }), "x.txt: label set has no classes");
}
