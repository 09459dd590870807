// cx-report's small decoder and retrieval baseline (lib/cx/train/report_decoder, report_retrieve,
// report_decoder_config): memories from cx-embed fields, the module's shapes, the KV-cached decoder
// against the teacher-forced forward, select_rows, the label-smoothed loss against a hand
// computation, teacher-forcing sequences, training that learns memory-determined reports and then
// decodes them greedily, bit-exact resume from a checkpoint, the folder and its load errors,
// decoder.json validation, and nearest-neighbour retrieval with its index folder.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/io/json_file.hpp"
#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"
#include "cx/train/checkpoint.hpp"
#include "cx/train/report_decoder.hpp"
#include "cx/train/report_decoder_config.hpp"
#include "cx/train/report_retrieve.hpp"
#include "test_support.hpp"

namespace {
using namespace cx::train;
using cx_test::error_of;
using cx_test::TempDir;

// Records held in memory, as a RecordSource.
class VectorSource : public cx::data::RecordSource {
 public:
  explicit VectorSource(std::vector<cx::io::Record> records, nlohmann::json header = cx::io::new_stream_header())
      : records_(std::move(records)), header_(std::move(header)) {}
  const nlohmann::json& header() const override { return header_; }
  bool next(cx::io::Record& r) override {
    if (i_ >= records_.size()) return false;
    r = records_[i_++];
    return true;
  }

 private:
  std::vector<cx::io::Record> records_;
  nlohmann::json header_;
  std::size_t i_ = 0;
};

std::string npy_f32(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat32).contiguous();
  std::vector<float> v(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return cx::io::write_npy(cx::io::NdArray::from_floats(v, c.sizes().vec()));
}

std::string npy_f16(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat32).contiguous();
  cx::io::NdArray a = cx::io::NdArray::zeros(cx::io::DType::f16, c.sizes().vec());
  auto* h = a.as<std::uint16_t>();
  for (std::int64_t i = 0; i < c.numel(); ++i) h[i] = cx::io::float_to_half(c.data_ptr<float>()[i]);
  return cx::io::write_npy(a);
}

// A cx-embed record: patch [h, w, D] (f16 or f32), optional reg [R, D] and cls [D], optional text.
cx::io::Record embed_record(const std::string& key, const torch::Tensor& patch, const torch::Tensor& reg,
                            const torch::Tensor& cls, const std::string& text, bool f16 = false) {
  cx::io::Record r;
  r.key = key;
  r.set("json", "{}");
  if (cls.defined()) r.set("cls.npy", npy_f32(cls));
  if (patch.defined()) r.set("patch.npy", f16 ? npy_f16(patch) : npy_f32(patch));
  if (reg.defined()) r.set("reg.npy", npy_f32(reg));
  if (!text.empty()) r.set("txt", text);
  return r;
}

MemoryLayout small_layout(std::int64_t h = 2, std::int64_t w = 2, std::int64_t R = 1, std::int64_t D = 8) {
  MemoryLayout m;
  m.grid_h = h;
  m.grid_w = w;
  m.registers = R;
  m.dim = D;
  return m;
}

ReportDecoderShape tiny_shape(std::int64_t vocab = 12) {
  ReportDecoderShape s;
  s.vocab_size = vocab;
  s.d_model = 32;
  s.layers = 2;
  s.heads = 2;
  s.ffn = 64;
  s.max_len = 10;
  s.dropout = 0.0;
  return s;
}

