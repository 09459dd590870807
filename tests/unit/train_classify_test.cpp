// cx-classify's library (lib/cx/train): CheXpert label policies on the real train.csv coding, masked
// losses against direct formulas and torch's own BCE, AdamW against torch::optim::AdamW, feature
// standardisation and head folders round trips (bitwise-equal predictions), the encoder check,
// probe training (determinism, early stopping), augmentations, and fine-tuning that resumes from a
// checkpoint to the same weights as an uninterrupted run.
#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "cx/cli/error.hpp"
#include "cx/io/png.hpp"
#include "cx/io/sha256.hpp"
#include "cx/io/stream.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/train/augment.hpp"
#include "cx/train/dataset.hpp"
#include "cx/train/finetune.hpp"
#include "cx/train/head.hpp"
#include "cx/train/loss.hpp"
#include "cx/train/optim.hpp"
#include "cx/train/probe.hpp"
#include "test_support.hpp"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using cx::Image;
using cx::data::LabelValue;
using namespace cx::train;
using cx_test::shared_dir;
using cx_test::TempDir;

// The first `rows` data lines of a gzip CSV, split on commas (CheXpert's train.csv has no quoted
// fields in its first rows), read with zlib directly: independent of cx::data's CSV reader.
std::vector<std::vector<std::string>> read_gz_csv(const std::string& path, int rows) {
  std::vector<std::vector<std::string>> out;
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) return out;
  char buf[4096];
  while (static_cast<int>(out.size()) <= rows && gzgets(f, buf, sizeof buf)) {
    std::string line(buf);
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    std::vector<std::string> cells;
    std::string cell;
    for (char c : line) {
      if (c == ',') {
        cells.push_back(cell);
        cell.clear();
      } else {
        cell.push_back(c);
      }
    }
    cells.push_back(cell);
    out.push_back(cells);
  }
  gzclose(f);
  return out;
}

TEST(LabelPolicy, CheXpertCodingUnderEveryPolicy) {
  const std::string csv = shared_dir() + "/samples/labels/chexpert_train.csv.gz";
  if (!fs::exists(csv)) GTEST_SKIP() << "sample absent: " << csv;
  auto table = read_gz_csv(csv, 300);
  ASSERT_GT(table.size(), 100u);
  const auto& head = table[0];
  const std::vector<std::string> labels(head.begin() + 5, head.end());  // the 14 observations after Path..AP/PA
  ASSERT_EQ(labels.size(), 14u);
  EXPECT_EQ(labels.front(), "No Finding");

  // Records as cx-ingest writes them (the library's cell parser and JSON coding), read back by
  // record_labels, then targets under each policy, against the raw CSV text and CheXpert's rules.
  std::vector<cx::io::Record> records;
  std::vector<std::vector<std::string>> raw;
  for (std::size_t r = 1; r < table.size(); ++r) {
    ASSERT_EQ(table[r].size(), head.size()) << "row " << r;
    json l = json::object();
    std::vector<std::string> cells;
    for (std::size_t c = 0; c < labels.size(); ++c) {
      const std::string& cell = table[r][c + 5];
      cells.push_back(cell);
      LabelValue v = cx::data::parse_label_cell(cell, "row");
      if (v != LabelValue::blank || r % 2 == 0) l[labels[c]] = cx::data::label_to_json(v);  // odd rows omit blanks
    }
    cx::io::Record rec;
    rec.key = "r" + std::to_string(r);
    rec.set("json", json{{"labels", l}}.dump());
    records.push_back(rec);
    raw.push_back(cells);
  }
  std::map<std::string, int> seen;
  for (const auto& cells : raw)
    for (const auto& c : cells) ++seen[c];
  // The sample holds all four codes, so every rule below is exercised.
  ASSERT_GT(seen["1.0"], 0);
  ASSERT_GT(seen["0.0"], 0);
  ASSERT_GT(seen["-1.0"], 0);
  ASSERT_GT(seen[""], 0);
  ASSERT_EQ(seen["1.0"] + seen["0.0"] + seen["-1.0"] + seen[""], static_cast<int>(raw.size() * labels.size()));

  const auto n = static_cast<std::int64_t>(records.size());
  std::vector<std::int8_t> codes;
  for (const auto& rec : records)
    for (auto v : record_labels(rec, labels)) codes.push_back(v == LabelValue::blank ? kBlankCode : static_cast<std::int8_t>(v));
  torch::Tensor truth = torch::from_blob(codes.data(), {n, 14}, torch::kInt8).clone();

  for (auto u : {UncertainPolicy::ignore, UncertainPolicy::ones, UncertainPolicy::zeros})
    for (auto b : {BlankPolicy::ignore, BlankPolicy::zeros}) {
      torch::Tensor y, mask;
      make_targets(truth, {u, b}, y, mask);
      for (std::int64_t i = 0; i < n; ++i)
        for (std::int64_t c = 0; c < 14; ++c) {
          const std::string& cell = raw[static_cast<std::size_t>(i)][static_cast<std::size_t>(c)];
          // CheXpert (Irvin et al. 2019): U-Ignore masks uncertain, U-Ones maps it to 1, U-Zeros to 0.
          float want_y = 0, want_m = 1;
          if (cell == "1.0") want_y = 1;
          if (cell == "-1.0") {
            if (u == UncertainPolicy::ignore) want_m = 0;
            if (u == UncertainPolicy::ones) want_y = 1;
          }
          if (cell.empty() && b == BlankPolicy::ignore) want_m = 0;
          ASSERT_EQ(y[i][c].item<float>(), want_y) << "row " << i + 1 << " " << labels[static_cast<std::size_t>(c)] << " '" << cell << "'";
          ASSERT_EQ(mask[i][c].item<float>(), want_m) << "row " << i + 1 << " " << labels[static_cast<std::size_t>(c)];
        }
    }
  // Spelled-out spot check of the second data row: ",,-1.0,1.0,,-1.0,-1.0,,-1.0,,-1.0,,1.0,".
  EXPECT_EQ(raw[1][2], "-1.0");  // Cardiomegaly uncertain
  torch::Tensor y, mask;
  make_targets(truth, {UncertainPolicy::ones, BlankPolicy::zeros}, y, mask);
  EXPECT_EQ(y[1][2].item<float>(), 1.0f);
  make_targets(truth, {UncertainPolicy::ignore, BlankPolicy::zeros}, y, mask);
  EXPECT_EQ(mask[1][2].item<float>(), 0.0f);
  EXPECT_EQ(mask[1][0].item<float>(), 1.0f);  // blank No Finding counts as negative under zeros
  EXPECT_EQ(y[1][0].item<float>(), 0.0f);
}