// A decoder with weights large enough that attention is far from uniform (init's 0.02 would make
// every comparison of logits trivially close), and standardisation statistics.
ReportDecoder random_decoder(const ReportDecoderShape& shape, const MemoryLayout& layout, std::uint64_t seed) {
  ReportDecoder d;
  d.config.shape = shape;
  d.config.memory = layout;
  d.module = std::make_shared<ReportDecoderModule>(shape, layout);
  torch::manual_seed(seed);
  {
    torch::NoGradGuard g;
    for (auto& p : d.module->parameters()) p.copy_(torch::randn(p.sizes()) * 0.3);
  }
  d.mean = torch::randn({layout.dim}) * 0.1;
  d.std = torch::rand({layout.dim}) + 0.5;
  d.module->eval();
  return d;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

// --- memories -------------------------------------------------------------------------------------

TEST(ReportMemory, OrderIsClsRegistersPatchesAndFloat16IsKept) {
  const torch::Tensor patch = torch::arange(2 * 3 * 4, torch::kFloat32).view({2, 3, 4}) / 8;
  const torch::Tensor reg = torch::arange(8, torch::kFloat32).view({2, 4}) + 100;
  const torch::Tensor cls = torch::full({4}, -1.0f);
  cx::io::Record r = embed_record("a", patch, reg, cls, "FINDINGS: x.", /*f16=*/true);

  MemoryOptions o;
  o.cls = true;
  MemoryLayout m = record_memory_layout(r, o, "a");
  EXPECT_EQ(m.grid_h, 2);
  EXPECT_EQ(m.grid_w, 3);
  EXPECT_EQ(m.registers, 2);
  EXPECT_TRUE(m.cls);
  EXPECT_EQ(m.dim, 4);
  EXPECT_EQ(m.slots(), 1 + 2 + 6);
  EXPECT_EQ(m.describe(), "cls + 2 registers + 2x3 patch tokens of 4");

  torch::Tensor mem = record_memory(r, m, "a");
  ASSERT_EQ(mem.scalar_type(), torch::kHalf);  // the patch tokens' dtype; reg and cls converted to it
  ASSERT_EQ(mem.sizes().vec(), (std::vector<std::int64_t>{9, 4}));
  torch::Tensor f = mem.to(torch::kFloat32);
  EXPECT_TRUE(torch::equal(f[0], cls));
  EXPECT_TRUE(torch::equal(f.narrow(0, 1, 2), reg));  // exact in f16: small integers
  EXPECT_TRUE(torch::equal(f.narrow(0, 3, 6), patch.view({6, 4})));  // multiples of 1/8

  // Registers are used only when asked and present; CLS only when asked.
  o.cls = false;
  o.registers = false;
  EXPECT_EQ(record_memory_layout(r, o, "a").slots(), 6);
  cx::io::Record no_reg = embed_record("b", patch, {}, {}, "");
  EXPECT_EQ(record_memory_layout(no_reg, MemoryOptions{}, "b").registers, 0);

  // A record that lacks what the layout needs, or has tokens of another shape.
  EXPECT_EQ(error_of([&] { record_memory(no_reg, m, "b"); }), "b: no cls.npy field (embed with cx-embed --emit cls)");
  MemoryLayout no_cls = m;
  no_cls.cls = false;
  EXPECT_EQ(error_of([&] { record_memory(no_reg, no_cls, "b"); }),
            "b: no reg.npy field, but the memory layout has 2 register tokens");
  cx::io::Record other = embed_record("c", torch::zeros({3, 3, 4}), reg, cls, "");
  EXPECT_EQ(error_of([&] { record_memory(other, m, "c"); }),
            "c.patch.npy: tokens of shape [3, 3, 4], but the memory layout is cls + 2 registers + 2x3 patch tokens of 4");
  cx::io::Record bad = embed_record("d", patch.clone().fill_(std::nanf("")), reg, cls, "");
  EXPECT_EQ(error_of([&] { record_memory(bad, m, "d"); }), "d: non-finite values in the memory tokens");
}

TEST(ReportMemory, LoadReportSetReadsTextsAndNamesBadRecords) {
  std::vector<cx::io::Record> records;
  for (int i = 0; i < 3; ++i)
    records.push_back(embed_record("r" + std::to_string(i), torch::full({2, 2, 8}, float(i)), torch::ones({1, 8}), {},
                                   "FINDINGS: " + std::to_string(i) + ".\n"));
  nlohmann::json header = cx::io::new_stream_header();
  header["model"] = {{"id", "enc"}, {"sha256", "abc"}};
  VectorSource src(records, header);
  ReportSet s = load_report_set(src, MemoryOptions{}, true, "train.cx");
  EXPECT_EQ(s.rows(), 3);
  EXPECT_EQ(s.keys, (std::vector<std::string>{"r0", "r1", "r2"}));
  EXPECT_EQ(s.texts[2], "FINDINGS: 2.\n");
  EXPECT_EQ(s.layout, small_layout());
  EXPECT_EQ(s.memory.sizes().vec(), (std::vector<std::int64_t>{3, 5, 8}));
  EXPECT_EQ(s.memory[1][3][0].item<float>(), 1.0f);
  EXPECT_EQ(s.header["model"]["id"], "enc");

  records.push_back(embed_record("r3", torch::zeros({2, 2, 8}), torch::ones({1, 8}), {}, ""));
  VectorSource src2(records);
  EXPECT_EQ(error_of([&] { load_report_set(src2, MemoryOptions{}, true, "train.cx"); }),
            "train.cx: r3: no .txt report to learn from");
  VectorSource src3(records);
  EXPECT_EQ(load_report_set(src3, MemoryOptions{}, false, "gen.cx").texts[3], "");
  VectorSource empty({});
  EXPECT_EQ(error_of([&] { load_report_set(empty, MemoryOptions{}, true, "e.cx"); }), "e.cx: no records");
}

// --- the module and the cache -------------------------------------------------------------------

TEST(ReportDecoderModel, ShapesAndParameterCount) {
  const auto shape = tiny_shape();
  const auto layout = small_layout();
  ReportDecoderModule m(shape, layout);
  ReportDecoderConfig c;
  c.shape = shape;
  c.memory = layout;
  std::int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  EXPECT_EQ(n, c.parameter_count());
  auto named = m.named_parameters();
  EXPECT_EQ(named["layers.1.cross_attn.out.weight"].sizes().vec(), (std::vector<std::int64_t>{32, 32}));
  EXPECT_EQ(named["memory.position"].sizes().vec(), (std::vector<std::int64_t>{5, 32}));
  EXPECT_EQ(named["embed.tokens"].sizes().vec(), (std::vector<std::int64_t>{12, 32}));

  m.init(7);
  EXPECT_EQ(named["layers.0.self_norm.weight"].sum().item<float>(), 32.0f);
  EXPECT_EQ(named["layers.0.ffn.fc1.bias"].abs().sum().item<float>(), 0.0f);
  EXPECT_NEAR(named["embed.tokens"].std().item<double>(), 0.02, 0.006);  // 384 draws of N(0, 0.02)
  ReportDecoderModule m2(shape, layout);
  m2.init(7);
  for (const auto& p : m2.named_parameters()) EXPECT_TRUE(torch::equal(p.value(), named[p.key()])) << p.key();

  m.eval();
  torch::Tensor z = m.forward(torch::randn({3, 5, 8}), torch::randint(0, 12, {3, 7}));
  EXPECT_EQ(z.sizes().vec(), (std::vector<std::int64_t>{3, 7, 12}));
  EXPECT_EQ(error_of([&] { m.forward(torch::randn({3, 4, 8}), torch::randint(0, 12, {3, 7})); }),
            "report decoder: memory of shape [3, 4, 8], expected [B, 5, 8]");
  EXPECT_EQ(error_of([&] { m.forward(torch::randn({3, 5, 8}), torch::randint(0, 12, {3, 11})); }),
            "report decoder: 11 positions, at most 10");
}

TEST(ReportDecoderModel, CachedStepsEqualTheTeacherForcedForward) {
  const auto d = random_decoder(tiny_shape(), small_layout(), 1);
  torch::manual_seed(2);
  const torch::Tensor memory = torch::randn({3, 5, 8}).to(torch::kHalf);  // raw memories as streams hold them
  torch::Tensor ids = torch::randint(3, 12, {3, 10});
  ids.select(1, 0).fill_(1);  // BOS
  const torch::Tensor full = d.logits(memory, ids);  // [3, 10, 12]
  // The logits are O(1-10) here: attention is far from uniform with these weights.
  EXPECT_GT(full.abs().max().item<double>(), 1.0);

  ReportDecoderCache cache(d);
  std::vector<torch::Tensor> steps = {cache.start(memory)};
  EXPECT_EQ(cache.max_new_tokens(), 9);
  for (int t = 1; t < 10; ++t) steps.push_back(cache.step(ids.select(1, t)));
  EXPECT_EQ(cache.positions(), 10);
  // Same arithmetic in another order (the cache attends with the fused kernel over the filled
  // positions, the full forward with a masked softmax): float32 rounding only.
  for (int t = 0; t < 10; ++t) {
    ASSERT_EQ(steps[t].sizes().vec(), (std::vector<std::int64_t>{3, 12}));
    EXPECT_LT(max_abs_diff(steps[t], full.select(1, t)), 1e-5) << "position " << t;
  }
  EXPECT_EQ(error_of([&] { cache.step(ids.select(1, 0)); }),
            "report decoder: all 10 positions are used (generate at most 9 tokens)");
}

TEST(ReportDecoderModel, Bfloat16ModuleDecodesCloseToFloat32) {
  const auto d = random_decoder(tiny_shape(), small_layout(), 1);
  ReportDecoder b = random_decoder(tiny_shape(), small_layout(), 1);  // the same weights
  b.module->to(torch::kBFloat16);
  torch::manual_seed(2);
  const torch::Tensor memory = torch::randn({2, 5, 8});
  ReportDecoderCache c32(d), c16(b);
  torch::Tensor z32 = c32.start(memory), z16 = c16.start(memory);
  ASSERT_EQ(z16.scalar_type(), torch::kFloat32);
  const torch::Tensor ids = torch::tensor({4, 9});
  z32 = c32.step(ids);
  z16 = c16.step(ids);
  // bfloat16 keeps 8 bits of mantissa: logits of O(1-10) agree to a few percent of their range.
  EXPECT_LT(max_abs_diff(z16, z32), 0.05 * z32.abs().max().item<double>());
}

TEST(ReportDecoderModel, SelectRowsReordersEveryCache) {
  const auto d = random_decoder(tiny_shape(), small_layout(), 3);
  torch::manual_seed(4);
  const torch::Tensor memory = torch::randn({3, 5, 8});
  ReportDecoderCache cache(d);
  cache.start(memory);
  const torch::Tensor a = torch::tensor({4, 5, 6});
  cache.step(a);
  cache.select_rows(torch::tensor({2, 0, 0, 1}));  // reorder, duplicate and grow: 4 rows
  EXPECT_EQ(cache.rows(), 4);
  const torch::Tensor b = torch::tensor({7, 8, 9, 10});
  const torch::Tensor got = cache.step(b);

  // The same rows decoded from scratch: memories [2, 0, 0, 1], sequences BOS, a[row], b.
  const torch::Tensor rows = torch::tensor({2, 0, 0, 1});
  const torch::Tensor ids = torch::stack({torch::ones({4}, torch::kInt64), a.index_select(0, rows), b}, 1);
  const torch::Tensor want = d.logits(memory.index_select(0, rows), ids).select(1, 2);
  EXPECT_LT(max_abs_diff(got, want), 1e-5);

  cache.select_rows(torch::tensor({3}));  // shrink to one row
  const torch::Tensor one = cache.step(torch::tensor({11}));
  const torch::Tensor ids1 = torch::tensor({{1, 5, 10, 11}});
  EXPECT_LT(max_abs_diff(one, d.logits(memory.narrow(0, 1, 1), ids1).select(1, 3)), 1e-5);
  EXPECT_EQ(error_of([&] { cache.select_rows(torch::tensor({1})); }),
            "report decoder: select_rows() index outside the 1 rows");
}

TEST(ReportDecoderModel, GreedyDecodeFollowsTheArgmaxAndStopsAtEos) {
  // Seed 7: rows that do not all repeat one token (random weights this large mostly do). Rows that
  // end at EOS after different numbers of tokens: LearnsReportsThatTheMemoryDetermines.
  auto d = random_decoder(tiny_shape(), small_layout(), 7);
  torch::manual_seed(6);
  const torch::Tensor memory = torch::randn({4, 5, 8});
  const auto out = greedy_decode(d, memory, 6);
  EXPECT_NE(out[2], out[0]);
  ASSERT_EQ(out.size(), 4u);
  for (std::int64_t r = 0; r < 4; ++r) {
    // Replay row r with the teacher-forced forward: each id is the argmax after the ones before,
    // and the row ends at EOS or after 6 tokens.
    std::vector<std::int64_t> seq = {1};
    const auto& got = out[static_cast<std::size_t>(r)];
    EXPECT_LE(got.size(), 6u);
    for (std::size_t k = 0; k <= got.size() && k < 6; ++k) {
      torch::Tensor ids = torch::tensor(seq).unsqueeze(0);
      const std::int64_t next = d.logits(memory.narrow(0, r, 1), ids)[0][-1].argmax().item<std::int64_t>();
      if (k == got.size()) {
        EXPECT_EQ(next, 2) << "row " << r << " stopped early without EOS";
        break;
      }
      EXPECT_EQ(next, got[k]) << "row " << r << " token " << k;
      seq.push_back(next);
    }
  }
}

// --- loss and sequences ---------------------------------------------------------------------------

TEST(ReportDecoderLoss, LabelSmoothingEqualsAHandComputation) {
  torch::manual_seed(8);
  const torch::Tensor z = torch::randn({2, 3, 5}, torch::kFloat64);
  const torch::Tensor t = torch::tensor({{1, 4, -100}, {0, -100, 2}});
  const double eps = 0.1;
  double sum = 0;
  int n = 0;
  for (int b = 0; b < 2; ++b)
    for (int i = 0; i < 3; ++i) {
      const auto target = t[b][i].item<std::int64_t>();
      if (target == -100) continue;
      double mx = -1e300, se = 0;
      for (int v = 0; v < 5; ++v) mx = std::max(mx, z[b][i][v].item<double>());
      for (int v = 0; v < 5; ++v) se += std::exp(z[b][i][v].item<double>() - mx);
      const double lse = mx + std::log(se);
      double uniform = 0;
      for (int v = 0; v < 5; ++v) uniform += (lse - z[b][i][v].item<double>()) / 5;
      sum += (1 - eps) * (lse - z[b][i][target].item<double>()) + eps * uniform;
      ++n;
    }
  EXPECT_NEAR(label_smoothed_loss(z, t, eps).item<double>(), sum / n, 1e-12);  // float64 throughout
  // Without smoothing it is the plain cross-entropy of the scored positions.
  EXPECT_NEAR(label_smoothed_loss(z, t, 0.0).item<double>(),
              torch::nn::functional::cross_entropy(z.view({6, 5}), t.view({6}),
                                                   torch::nn::functional::CrossEntropyFuncOptions().ignore_index(-100))
                  .item<double>(),
              1e-12);
}

TEST(ReportDecoderLoss, TeacherForcingShiftsAddsEosAndCutsAtMaxLen) {
  ReportTokenIds tok;  // bos 1, eos 2, pad 0
  torch::Tensor in, tg;
  teacher_forcing_batch({{5, 6, 7}, {}, {8}}, tok, 10, in, tg);
  EXPECT_TRUE(torch::equal(in, torch::tensor({{1, 5, 6, 7}, {1, 0, 0, 0}, {1, 8, 0, 0}})));
  EXPECT_TRUE(torch::equal(tg, torch::tensor({{5, 6, 7, 2}, {2, -100, -100, -100}, {8, 2, -100, -100}})));
  // Cut at max_len 3: the long report loses its EOS; a tokenizer without pad pads with EOS.
  tok.pad = -1;
  teacher_forcing_batch({{5, 6, 7, 8}, {9}}, tok, 3, in, tg);
  EXPECT_TRUE(torch::equal(in, torch::tensor({{1, 5, 6}, {1, 9, 2}})));
  EXPECT_TRUE(torch::equal(tg, torch::tensor({{5, 6, 7}, {9, 2, -100}})));
}

// --- training ------------------------------------------------------------------------------------

// Four memory patterns, each with its own report; records are a pattern plus a little noise.
ReportSet synthetic_set(int per_class, std::uint64_t seed) {
  const std::vector<std::vector<std::int64_t>> reports = {{3, 4, 5}, {6, 7}, {3, 8, 9, 10}, {5, 5, 4, 11, 3}};
  torch::manual_seed(100);  // the patterns are the same for every set
  const torch::Tensor patterns = torch::randn({4, 5, 8}) * 2;
  torch::manual_seed(seed);
  ReportSet s;
  s.layout = small_layout();
  s.header = cx::io::new_stream_header();
  s.header["model"] = {{"id", "tiny"}, {"sha256", "0123456789abcdef"}};
  std::vector<torch::Tensor> mem;
  for (int i = 0; i < per_class * 4; ++i) {
    const int c = i % 4;
    s.keys.push_back("r" + std::to_string(i));
    s.texts.push_back("");
    s.ids.push_back(reports[static_cast<std::size_t>(c)]);
    mem.push_back(patterns[c] + 0.1 * torch::randn({5, 8}));
  }
  s.memory = torch::stack(mem).to(torch::kHalf);
  return s;
}

ReportTrainOptions tiny_options() {
  ReportTrainOptions o;
  o.shape = tiny_shape();
  o.epochs = 50;
  o.batch = 8;
  o.lr = 3e-3;
  o.warmup = 0.1;
  o.weight_decay = 0.01;
  o.patience = 0;
  o.seed = 3;
  return o;
}

TEST(ReportDecoderTraining, LearnsReportsThatTheMemoryDetermines) {
  const ReportSet train = synthetic_set(4, 1);
  ReportTrainOptions o = tiny_options();
  std::vector<double> losses;
  ReportTrainResult r = train_report_decoder(train, nullptr, o, [&](const ReportTrainProgress& p) { losses.push_back(p.loss); });
  ASSERT_TRUE(r.finished);
  EXPECT_EQ(r.steps_done, 100);
  ASSERT_EQ(losses.size(), 100u);
  // From ln(12) = 2.48 at the start to the floor label smoothing leaves (~0.5 for 12 classes).
  EXPECT_GT(losses.front(), 2.0);
  EXPECT_LT((losses[98] + losses[99]) / 2, 0.4 * (losses[0] + losses[1]) / 2);

  // Unseen records of the same patterns decode to their reports.
  const ReportSet test = synthetic_set(2, 9);
  const auto out = greedy_decode(r.decoder, test.memory);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], test.ids[i]) << "record " << i;

  // The config names what it was trained on.
  EXPECT_EQ(r.decoder.config.encoder["id"], "tiny");
  EXPECT_EQ(r.decoder.config.training["steps_done"], 100);
  EXPECT_EQ(r.decoder.config.memory, train.layout);
  EXPECT_TRUE(r.decoder.mean.defined());
}