TEST(LabelPolicy, NamesAndBadValues) {
  EXPECT_EQ(parse_uncertain_policy("ones"), UncertainPolicy::ones);
  EXPECT_THROW(parse_uncertain_policy("maybe"), cx::UsageError);
  EXPECT_THROW(parse_blank_policy("ones"), cx::UsageError);
  cx::io::Record r;
  r.key = "k1";
  r.set("json", R"({"labels": {"Edema": 2}})");
  try {
    record_labels(r, {"Edema"});
    FAIL() << "a label value of 2 was accepted";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("k1.json"), std::string::npos) << e.what();
  }
  r.set("json", R"({"id": "x"})");
  EXPECT_EQ(record_labels(r, {"Edema"})[0], LabelValue::blank);  // no labels at all: blank
}

TEST(LabelPolicy, ChooseLabels) {
  json header = {{"labels", {"A", "B"}}};
  EXPECT_EQ(choose_labels(header, "", "", "s"), (std::vector<std::string>{"A", "B"}));
  EXPECT_EQ(choose_labels(header, "B, C", "", "s"), (std::vector<std::string>{"B", "C"}));
  EXPECT_EQ(choose_labels(header, "", "chexpert5", "s").size(), 5u);
  auto v7 = choose_labels(header, "", "vindr7", "s");
  ASSERT_EQ(v7.size(), 7u);
  EXPECT_EQ(v7[5], "Tuberculosis");
  EXPECT_THROW(choose_labels(header, "A", "nih8", "s"), cx::UsageError);
  EXPECT_THROW(choose_labels(json::object(), "", "", "s"), cx::Error);
}

TEST(Loss, MaskedBceMatchesFormulaAndMaskedEntriesGetNoGradient) {
  auto gen = at::detail::createCPUGenerator(3);
  torch::Tensor z = (3 * torch::randn({6, 4}, gen)).requires_grad_();
  torch::Tensor y = (torch::rand({6, 4}, gen) > 0.5).to(torch::kFloat32);
  torch::Tensor m = (torch::rand({6, 4}, gen) > 0.3).to(torch::kFloat32);
  m[0][0] = 0;
  m[1][1] = 1;
  torch::Tensor loss = masked_bce_with_logits(z, y, m);
  loss.backward();

  // Direct formula in double over the used entries.
  double sum = 0, used = 0;
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 4; ++j) {
      if (m[i][j].item<float>() == 0) continue;
      const double zz = z[i][j].item<double>(), s = 1 / (1 + std::exp(-zz));
      sum += y[i][j].item<float>() == 1 ? -std::log(s) : -std::log(1 - s);
      used += 1;
    }
  EXPECT_NEAR(loss.item<double>(), sum / used, 1e-6);  // float32 softplus vs double log: ~1e-7 relative
  torch::Tensor g = z.grad().clone();
  EXPECT_EQ((g * (1 - m)).abs().max().item<float>(), 0.0f);  // exactly zero where masked
  EXPECT_GT((g * m).abs().sum().item<float>(), 0.0f);

  // Flipping the targets of masked entries changes neither the loss nor the gradient.
  torch::Tensor y2 = torch::where(m > 0, y, 1 - y);
  torch::Tensor z2 = z.detach().clone().requires_grad_();
  torch::Tensor loss2 = masked_bce_with_logits(z2, y2, m);
  loss2.backward();
  EXPECT_EQ(loss2.item<float>(), loss.item<float>());
  EXPECT_TRUE(torch::equal(z2.grad(), g));

  // With every entry used and a pos_weight, torch's own BCEWithLogits (mean) is the reference.
  torch::Tensor pw = torch::tensor({1.0f, 2.5f, 0.5f, 4.0f});
  torch::Tensor ones = torch::ones({6, 4});
  torch::Tensor ours = masked_bce_with_logits(z.detach(), y, ones, pw);
  torch::Tensor ref = torch::binary_cross_entropy_with_logits(z.detach(), y, {}, pw, at::Reduction::Mean);
  EXPECT_NEAR(ours.item<double>(), ref.item<double>(), 1e-6);  // float32 reduction order
}