TEST(ReportDecoderTraining, ValidatesStopsEarlyAndKeepsTheBestEpoch) {
  const ReportSet train = synthetic_set(4, 1), val = synthetic_set(1, 2);
  ReportTrainOptions o = tiny_options();
  o.epochs = 40;
  o.batch = 4;
  o.patience = 4;
  o.stop_metric = StopMetric::bleu;
  std::vector<ReportTrainProgress> epochs;
  ReportTrainResult r = train_report_decoder(train, &val, o, [&](const ReportTrainProgress& p) {
    if (p.epoch > 0) epochs.push_back(p);
  });
  ASSERT_TRUE(r.finished);
  ASSERT_FALSE(epochs.empty());
  // Once BLEU-4 reaches 1 (the reports are reproduced) nothing beats it: `patience` more epochs,
  // then the run stops, keeping the first epoch that reached it.
  double best = -1;
  int best_epoch = 0;
  for (const auto& p : epochs)
    if (p.val_bleu4 > best) best = p.val_bleu4, best_epoch = p.epoch;
  EXPECT_NEAR(best, 1.0, 1e-9);
  EXPECT_EQ(epochs.back().epoch, best_epoch + o.patience);
  EXPECT_LT(epochs.back().epoch, o.epochs);
  EXPECT_EQ(r.decoder.config.training["stopped_early"], true);
  EXPECT_EQ(r.decoder.config.training["best_epoch"], best_epoch);
  const auto& metrics = r.decoder.config.metrics["val"];
  EXPECT_NEAR(metrics["bleu4"].get<double>(), 1.0, 1e-9);
  EXPECT_EQ(metrics["records"], 4);
  const double best_loss = epochs[static_cast<std::size_t>(best_epoch - 1)].val_loss;
  EXPECT_EQ(metrics["loss"].get<double>(), best_loss);
  // The weights returned are the best epoch's (the last epoch's validation loss was lower still).
  ASSERT_LT(epochs.back().val_loss, best_loss - 0.01);
  torch::Tensor in, tg;
  teacher_forcing_batch(val.ids, o.tokens, o.shape.max_len, in, tg);
  const double loss = label_smoothed_loss(r.decoder.logits(val.memory, in), tg, 0.0).item<double>();
  EXPECT_NEAR(loss, best_loss, 1e-5);  // one batch here, four there: float32 rounding only

  // Validation data must match the training data.
  ReportSet other = val;
  other.layout.registers = 0;
  EXPECT_EQ(error_of([&] { train_report_decoder(train, &other, o); }),
            "the validation memories (2x2 patch tokens of 8) differ from the training memories "
            "(1 register + 2x2 patch tokens of 8)");
  other = val;
  other.header["model"]["sha256"] = "fedcba9876543210";
  EXPECT_EQ(error_of([&] { train_report_decoder(train, &other, o); }),
            "the validation stream was embedded with another encoder (sha256 fedcba987654) than the training stream "
            "(0123456789ab)");
  other = val;
  other.ids[3] = {3, 12};
  EXPECT_EQ(error_of([&] { train_report_decoder(train, &other, o); }),
            "validation set: r3: token id 12 outside the vocabulary of 12");
  o.stop_after = 3;
  EXPECT_EQ(error_of([&] { train_report_decoder(train, nullptr, o); }), "--stop-after needs a checkpoint folder (--checkpoint DIR)");
}