TEST(Loss, BalancedWeightsAndSoftmax) {
  torch::Tensor y = torch::tensor({{1.f, 0.f}, {0.f, 0.f}, {0.f, 1.f}, {0.f, 0.f}});
  torch::Tensor m = torch::tensor({{1.f, 1.f}, {1.f, 0.f}, {1.f, 1.f}, {1.f, 1.f}});
  torch::Tensor w = balanced_pos_weight(y, m);
  EXPECT_FLOAT_EQ(w[0].item<float>(), 3.0f);  // 1 positive, 3 negatives
  EXPECT_FLOAT_EQ(w[1].item<float>(), 2.0f);  // 1 positive, 2 used negatives
  auto [cls, rows] = multiclass_targets(y, m);
  EXPECT_EQ(rows[0].item<float>(), 1.0f);
  EXPECT_EQ(cls[0].item<std::int64_t>(), 0);
  EXPECT_EQ(rows[1].item<float>(), 0.0f);  // an unused cell
  EXPECT_EQ(rows[3].item<float>(), 0.0f);  // no positive
  EXPECT_EQ(cls[2].item<std::int64_t>(), 1);
  torch::Tensor logits = torch::tensor({{2.f, -1.f}, {0.f, 0.f}, {0.5f, 1.5f}, {1.f, 1.f}});
  torch::Tensor ce = masked_softmax_cross_entropy(logits, cls, rows);
  torch::Tensor ref = torch::nn::functional::cross_entropy(logits.index({torch::tensor({0L, 2L})}), torch::tensor({0L, 1L}));
  EXPECT_NEAR(ce.item<double>(), ref.item<double>(), 1e-6);
}