std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(ReportDecoderTraining, ResumedRunGivesTheSameBytesAsAnUninterruptedOne) {
  TempDir tmp("cx_report_resume");
  const ReportSet train = synthetic_set(4, 1), val = synthetic_set(1, 2);
  ReportTrainOptions o = tiny_options();
  o.epochs = 5;           // 10 updates
  o.shape.dropout = 0.1;  // the counter-based masks must replay too
  o.stop_metric = StopMetric::bleu;
  o.patience = 100;

  ReportTrainOptions full = o;
  full.checkpoint_dir = tmp / "ckpt-full";
  full.checkpoint_every = 4;
  ReportTrainResult a = train_report_decoder(train, &val, full);
  ASSERT_TRUE(a.finished);
  write_report_decoder(tmp / "a", a.decoder);
  EXPECT_TRUE(is_checkpoint(tmp / "ckpt-full", "cx-report-decoder-checkpoint"));

  ReportTrainOptions first = o;
  first.checkpoint_dir = tmp / "ckpt";
  first.stop_after = 5;  // mid-epoch, after one validation
  ReportTrainResult part = train_report_decoder(train, &val, first);
  ASSERT_FALSE(part.finished);
  EXPECT_EQ(part.steps_done, 5);
  ReportTrainOptions second = o;
  second.checkpoint_dir = tmp / "ckpt";
  second.resume = tmp / "ckpt";
  ReportTrainResult b = train_report_decoder(train, &val, second);
  ASSERT_TRUE(b.finished);
  EXPECT_EQ(b.steps_done, 10);
  write_report_decoder(tmp / "b", b.decoder);

  const std::string wa = file_bytes(tmp / "a/decoder.safetensors"), wb = file_bytes(tmp / "b/decoder.safetensors");
  ASSERT_GT(wa.size(), 1000u);
  EXPECT_TRUE(wa == wb) << "the resumed weights differ";
  EXPECT_EQ(file_bytes(tmp / "a/decoder.json"), file_bytes(tmp / "b/decoder.json"));

  // Another setting is refused by name.
  ReportTrainOptions other = second;
  other.batch = 4;
  EXPECT_EQ(error_of([&] { train_report_decoder(train, &val, other); }),
            tmp / "ckpt" + ": the checkpoint was made with other settings: batch (checkpoint 8, now 4), steps (checkpoint 10, now 20)");
  ReportSet changed = train;
  changed.ids[5].push_back(3);
  const std::string why = error_of([&] { train_report_decoder(changed, &val, second); });
  EXPECT_NE(why.find(": the checkpoint was made with other settings: reports_fnv1a (checkpoint \""), std::string::npos) << why;
}

// --- the folder ------------------------------------------------------------------------------------

TEST(ReportDecoderFolder, WriteLoadRoundTrip) {
  TempDir tmp("cx_report_folder");
  ReportDecoder d = random_decoder(tiny_shape(), small_layout(), 11);
  d.config.encoder = {{"id", "enc"}, {"sha256", "abc"}};
  d.config.training = {{"epochs", 3}};
  d.config.tokens.pad = -1;
  write_report_decoder(tmp / "dec", d);
  const nlohmann::json j = cx::io::read_json_file(tmp / "dec/decoder.json");
  EXPECT_EQ(j["format"], "cx-report-decoder");
  EXPECT_EQ(j["version"], "1.0");
  EXPECT_EQ(j["tokenizer"], "tokenizer.model");
  EXPECT_EQ(j["memory"]["slots"], 5);
  EXPECT_EQ(j["memory"]["order"], nlohmann::json({"registers", "patch"}));
  EXPECT_EQ(j["decoder"]["d_model"], 32);
  EXPECT_EQ(j["tokens"]["pad"], -1);

  ReportDecoder back = load_report_decoder(tmp / "dec");
  EXPECT_EQ(report_decoder_config_to_json(back.config), j);
  auto want = d.module->named_parameters();
  for (const auto& p : back.module->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), want[p.key()])) << p.key();
  EXPECT_TRUE(torch::equal(back.mean, d.mean));
  EXPECT_TRUE(torch::equal(back.std, d.std));
  torch::manual_seed(12);
  const torch::Tensor mem = torch::randn({2, 5, 8});
  const torch::Tensor ids = torch::randint(0, 12, {2, 4});
  EXPECT_TRUE(torch::equal(back.logits(mem, ids), d.logits(mem, ids)));
}