TEST(Optim, AdamWMatchesTorch) {
  auto gen = at::detail::createCPUGenerator(5);
  torch::Tensor a = torch::randn({5, 3}, gen).requires_grad_();
  torch::Tensor b = a.detach().clone().requires_grad_();
  torch::Tensor target = torch::randn({5, 3}, gen);
  AdamW ours({ParamGroup{{"a"}, {a}, 0.01, 0.1}});
  torch::optim::AdamW theirs({b}, torch::optim::AdamWOptions(0.01).weight_decay(0.1));
  for (int step = 0; step < 20; ++step) {
    ours.zero_grad();
    ((a - target).pow(2).sum() * (step + 1)).backward();
    ours.step();
    theirs.zero_grad();
    ((b - target).pow(2).sum() * (step + 1)).backward();
    theirs.step();
  }
  // Same formula and order of operations; 1e-6 covers a different fused kernel order in torch.
  EXPECT_LT((a - b).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(ours.steps(), 20);

  // State round trip.
  AdamW copy({ParamGroup{{"a"}, {a.detach().clone().requires_grad_()}, 0.01, 0.1}});
  copy.load_state(ours.state(), "state");
  auto s1 = ours.state(), s2 = copy.state();
  ASSERT_EQ(s1.size(), s2.size());
  for (std::size_t i = 0; i < s1.size(); ++i) EXPECT_TRUE(torch::equal(s1[i].second, s2[i].second)) << s1[i].first;
  EXPECT_THROW(copy.load_state({}, "empty.safetensors"), cx::Error);
}

// A parameter without a gradient (DINOv2's frozen prototype layer) is skipped and not counted: its
// bias correction starts with its first real update, as torch's per-parameter step does; the count
// survives a state round trip.
// zero_grad(set_to_none): gradients undefined until the backward, the same updates bit for bit as
// zeroing them; a parameter the backward does not reach then keeps no gradient and is not updated.
TEST(Optim, AdamWZeroGradSetToNoneGivesTheSameUpdates) {
  auto gen = at::detail::createCPUGenerator(7);
  torch::Tensor a = torch::randn({5, 3}, gen).requires_grad_(), unused = torch::randn({2}, gen).requires_grad_();
  torch::Tensor a2 = a.detach().clone().requires_grad_();
  AdamW none({ParamGroup{{"a", "unused"}, {a, unused}, 0.01, 0.1}});
  AdamW zeroed({ParamGroup{{"a"}, {a2}, 0.01, 0.1}});
  const torch::Tensor unused0 = unused.detach().clone();
  for (int step = 0; step < 5; ++step) {
    none.zero_grad(/*set_to_none=*/true);
    EXPECT_FALSE(a.grad().defined());
    zeroed.zero_grad();
    (a.pow(3).sum() * (step + 1)).backward();
    (a2.pow(3).sum() * (step + 1)).backward();
    none.step();
    zeroed.step();
  }
  EXPECT_TRUE(torch::equal(a.detach(), a2.detach()));
  EXPECT_FALSE(unused.grad().defined());
  EXPECT_TRUE(torch::equal(unused.detach(), unused0));
}

TEST(Optim, AdamWCountsEachParametersOwnUpdates) {
  auto gen = at::detail::createCPUGenerator(6);
  torch::Tensor a = torch::randn({4}, gen).requires_grad_(), b = torch::randn({3}, gen).requires_grad_();
  torch::Tensor a2 = a.detach().clone().requires_grad_(), b2 = b.detach().clone().requires_grad_();
  AdamW ours({ParamGroup{{"a", "b"}, {a, b}, 0.01, 0.1}});
  torch::optim::AdamW theirs({a2, b2}, torch::optim::AdamWOptions(0.01).weight_decay(0.1));
  for (int step = 0; step < 6; ++step) {
    const bool freeze_b = step < 3;
    ours.zero_grad();
    theirs.zero_grad();
    (a.pow(2).sum() + b.pow(3).sum()).backward();
    (a2.pow(2).sum() + b2.pow(3).sum()).backward();
    if (freeze_b) {
      b.mutable_grad() = torch::Tensor();
      b2.mutable_grad() = torch::Tensor();
    }
    if (step == 4) {  // a resumed optimizer continues with the same counts
      AdamW copy({ParamGroup{{"a", "b"}, {a, b}, 0.01, 0.1}});
      copy.load_state(ours.state(), "state");
      copy.step();
      theirs.step();
      ours.load_state(copy.state(), "state");
      continue;
    }
    ours.step();
    theirs.step();
  }
  EXPECT_LT((a - a2).abs().max().item<double>(), 1e-6);
  EXPECT_LT((b - b2).abs().max().item<double>(), 1e-6);
}

TEST(Standardizer, FitApplyAndSaveRoundTrip) {
  auto gen = at::detail::createCPUGenerator(11);
  torch::Tensor x = torch::randn({200, 6}, gen) * torch::tensor({1.f, 10.f, 0.1f, 3.f, 1.f, 2.f}) + torch::tensor({5.f, -3.f, 0.f, 100.f, 1.f, 7.f});
  x.select(1, 4).fill_(2.5f);  // a constant feature must not produce inf or NaN
  Standardizer s = Standardizer::fit(x);
  torch::Tensor z = s.apply(x);
  EXPECT_TRUE(torch::isfinite(z).all().item<bool>());
  for (int c : {0, 1, 2, 3, 5}) {
    EXPECT_NEAR(z.select(1, c).mean().item<double>(), 0.0, 1e-5);  // float32 arithmetic on |x| up to ~100
    EXPECT_NEAR(z.select(1, c).std(false).item<double>(), 1.0, 1e-5);
  }
  EXPECT_EQ(z.select(1, 4).abs().max().item<float>(), 0.0f);

  Head head;
  head.info.labels = {"A"};
  head.info.feature = "cx5";
  head.info.shape = {HeadType::linear, 6, 0, 1};
  head.info.encoder = {{"id", "enc"}, {"sha256", "ab"}};
  head.module = std::make_shared<HeadModule>(head.info.shape);
  head.module->init(1);
  head.standardizer = s;
  TempDir tmp;
  write_folder_atomic(tmp / "h", [&](const std::string& dir) { write_head_files(dir, head); });
  Head back = load_head(tmp / "h");
  EXPECT_TRUE(torch::equal(back.standardizer.mean, s.mean));
  EXPECT_TRUE(torch::equal(back.standardizer.std, s.std));
  EXPECT_TRUE(torch::equal(back.standardizer.apply(x), z));
}

// Two Gaussian blobs per label: a feature set whose labels a linear head can learn.
FeatureSet blobs(std::int64_t n, std::uint64_t seed, const json& model = {{"id", "enc"}, {"sha256", "0123456789abcdef"}}) {
  auto gen = at::detail::createCPUGenerator(seed);
  FeatureSet s;
  torch::Tensor y = (torch::rand({n, 2}, gen) > 0.5).to(torch::kInt8);
  torch::Tensor x = torch::randn({n, 8}, gen);
  x.narrow(1, 0, 2).add_(1.5 * y.to(torch::kFloat32));
  s.x = x * 4 + 10;  // unstandardised scale
  s.truth = y;
  s.truth[0][0] = -1;
  s.truth[1][1] = kBlankCode;
  s.header = {{"labels", {"A", "B"}}, {"model", model}};
  for (std::int64_t i = 0; i < n; ++i) s.keys.push_back("k" + std::to_string(i));
  return s;
}

TEST(Probe, AdamWLearnsDeterministicallyAndStopsEarly) {
  FeatureSet val = blobs(200, 2);
  ProbeOptions o;
  o.solver = Solver::adamw;
  o.epochs = 30;
  o.batch = 32;
  o.lr = 0.01;
  o.patience = 3;
  int epochs_seen = 0;
  Head a = train_head(blobs(400, 1), &val, {"A", "B"}, "cx5", o, [&](const EpochReport&) { ++epochs_seen; });
  Head b = train_head(blobs(400, 1), &val, {"A", "B"}, "cx5", o);
  for (std::size_t i = 0; i < a.module->parameters().size(); ++i)
    EXPECT_TRUE(torch::equal(a.module->parameters()[i], b.module->parameters()[i]));  // same seed, same bits
  const json& m = a.info.metrics["val"];
  EXPECT_GT(m["macro_auroc"].get<double>(), 0.8) << m.dump();  // separable by 1.5 sd: AUROC ~0.85
  EXPECT_EQ(m["n"]["A"], 199);  // the uncertain cell is not scored
  EXPECT_EQ(a.info.training["epochs_run"].get<int>(), epochs_seen);
  const int best = a.info.training["best_epoch"].get<int>();
  EXPECT_TRUE(epochs_seen == 30 || epochs_seen == best + 3) << epochs_seen << " epochs, best " << best;
  EXPECT_EQ(a.info.encoder["sha256"], "0123456789abcdef");

  // The reported metric is cx::metrics::auroc of the head's own predictions.
  Evaluation e = evaluate_auroc(a.probabilities(val.x), val.truth);
  EXPECT_DOUBLE_EQ(e.macro, m["macro_auroc"].get<double>());

  ProbeOptions other = o;
  other.seed = 9;
  Head c = train_head(blobs(400, 1), &val, {"A", "B"}, "cx5", other);
  EXPECT_FALSE(torch::equal(a.module->parameters()[0], c.module->parameters()[0]));

  // Validation from another encoder is refused.
  FeatureSet foreign = blobs(50, 3, {{"id", "other"}, {"sha256", "ffff"}});
  EXPECT_THROW(train_head(blobs(100, 1), &foreign, {"A", "B"}, "cx5", o), cx::Error);
  ProbeOptions binary = o;
  binary.task = Task::binary;
  EXPECT_THROW(train_head(blobs(100, 1), nullptr, {"A", "B"}, "cx5", binary), cx::UsageError);
}

// Newton's method in float64 on one label's objective (probe.hpp): mean masked BCE + l2 / 2 |w|^2,
// bias not penalised. Independent of the probe's code and of L-BFGS.
torch::Tensor newton_reference(const torch::Tensor& x, const torch::Tensor& y, const torch::Tensor& used, double l2) {
  torch::Tensor X = torch::cat({x.to(torch::kFloat64), torch::ones({x.size(0), 1}, torch::kFloat64)}, 1);
  X = X.index({used});
  torch::Tensor t = y.to(torch::kFloat64).index({used});
  const double n = static_cast<double>(X.size(0));
  torch::Tensor reg = torch::eye(X.size(1), torch::kFloat64) * l2;
  reg[X.size(1) - 1][X.size(1) - 1] = 0;
  torch::Tensor w = torch::zeros({X.size(1)}, torch::kFloat64);
  for (int it = 0; it < 50; ++it) {
    torch::Tensor p = torch::sigmoid(X.matmul(w));
    torch::Tensor g = X.t().matmul(p - t) / n + reg.matmul(w);
    torch::Tensor h = X.t().matmul(X * (p * (1 - p)).unsqueeze(1)) / n + reg;
    w = w - torch::linalg_solve(h, g);
  }
  return w;  // [F + 1]: weights, then bias
}

TEST(Probe, LbfgsReachesTheRegularisedOptimumPerLabel) {
  FeatureSet train = blobs(300, 1);
  // Label B's blank cell is ignored under blank=ignore, A's uncertain cell under U-Ignore.
  ProbeOptions o;
  o.l2_grid = {0.01};
  o.policy.blank = BlankPolicy::ignore;
  Head a = train_head(train, nullptr, {"A", "B"}, "cx5", o);
  Head b = train_head(train, nullptr, {"A", "B"}, "cx5", o);
  for (std::size_t i = 0; i < a.module->parameters().size(); ++i)
    EXPECT_TRUE(torch::equal(a.module->parameters()[i], b.module->parameters()[i]));  // deterministic
  EXPECT_TRUE(a.info.training["converged"].get<bool>()) << a.info.training.dump();
  EXPECT_EQ(a.info.training["optimizer"], "L-BFGS");
  EXPECT_EQ(a.info.training["l2"]["A"], 0.01);
  torch::Tensor z = a.standardizer.apply(train.x);
  for (std::int64_t l = 0; l < 2; ++l) {
    torch::Tensor codes = train.truth.select(1, l);
    torch::Tensor used = (codes == 0) | (codes == 1);
    torch::Tensor ref = newton_reference(z, codes == 1, used, 0.01);
    torch::Tensor ours = torch::cat({a.module->parameters()[0][l], a.module->parameters()[1].narrow(0, l, 1)}).to(torch::kFloat64);
    // L-BFGS stops at |gradient| <= 1e-5 in float32: the weights agree to ~1e-4 (curvature >= l2 = 0.01).
    EXPECT_LT((ours - ref).abs().max().item<double>(), 2e-3) << "label " << l << "\n" << ours << "\n" << ref;
  }
}

TEST(Probe, LbfgsChoosesL2OnValidationOrHeldOutRecords) {
  FeatureSet train = blobs(200, 1), val = blobs(100, 2);
  ProbeOptions o;
  o.l2_grid = {1e-4, 1e-2, 1.0};
  int reports = 0;
  Head h = train_head(train, &val, {"A", "B"}, "cx5", o, [&](const EpochReport& r) {
    ++reports;
    EXPECT_FALSE(std::isnan(r.l2));
    EXPECT_FALSE(std::isnan(r.val_macro_auroc));
  });
  EXPECT_EQ(reports, 3);
  const json& t = h.info.training;
  EXPECT_EQ(t["l2_grid"], json({1.0, 1e-2, 1e-4}));  // fitted from the strongest to the weakest
  EXPECT_EQ(t["l2_chosen_on"], "validation stream");
  EXPECT_FALSE(t["refit_on_all_training_records"].get<bool>());
  for (const char* l : {"A", "B"}) {
    const double v = t["l2"][l].get<double>();
    EXPECT_TRUE(v == 1e-4 || v == 1e-2 || v == 1.0) << v;
  }
  EXPECT_GT(h.info.metrics["val"]["macro_auroc"].get<double>(), 0.8);

  Head held = train_head(train, nullptr, {"A", "B"}, "cx5", o);
  EXPECT_EQ(held.info.training["l2_chosen_on"], "held-out training records");
  EXPECT_TRUE(held.info.training["refit_on_all_training_records"].get<bool>());
  EXPECT_TRUE(held.info.training["converged"].get<bool>());
  Head again = train_head(train, nullptr, {"A", "B"}, "cx5", o);
  EXPECT_TRUE(torch::equal(held.module->parameters()[0], again.module->parameters()[0]));

  EXPECT_EQ(parse_l2_grid("1e-3, 0.1"), (std::vector<double>{1e-3, 0.1}));
  EXPECT_THROW(parse_l2_grid("1e-3,-1"), cx::UsageError);
  EXPECT_THROW(parse_l2_grid("x"), cx::UsageError);
  EXPECT_THROW(parse_l2_grid(""), cx::UsageError);
  EXPECT_EQ(default_l2_grid().size(), 7u);
  EXPECT_EQ(parse_solver("adamw"), Solver::adamw);
  EXPECT_THROW(parse_solver("sgd"), cx::UsageError);
}

TEST(HeadFolder, SaveLoadGivesBitwiseSamePredictions) {
  FeatureSet val = blobs(64, 4);
  for (HeadType type : {HeadType::linear, HeadType::mlp}) {
    ProbeOptions o;
    o.head = type;
    o.hidden = 16;
    o.epochs = 3;
    o.batch = 16;
    o.policy.uncertain = UncertainPolicy::ones;
    Head head = train_head(blobs(128, 1), &val, {"A", "B"}, "cls", o);
    TempDir tmp;
    const std::string dir = tmp / "head";
    write_folder_atomic(dir, [&](const std::string& t) { write_head_files(t, head); });
    Head back = load_head(dir);
    EXPECT_TRUE(torch::equal(back.probabilities(val.x), head.probabilities(val.x))) << head_type_name(type);
    EXPECT_EQ(back.info.labels, head.info.labels);
    EXPECT_EQ(back.info.feature, "cls");
    EXPECT_EQ(back.info.policy.uncertain, UncertainPolicy::ones);
    EXPECT_EQ(back.info.shape.type, type);
    EXPECT_EQ(back.info.encoder, head.info.encoder);
    EXPECT_EQ(back.info.metrics, head.info.metrics);
    // Overwriting is atomic: no temporary or old folder is left beside it.
    write_folder_atomic(dir, [&](const std::string& t) { write_head_files(t, head); });
    std::size_t entries = 0;
    for ([[maybe_unused]] const auto& e : fs::directory_iterator(tmp.path())) ++entries;
    EXPECT_EQ(entries, 1u);
  }
}

TEST(HeadFolder, BadFoldersNamed) {
  TempDir tmp;
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const cx::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message([&] { load_head(tmp / "none"); }).find("no such folder"), std::string::npos);
  fs::create_directories(tmp / "h");
  std::ofstream(tmp / "h/head.json") << R"({"format": "cx-head", "version": "2.0"})";
  EXPECT_NE(message([&] { load_head(tmp / "h"); }).find("newer"), std::string::npos);
  std::ofstream(tmp / "h/head.json") << R"({"format": "cx-head", "version": "1.0", "task": "multilabel", "labels": ["A"],
    "feature": "cx5", "head": {"type": "linear", "in": 4, "out": 1}, "policy": {"uncertain": "ignore", "blank": "zeros"}})";
  EXPECT_NE(message([&] { load_head(tmp / "h"); }).find("head.safetensors"), std::string::npos);
  // A failed fill leaves no trace.
  EXPECT_THROW(write_folder_atomic(tmp / "x", [](const std::string&) { throw cx::Error("boom"); }), cx::Error);
  EXPECT_FALSE(fs::exists(tmp / "x"));
}