TEST(ReportDecoderFolder, LoadErrorsNameTheFolderAndTheProblem) {
  TempDir tmp("cx_report_errors");
  const std::string dir = tmp / "dec";
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }), dir + ": not a report decoder folder (no such folder)");
  std::filesystem::create_directories(dir);
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }), dir + ": not a report decoder folder (no decoder.json)");

  ReportDecoder d = random_decoder(tiny_shape(), small_layout(), 13);
  write_report_decoder(dir, d);
  const std::string json_path = dir + "/decoder.json";
  const nlohmann::json good = cx::io::read_json_file(json_path);
  auto write_json = [&](const nlohmann::json& j) { std::ofstream(json_path) << j.dump(2); };

  nlohmann::json j = good;
  j["format"] = "cx-head";
  write_json(j);
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }), json_path + ": format is \"cx-head\", not \"cx-report-decoder\"");
  j = good;
  j["version"] = "2.0";
  write_json(j);
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }), json_path + ": format version 2.0 is newer than this build reads (1.x)");
  j = good;
  j["decoder"]["ffn"] = 65;
  write_json(j);
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }),
            dir + "/decoder.safetensors: layers.0.ffn.fc1.weight has shape [64, 32], but decoder.json implies [65, 32]");
  j = good;
  j["memory"]["registers"] = 0;
  j["memory"]["slots"] = 4;
  write_json(j);
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }),
            dir + "/decoder.safetensors: memory.position has shape [5, 32], but decoder.json implies [4, 32]");
  j = good;
  j["memory"]["standardize"] = false;
  write_json(j);
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }),
            dir + "/decoder.safetensors: unexpected tensor standardize.mean (not part of the decoder decoder.json describes)");
  j = good;
  j["decoder"]["heads"] = 3;
  write_json(j);
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }), json_path + ": decoder.d_model 32 is not a multiple of decoder.heads 3");
  write_json(good);
  std::filesystem::remove(dir + "/decoder.safetensors");
  EXPECT_EQ(error_of([&] { load_report_decoder(dir); }), dir + ": no decoder.safetensors (the weights)");
}

TEST(ReportDecoderConfigFile, ValuesAreBoundedAndNamed) {
  ReportDecoderConfig c;
  c.shape = tiny_shape();
  c.memory = small_layout();
  const nlohmann::json good = report_decoder_config_to_json(c);
  EXPECT_EQ(report_decoder_config_to_json(parse_report_decoder_config(good, "d.json")), good);
  auto err = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = good;
    edit(j);
    return error_of([&] { parse_report_decoder_config(j, "d.json"); });
  };
  EXPECT_EQ(err([](auto& j) { j.erase("decoder"); }), "d.json: missing required key \"decoder\"");
  EXPECT_EQ(err([](auto& j) { j["decoder"]["type"] = "llama"; }), "d.json: \"decoder.type\" must be \"small\", got \"llama\"");
  EXPECT_EQ(err([](auto& j) { j["decoder"]["layers"] = 2.5; }), "d.json: \"decoder.layers\" must be an integer, got 2.5");
  EXPECT_EQ(err([](auto& j) { j["decoder"]["vocab_size"] = 1e30; }), "d.json: \"decoder.vocab_size\" must be an integer, got 1e+30");
  EXPECT_EQ(err([](auto& j) { j["decoder"]["max_len"] = 1; }), "d.json: \"decoder.max_len\" must be in 2-65536, got 1");
  EXPECT_EQ(err([](auto& j) { j["decoder"]["dropout"] = 1.0; }), "d.json: \"decoder.dropout\" must be a finite number in [0, 1)");
  EXPECT_EQ(err([](auto& j) { j["tokens"]["eos"] = 12; }), "d.json: \"tokens.eos\" must be in 0-11, got 12");
  EXPECT_EQ(err([](auto& j) { j["tokens"]["pad"] = -2; }), "d.json: \"tokens.pad\" must be in -1-2097152, got -2");
  EXPECT_EQ(err([](auto& j) { j["tokenizer"] = "../../etc/passwd"; }),
            "d.json: \"tokenizer\" must name a file inside the folder, got \"../../etc/passwd\"");
  EXPECT_EQ(err([](auto& j) {
              j["memory"]["grid"] = {0, 0};
              j["memory"]["registers"] = 0;
            }),
            "d.json: the memory has no slots (no patch grid, registers or cls)");
  EXPECT_EQ(err([](auto& j) { j["memory"]["slots"] = 6; }), "d.json: \"memory.slots\" is 6 but the layout has 5");
  EXPECT_EQ(err([](auto& j) {
              j["decoder"]["vocab_size"] = 2000000;
              j["decoder"]["d_model"] = 8192;
              j["decoder"]["heads"] = 8;
            }),
            "d.json: the decoder would have 17460314240 parameters (at most 2147483648)");
  EXPECT_EQ(err([](auto& j) { j["training"] = 3; }), "d.json: \"training\" must be an object, got 3");
}

// --- retrieval -------------------------------------------------------------------------------------