TEST(HeadFolder, EncoderMismatchRefusedByName) {
  HeadInfo info;
  info.encoder = {{"id", "CXformer-small"}, {"sha256", "aaaa1111bbbb2222"}};
  json same = {{"model", {{"id", "renamed-folder"}, {"sha256", "aaaa1111bbbb2222"}}}};
  EXPECT_NO_THROW(check_encoder(info, same, "s.cx"));  // the weights' hash is the identity
  json other = {{"model", {{"id", "rad-dino"}, {"sha256", "cccc3333dddd4444"}}}};
  try {
    check_encoder(info, other, "test.cx");
    FAIL();
  } catch (const cx::Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("test.cx"), std::string::npos) << m;
    EXPECT_NE(m.find("rad-dino"), std::string::npos) << m;
    EXPECT_NE(m.find("CXformer-small"), std::string::npos) << m;
    EXPECT_NE(m.find("--ignore-encoder"), std::string::npos) << m;
  }
  EXPECT_THROW(check_encoder(info, json::object(), "plain.tar"), cx::Error);
}

TEST(Augment, DeterministicBoundedAndIdentityWhenDisabled) {
  Image g = Image::gray8(40, 30);
  for (int i = 0; i < 40 * 30; ++i) g.data[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>((i * 7) % 256);
  torch::Tensor unit = gray_to_unit(g);
  AugmentOptions o;
  o.height = o.width = 28;
  CounterRng r1(1, 3, 0, 5), r2(1, 3, 0, 5), r3(1, 3, 1, 5);
  torch::Tensor a = augment_gray(unit, o, r1), b = augment_gray(unit, o, r2), c = augment_gray(unit, o, r3);
  EXPECT_EQ(a.sizes().vec(), (std::vector<std::int64_t>{3, 28, 28}));
  EXPECT_TRUE(torch::equal(a, b));
  EXPECT_FALSE(torch::equal(a, c));
  for (int k = 0; k < 200; ++k) {
    CounterRng r(7, 1, static_cast<std::uint64_t>(k));
    CropBox box = random_resized_crop_box(30, 40, o, r);
    ASSERT_GE(box.top, 0);
    ASSERT_GE(box.left, 0);
    ASSERT_GT(box.height, 0);
    ASSERT_LE(box.top + box.height, 30);
    ASSERT_LE(box.left + box.width, 40);
    const double area = static_cast<double>(box.height * box.width) / (30 * 40);
    ASSERT_LE(area, 1.0);
  }
  // Every random step off, full-area crop: a plain antialiased bicubic resize then normalisation.
  AugmentOptions off = o;
  off.scale_min = off.scale_max = 1.0;
  off.ratio_min = off.ratio_max = 40.0 / 30.0;
  off.flip_p = off.jitter_p = off.blur_p = 0;
  off.degrees = off.translate = 0;
  off.zoom_min = off.zoom_max = 1;
  CounterRng r(1, 1);
  torch::Tensor x = augment_gray(unit, off, r);
  namespace F = torch::nn::functional;
  torch::Tensor want = F::interpolate(unit.view({1, 1, 30, 40}), F::InterpolateFuncOptions()
                                                                      .size(std::vector<std::int64_t>{28, 28})
                                                                      .mode(torch::kBicubic)
                                                                      .align_corners(false)
                                                                      .antialias(true))
                           .view({28, 28})
                           .clamp(0, 1);
  // The identity affine resamples at pixel centres exactly; 1e-5 covers bilinear weights of 1 - 1e-7.
  EXPECT_LT((x[1] - (want - 0.456) / 0.224).abs().max().item<double>(), 1e-5);
}

// A tiny encoder folder (random weights) and a stream of small gray PNGs with two labels.
struct TinySetup {
  TempDir tmp;
  std::string encoder;
  ImageSet images;
  cx::image::PreprocessConfig preprocess;
  TinySetup() {
    cx::model::VitConfig c = cx::model::vit_small_registers_config();
    c.hidden_size = 32;
    c.num_attention_heads = 2;
    c.num_hidden_layers = 2;
    c.image_size = 28;
    c.num_register_tokens = 2;
    encoder = tmp / "enc";
    cx::model::save_hf_folder(encoder, c, cx::model::random_vit_weights(c, 3));
    const json pp = {{"image_processor_type", "BitImageProcessor"}, {"size", {{"shortest_edge", 28}}},
                     {"crop_size", {{"height", 28}, {"width", 28}}}, {"do_center_crop", true},
                     {"image_mean", {0.485, 0.456, 0.406}}, {"image_std", {0.229, 0.224, 0.225}}};
    std::ofstream(encoder + "/preprocessor_config.json") << pp.dump();
    preprocess = cx::image::PreprocessConfig::from_file(encoder + "/preprocessor_config.json");
    std::vector<std::int8_t> truth;
    for (int i = 0; i < 10; ++i) {
      Image g = Image::gray8(36, 32);
      const bool bright = i % 2 == 0;
      for (std::size_t k = 0; k < g.data.size(); ++k) g.data[k] = static_cast<std::uint8_t>((k * (i + 3)) % 97 + (bright ? 120 : 10));
      images.keys.push_back("img" + std::to_string(i));
      images.image_names.push_back(images.keys.back() + ".png");
      images.images.push_back(cx::io::encode_png(g));
      truth.push_back(bright ? 1 : 0);
      truth.push_back(i % 3 == 0 ? -1 : static_cast<std::int8_t>(i % 3 == 1));
    }
    images.truth = torch::from_blob(truth.data(), {10, 2}, torch::kInt8).clone();
  }
  FinetuneOptions options() const {
    FinetuneOptions o;
    o.encoder_folder = encoder;
    o.preprocess = preprocess;
    o.preprocess_record = {{"pipeline", "hf"}};
    o.batch = 3;
    o.steps = 4;
    o.lr_backbone = 1e-3;  // large, so that the encoder visibly moves in 4 updates
    o.lr_head = 1e-2;
    o.seed = 5;
    o.patience = 0;
    return o;
  }
};

std::vector<torch::Tensor> all_params(FinetuneResult& r) {
  std::vector<torch::Tensor> out;
  for (const auto& p : r.encoder->parameters()) out.push_back(p.detach().clone());
  for (const auto& p : r.head.module->parameters()) out.push_back(p.detach().clone());
  return out;
}

TEST(Finetune, ResumedRunEqualsUninterruptedRun) {
  TinySetup t;
  const std::vector<std::string> labels = {"A", "B"};
  FinetuneOptions o = t.options();
  o.accum = 2;
  FinetuneResult full = finetune(t.images, &t.images, labels, o);
  ASSERT_TRUE(full.finished);
  EXPECT_EQ(full.steps_done, 4);

  FinetuneOptions first = o;
  first.checkpoint_dir = t.tmp / "ckpt";
  first.stop_after = 2;
  FinetuneResult part = finetune(t.images, &t.images, labels, first);
  EXPECT_FALSE(part.finished);
  EXPECT_EQ(part.steps_done, 2);
  json state = json::parse(std::ifstream(t.tmp / "ckpt/state.json"));
  EXPECT_EQ(state["step"], 2);
  for (const char* f : {"encoder/config.json", "encoder/model.safetensors", "head.safetensors", "optimizer.safetensors"})
    EXPECT_TRUE(fs::exists(t.tmp / "ckpt/" + f)) << f;

  FinetuneOptions second = o;
  second.resume = t.tmp / "ckpt";
  FinetuneResult resumed = finetune(t.images, &t.images, labels, second);
  ASSERT_TRUE(resumed.finished);
  auto a = all_params(full), b = all_params(resumed);
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  EXPECT_EQ(full.head.info.metrics, resumed.head.info.metrics);

  // The encoder was trained (gradients reach it through the ViT's forward).
  auto start = cx::model::load_hf_vit(t.encoder).model;
  EXPECT_FALSE(torch::equal(start->parameter("encoder.layer.0.attention.attention.query.weight"),
                            full.encoder->parameter("encoder.layer.0.attention.attention.query.weight")));

  // Other settings are refused by name.
  FinetuneOptions changed = second;
  changed.batch = 2;
  try {
    finetune(t.images, nullptr, labels, changed);
    FAIL();
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch"), std::string::npos) << e.what();
  }
}

TEST(Finetune, HeadFolderWithEncoderPredictsTheSame) {
  TinySetup t;
  const std::vector<std::string> labels = {"A", "B"};
  FinetuneOptions o = t.options();
  o.steps = 2;
  FinetuneResult r = finetune(t.images, nullptr, labels, o);
  const std::string dir = t.tmp / "head";
  write_finetuned_head(dir, r, o);
  EXPECT_EQ(r.head.info.encoder["sha256"], cx::io::sha256_file_hex(dir + "/encoder/model.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/encoder/preprocessor_config.json"));
  Head back = load_head(dir);
  EXPECT_EQ(back.info.encoder_folder, "encoder");
  auto enc = cx::model::load_hf_vit(dir + "/encoder").model;
  std::vector<const std::string*> imgs;
  for (const auto& s : t.images.images) imgs.push_back(&s);
  torch::Tensor p1 = predict_images(r.head, *r.encoder, t.preprocess, imgs, t.images.image_names, torch::kCPU,
                                    cx::model::Precision::f32, 4);
  torch::Tensor p2 = predict_images(back, *enc, t.preprocess, imgs, t.images.image_names, torch::kCPU,
                                    cx::model::Precision::f32, 4);
  EXPECT_TRUE(torch::equal(p1, p2));
  EXPECT_EQ(p1.sizes().vec(), (std::vector<std::int64_t>{10, 2}));
}

}  // namespace