TEST(ReportRetrieval, PicksTheNearestReportByCosineTiesToTheLowerIndex) {
  const std::vector<std::vector<float>> cls = {{1, 0, 0}, {0, 2, 0}, {0, 0, 3}, {1, 1, 0}, {0, 5, 0}};
  std::vector<cx::io::Record> records;
  for (std::size_t i = 0; i < cls.size(); ++i)
    records.push_back(embed_record("t" + std::to_string(i), torch::zeros({1, 1, 3}), {}, torch::tensor(cls[i]),
                                   "report " + std::to_string(i)));
  nlohmann::json header = cx::io::new_stream_header();
  header["model"] = {{"id", "enc"}, {"sha256", "abc"}};
  VectorSource src(records, header);
  const RetrievalIndex index = build_retrieval_index(src, "train.cx");
  EXPECT_EQ(index.feature, "cls");
  EXPECT_EQ(index.dim, 3);
  EXPECT_EQ(index.size(), 5);
  EXPECT_EQ(index.encoder["id"], "enc");

  auto query = [&](std::vector<float> v) {
    return nearest_report(index, embed_record("q", {}, {}, torch::tensor(v), ""), "q");
  };
  Neighbour n = query({0.2f, 0.9f, 0.1f});  // closest in angle to (0, 1, 0): records 1 and 4 tie
  EXPECT_EQ(n.index, 1);
  EXPECT_NEAR(n.similarity, 0.9 / std::sqrt(0.04 + 0.81 + 0.01), 1e-7);  // float32 storage of the normalised vectors
  EXPECT_EQ(query({0.9f, 1.0f, 0.0f}).index, 3);
  EXPECT_EQ(query({0.0f, 0.0f, -1.0f}).index, 0);  // every similarity <= 0: the largest, 0, first at index 0
  EXPECT_EQ(query({0.1f, 0.0f, 2.0f}).index, 2);
  EXPECT_EQ(error_of([&] { nearest_report(index, embed_record("p", torch::zeros({1, 1, 3}), {}, {}, ""), "p"); }),
            "p: no cls.npy field");

  // Without cls: the mean patch token.
  std::vector<cx::io::Record> patches = {
      embed_record("a", torch::tensor({1.0f, 0.0f, 3.0f, 0.0f}).view({2, 1, 2}), {}, {}, "A"),   // mean (2, 0)
      embed_record("b", torch::tensor({0.0f, 1.0f, 0.0f, 1.0f}).view({1, 2, 2}), {}, {}, "B")};  // mean (0, 1)
  VectorSource psrc(patches);
  const RetrievalIndex pindex = build_retrieval_index(psrc, "p.cx");
  EXPECT_EQ(pindex.feature, "patch_mean");
  EXPECT_EQ(nearest_report(pindex, embed_record("q", torch::tensor({0.1f, 0.5f}).view({1, 1, 2}), {}, {}, ""), "q").index, 1);
  EXPECT_EQ(nearest_report(pindex, embed_record("q", torch::tensor({3.0f, 0.5f}).view({1, 1, 2}), {}, {}, ""), "q").index, 0);

  std::vector<cx::io::Record> no_text = {embed_record("x", torch::zeros({1, 1, 2}), {}, {}, "")};
  VectorSource nsrc(no_text);
  EXPECT_EQ(error_of([&] { build_retrieval_index(nsrc, "n.cx"); }), "n.cx: x: no .txt report to retrieve");
  VectorSource nsrc2(no_text);
  EXPECT_EQ(error_of([&] { build_retrieval_index(nsrc2, "n.cx", "findings"); }), "n.cx: x: no .txt report to retrieve");

  // With a section: the index holds that section of each report, cleaned as decoder targets are.
  std::vector<cx::io::Record> sections = {
      embed_record("s", {}, {}, torch::tensor({1.0f, 0.0f}), "FINDINGS: Heart  normal.\nIMPRESSION: No acute\n disease.")};
  VectorSource s1(sections), s2(sections), s3(sections);
  EXPECT_EQ(build_retrieval_index(s1, "s.cx", "impression").texts, std::vector<std::string>{"No acute disease."});
  EXPECT_EQ(build_retrieval_index(s2, "s.cx", "findings").texts, std::vector<std::string>{"Heart normal."});
  EXPECT_EQ(build_retrieval_index(s3, "s.cx").texts,
            std::vector<std::string>{"FINDINGS: Heart  normal.\nIMPRESSION: No acute\n disease."});
}

TEST(ReportRetrieval, IndexFolderRoundTripAndErrors) {
  TempDir tmp("cx_report_retrieval");
  RetrievalIndex index;
  index.feature = "patch_mean";
  index.dim = 2;
  index.keys = {"k0", "k1", "k2"};
  index.texts = {"FINDINGS: one.\n\nIMPRESSION: a \"quoted\" line.\n", "caf\xc3\xa9", ""};
  index.embeddings = torch::tensor({{1.0f, 0.0f}, {0.6f, 0.8f}, {0.0f, 1.0f}});
  index.encoder = {{"id", "enc"}, {"sha256", "abc"}};
  const std::string dir = tmp / "idx";
  write_retrieval_index(dir, index);
  const RetrievalIndex back = load_retrieval_index(dir);
  EXPECT_EQ(back.feature, "patch_mean");
  EXPECT_EQ(back.keys, index.keys);
  EXPECT_EQ(back.texts, index.texts);
  EXPECT_TRUE(torch::equal(back.embeddings, index.embeddings));
  EXPECT_EQ(back.encoder, index.encoder);
  EXPECT_EQ(nearest(back, torch::tensor({0.5f, 0.7f})).index, 1);

  // A reports file cut short or too long, shapes that disagree, another format, a missing file.
  const std::string reports = dir + "/reports.jsonl";
  const std::string all = file_bytes(reports);
  std::ofstream(reports, std::ios::binary) << all.substr(0, all.rfind('\n', all.size() - 2) + 1);
  EXPECT_EQ(error_of([&] { load_retrieval_index(dir); }), reports + ": 2 reports, but retrieval.json says 3");
  std::ofstream(reports, std::ios::binary) << all << "not json\n";
  EXPECT_EQ(error_of([&] { load_retrieval_index(dir); }), reports + ": more than the 3 reports retrieval.json says");
  std::ofstream(reports, std::ios::binary) << all;
  nlohmann::json j = cx::io::read_json_file(dir + "/retrieval.json");
  j["dim"] = 3;
  std::ofstream(dir + "/retrieval.json") << j.dump();
  EXPECT_EQ(error_of([&] { load_retrieval_index(dir); }),
            dir + "/embeddings.safetensors: embeddings of shape [3, 2], but retrieval.json says 3 x 3");
  j["dim"] = 2;
  j["format"] = "cx-report-decoder";
  std::ofstream(dir + "/retrieval.json") << j.dump();
  EXPECT_EQ(error_of([&] { load_retrieval_index(dir); }),
            dir + "/retrieval.json: format is \"cx-report-decoder\", not \"cx-report-retrieval\"");
  std::filesystem::remove(dir + "/retrieval.json");
  EXPECT_EQ(error_of([&] { load_retrieval_index(dir); }), dir + ": not a retrieval index folder (no retrieval.json)");
}

}  // namespace
