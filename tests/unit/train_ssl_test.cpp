// The self-supervised objectives (cx/train/ssl_loss, ssl_head, masking) against tests/unit/ssl_reference.py,
// an independent PyTorch reference written from DINOv2's definitions, run once under /usr/bin/python3:
// this test writes the inputs (fixed tensors, the C++ head's parameters, the C++ masks and the generator
// counters) to a safetensors file and reads the reference's outputs back.
//
// Tolerance: 1e-5 on every value, absolute up to magnitude 1 and relative beyond (losses ~1-4,
// probabilities, and the head's gradients, which reach ~1e4: DINOv2's std-0.02 MLP gives a small
// bottleneck vector whose L2 normalisation scales its gradient by 1 / norm). Our side computes in
// float32, the reference in float64: float32 rounding is ~1e-7 relative (measured up to ~5e-7 on the
// head's gradients), and logits divided by a teacher temperature of 0.04 move probabilities by ~1e-6,
// inside 1e-5. Masks, indices and the upperbound are compared exactly (the reference ports cx's
// counter-based generator).
#include <gtest/gtest.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/model/gemm.hpp"
#include "cx/model/runtime.hpp"
#include "cx/random/rng.hpp"
#include "cx/train/masking.hpp"
#include "cx/train/ssl_head.hpp"
#include "cx/train/ssl_loss.hpp"
#include "cx/train/tensor_io.hpp"
#include "io_python_helper.hpp"

namespace {

namespace fs = std::filesystem;
using namespace cx::train;

constexpr double kTol = 1e-5;
constexpr std::int64_t kB = 4;      // images per global crop
constexpr std::int64_t kK = 32;     // prototypes
constexpr std::int64_t kLocal = 3;  // local crops
constexpr std::uint64_t kMaskSeed = 20240607, kMaskPurpose = 0x6d61736b;

torch::Tensor fixed_randn(std::vector<std::int64_t> shape, std::uint64_t seed, double scale = 1.0) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::kFloat32) * scale;
}

// The head configurations the reference checks: DINOv2's 3 layers, 1 layer (mlp is a Linear) and 2.
struct HeadCase {
  const char* name;
  DinoHeadConfig config;
  std::uint64_t seed;
};
const std::vector<HeadCase>& head_cases() {
  static const std::vector<HeadCase> cases = {
      {"head3", DinoHeadConfig{24, 96, 40, 12, 3}, 11},
      {"head1", DinoHeadConfig{24, 64, 40, 12, 1}, 12},
      {"head2", DinoHeadConfig{16, 48, 20, 8, 2}, 13},
  };
  return cases;
}

std::shared_ptr<DinoHead> make_head(const HeadCase& c) {
  auto head = std::make_shared<DinoHead>(c.config);
  head->init_random(c.seed);
  // Prototype lengths other than DINOv2's initial 1, so that weight_g's scale matters.
  torch::NoGradGuard no_grad;
  for (auto& p : head->named_parameters())
    if (p.key() == "last_layer.weight_g")
      p.value().copy_(0.5 + torch::rand(p.value().sizes(), at::detail::createCPUGenerator(c.seed + 100)));
  return head;
}

// The masking cases: (rng counters, kind 0 generator / 1 collate, grid, and requests or collate settings).
struct MaskCase {
  const char* name;
  std::uint64_t a, b;
  std::int64_t kind, h, w;
  std::vector<std::int64_t> requests;  // kind 0
  std::int64_t B = 0;                  // kind 1
  double probability = 0, ratio_min = 0, ratio_max = 0;
};
const std::vector<MaskCase>& mask_cases() {
  static const std::vector<MaskCase> cases = {
      {"gen14", 3, 1, 0, 14, 14, {0, 5, 20, 60, 98, 150, 3}},
      {"gen9x23", 4, 0, 0, 9, 23, {10, 40, 100, 207}},
      {"col16", 7, 2, 1, 16, 16, {}, 16, 0.5, 0.1, 0.5},
      {"col10", 8, 0, 1, 12, 10, {}, 10, 0.7, 0.2, 0.45},
  };
  return cases;
}

torch::Tensor ibot_masks() {
  auto rng = cx::random::training_rng(kMaskSeed, kMaskPurpose, 99, 0);
  return collate_masks(kB * 2, 6, 6, 0.5, 0.1, 0.5, rng).masks;
}

class SslReference : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    fs::path dir = fs::temp_directory_path() / ("cx_ssl_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string in = (dir / "in.safetensors").string(), out = (dir / "out.safetensors").string();
    cx::model::NamedTensors inputs;
    // DINO: student global [2B, K] and local [L B, K] logits; teacher logits in a head's range (|t| <= 1).
    inputs.emplace_back("dino.student_global", fixed_randn({2 * kB, kK}, 1));
    inputs.emplace_back("dino.student_local", fixed_randn({kLocal * kB, kK}, 2));
    inputs.emplace_back("dino.teacher1", fixed_randn({2 * kB, kK}, 3, 0.3).clamp(-1, 1));
    inputs.emplace_back("dino.teacher2", fixed_randn({2 * kB, kK}, 4, 0.3).clamp(-1, 1));
    inputs.emplace_back("dino.n_local", torch::tensor({kLocal}, torch::kInt64));
    // iBOT on masks from collate_masks.
    torch::Tensor masks = ibot_masks();
    const std::int64_t M = masks.sum().item<std::int64_t>();
    inputs.emplace_back("ibot.masks", masks.to(torch::kUInt8));
    inputs.emplace_back("ibot.student", fixed_randn({M, kK}, 5));
    inputs.emplace_back("ibot.teacher1", fixed_randn({M, kK}, 6, 0.3).clamp(-1, 1));
    inputs.emplace_back("ibot.teacher2", fixed_randn({M, kK}, 7, 0.3).clamp(-1, 1));
    inputs.emplace_back("koleo.x", fixed_randn({12, 16}, 8));
    for (const auto& c : head_cases()) {
      auto head = make_head(c);
      for (const auto& p : head->named_parameters())
        inputs.emplace_back(std::string(c.name) + ".param." + p.key(), p.value().detach().clone());
      inputs.emplace_back(std::string(c.name) + ".x", fixed_randn({10, c.config.in_dim}, c.seed + 1));
      inputs.emplace_back(std::string(c.name) + ".r", fixed_randn({10, c.config.out_dim}, c.seed + 2));
    }
    for (const auto& c : mask_cases()) {
      const std::string p = std::string("mask.") + c.name;
      inputs.emplace_back(p + ".rng", torch::tensor({static_cast<std::int64_t>(kMaskSeed),
                                                     static_cast<std::int64_t>(kMaskPurpose),
                                                     static_cast<std::int64_t>(c.a), static_cast<std::int64_t>(c.b)},
                                                    torch::kInt64));
      inputs.emplace_back(p + ".grid", torch::tensor({c.kind, c.h, c.w}, torch::kInt64));
      if (c.kind == 0)
        inputs.emplace_back(p + ".requests", torch::tensor(c.requests, torch::kInt64));
      else
        inputs.emplace_back(p + ".collate", torch::tensor({static_cast<double>(c.B), c.probability, c.ratio_min,
                                                           c.ratio_max}, torch::kFloat64));
    }
    write_tensors(in, inputs);

    std::ifstream script_file(std::string(CX_TEST_DATA_DIR) + "/../unit/ssl_reference.py");
    std::stringstream script;
    script << script_file.rdbuf();
    auto r = cx_test::run_python(script.str(), {in, out});
    if (!r.ran) {
      skip_reason_ = new std::string(r.why_not);
    } else if (r.status != 0) {
      failure_ = new std::string("ssl_reference.py failed (exit " + std::to_string(r.status) + "): " + r.output);
    } else {
      reference_ = new std::map<std::string, torch::Tensor>();
      for (auto& [name, t] : read_tensors(out)) (*reference_)[name] = t;
    }
    fs::remove_all(dir);
  }
  static void TearDownTestSuite() {
    delete reference_;
    delete skip_reason_;
    delete failure_;
    reference_ = nullptr;
    skip_reason_ = failure_ = nullptr;
  }

  void SetUp() override {
    if (skip_reason_) GTEST_SKIP() << "reference unavailable: " << *skip_reason_;
    ASSERT_EQ(failure_, nullptr) << *failure_;
  }

  static torch::Tensor ref(const std::string& name) {
    auto it = reference_->find(name);
    if (it == reference_->end()) throw std::runtime_error("reference output missing: " + name);
    return it->second;
  }

  // Max |ours - reference| over every entry, divided by the reference's largest magnitude where that
  // exceeds 1 (absolute for values up to 1, relative beyond), after checking the sizes agree.
  static double max_diff(const torch::Tensor& ours, const torch::Tensor& reference) {
    EXPECT_EQ(ours.numel(), reference.numel());
    if (ours.numel() != reference.numel()) return 1e9;
    const torch::Tensor r = reference.to(torch::kFloat64).reshape(-1);
    const double scale = std::max(1.0, r.abs().max().item<double>());
    return (ours.detach().to(torch::kFloat64).reshape(-1) - r).abs().max().item<double>() / scale;
  }

  static std::map<std::string, torch::Tensor>* reference_;
  static std::string* skip_reason_;
  static std::string* failure_;
};
std::map<std::string, torch::Tensor>* SslReference::reference_ = nullptr;
std::string* SslReference::skip_reason_ = nullptr;
std::string* SslReference::failure_ = nullptr;

torch::Tensor input(const char* name) {
  // The fixed inputs, rebuilt exactly as SetUpTestSuite wrote them.
  const std::string n = name;
  if (n == "sg") return fixed_randn({2 * kB, kK}, 1);
  if (n == "sl") return fixed_randn({kLocal * kB, kK}, 2);
  if (n == "t1") return fixed_randn({2 * kB, kK}, 3, 0.3).clamp(-1, 1);
  if (n == "t2") return fixed_randn({2 * kB, kK}, 4, 0.3).clamp(-1, 1);
  throw std::runtime_error("no input " + n);
}

torch::Tensor ibot_input(const char* name, std::int64_t M) {
  const std::string n = name;
  if (n == "s") return fixed_randn({M, kK}, 5);
  if (n == "t1") return fixed_randn({M, kK}, 6, 0.3).clamp(-1, 1);
  return fixed_randn({M, kK}, 7, 0.3).clamp(-1, 1);
}

const std::vector<std::pair<std::string, double>> kTeacherTemps = {{"t04", 0.04}, {"t07", 0.07}};

// ------------------------------------------------------------------------------------------ DINO
TEST_F(SslReference, DinoCenteringOverTwoStepsInTheMulticropArrangement) {
  const torch::Tensor sg = input("sg"), sl = input("sl");
  for (const auto& [tag, temp] : kTeacherTemps) {
    SCOPED_TRACE(tag);
    DinoLoss loss(kK);
    int step = 1;
    for (const torch::Tensor& t : {input("t1"), input("t2")}) {
      const std::string p = "dino." + tag + ".center.step" + std::to_string(step++);
      EXPECT_LE(max_diff(loss.center, ref(p + ".center_used")), kTol) << p;
      torch::Tensor probs = loss.softmax_center_teacher(t, temp);
      loss.update_center(t);
      EXPECT_LE(max_diff(probs, ref(p + ".probs")), kTol) << p;
      auto terms = dino_multicrop_loss(loss, sg, sl, probs, kLocal);
      EXPECT_LE(max_diff(terms.global, ref(p + ".global")), kTol) << p;
      EXPECT_LE(max_diff(terms.local, ref(p + ".local")), kTol) << p;
    }
    EXPECT_LE(max_diff(loss.center, ref("dino." + tag + ".center.final")), kTol);
  }
}

TEST_F(SslReference, DinoSinkhornKnoppThreeIterations) {
  const torch::Tensor sg = input("sg"), sl = input("sl"), t1 = input("t1");
  for (const auto& [tag, temp] : kTeacherTemps) {
    SCOPED_TRACE(tag);
    DinoLoss loss(kK);
    torch::Tensor probs = loss.sinkhorn_knopp_teacher(t1, temp, 3);
    EXPECT_LE(max_diff(probs, ref("dino." + tag + ".sk.probs")), kTol);
    EXPECT_LE(max_diff(probs.sum(1), torch::ones({2 * kB})), 1e-5);  // each sample's assignment sums to 1
    auto terms = dino_multicrop_loss(loss, sg, sl, probs, kLocal);
    EXPECT_LE(max_diff(terms.global, ref("dino." + tag + ".sk.global")), kTol);
    EXPECT_LE(max_diff(terms.local, ref("dino." + tag + ".sk.local")), kTol);
    EXPECT_EQ(torch::count_nonzero(loss.center).item<std::int64_t>(), 0);  // Sinkhorn-Knopp keeps no state
  }
}

// ------------------------------------------------------------------------------------------ iBOT
TEST_F(SslReference, IbotMaskedPatchLossWithMaskWeights) {
  torch::Tensor masks = ibot_masks();
  auto rng = cx::random::training_rng(kMaskSeed, kMaskPurpose, 99, 0);
  CollatedMasks collated = collate_masks(kB * 2, 6, 6, 0.5, 0.1, 0.5, rng);
  ASSERT_TRUE(torch::equal(collated.masks, masks));
  const std::int64_t M = collated.count();
  ASSERT_GT(M, 0);
  EXPECT_TRUE(torch::equal(collated.indices, ref("ibot.indices_ref")));
  EXPECT_LE(max_diff(collated.weights, ref("ibot.weights_ref")), 1e-7);
  const torch::Tensor s = ibot_input("s", M);
  for (const auto& [tag, temp] : kTeacherTemps) {
    SCOPED_TRACE(tag);
    IbotPatchLoss loss(kK);
    int step = 1;
    for (const torch::Tensor& t : {ibot_input("t1", M), ibot_input("t2", M)}) {
      const std::string p = "ibot." + tag + ".center.step" + std::to_string(step++);
      torch::Tensor probs = loss.softmax_center_teacher(t, temp);
      loss.update_center(t);
      EXPECT_LE(max_diff(probs, ref(p + ".probs")), kTol) << p;
      EXPECT_LE(max_diff(loss.forward_masked(s, probs, collated.masks, collated.weights), ref(p + ".loss")), kTol) << p;
    }
    EXPECT_LE(max_diff(loss.center, ref("ibot." + tag + ".center.final")), kTol);
    torch::Tensor sk = loss.sinkhorn_knopp_teacher(ibot_input("t1", M), temp, M, 3);
    EXPECT_LE(max_diff(sk, ref("ibot." + tag + ".sk.probs")), kTol);
    EXPECT_LE(max_diff(loss.forward_masked(s, sk, collated.masks, collated.weights), ref("ibot." + tag + ".sk.loss")),
              kTol);
  }
}

// ------------------------------------------------------------------------------------------ KoLeo
TEST_F(SslReference, KoleoLossAndGradient) {
  torch::Tensor x = fixed_randn({12, 16}, 8).requires_grad_(true);
  torch::Tensor loss = koleo_loss(x);
  loss.backward();
  EXPECT_LE(max_diff(loss, ref("koleo.loss")), kTol);
  EXPECT_LE(max_diff(x.grad(), ref("koleo.grad")), kTol);
  // bfloat16 input is computed in float32: the same value up to bf16's rounding of the input.
  EXPECT_EQ(koleo_loss(x.detach().to(torch::kBFloat16)).scalar_type(), torch::kFloat32);
}

// ------------------------------------------------------------------------------------------ head
TEST_F(SslReference, HeadForwardAndParameterGradients) {
  for (const auto& c : head_cases()) {
    SCOPED_TRACE(c.name);
    auto head = make_head(c);
    torch::Tensor x = fixed_randn({10, c.config.in_dim}, c.seed + 1);
    torch::Tensor r = fixed_randn({10, c.config.out_dim}, c.seed + 2);
    torch::Tensor y = head->forward(x);
    EXPECT_LE(max_diff(y, ref(std::string(c.name) + ".out")), kTol);
    (y * r).sum().backward();
    int checked = 0;
    for (const auto& p : head->named_parameters()) {
      ASSERT_TRUE(p.value().grad().defined()) << p.key();
      EXPECT_LE(max_diff(p.value().grad(), ref(std::string(c.name) + ".grad." + p.key())), kTol) << p.key();
      ++checked;
    }
    EXPECT_EQ(checked, c.config.nlayers == 1 ? 4 : 2 * c.config.nlayers + 2);
  }
}

// ------------------------------------------------------------------------------------------ masking
TEST_F(SslReference, MasksEqualThePortedAlgorithmDrawForDraw) {
  for (const auto& c : mask_cases()) {
    SCOPED_TRACE(c.name);
    const std::string p = std::string("mask.") + c.name;
    auto rng = cx::random::training_rng(kMaskSeed, kMaskPurpose, c.a, c.b);
    if (c.kind == 0) {
      MaskingGenerator gen(c.h, c.w);
      std::vector<torch::Tensor> masks;
      for (std::int64_t n : c.requests) masks.push_back(gen(n, rng).flatten());
      EXPECT_TRUE(torch::equal(torch::stack(masks), ref(p + ".masks").to(torch::kBool)));
    } else {
      CollatedMasks m = collate_masks(c.B, c.h, c.w, c.probability, c.ratio_min, c.ratio_max, rng);
      EXPECT_TRUE(torch::equal(m.masks, ref(p + ".masks").to(torch::kBool)));
      EXPECT_EQ(m.upperbound, ref(p + ".upperbound").item<std::int64_t>());
    }
  }
}

// ------------------------------------------------------------------------------- without the reference
// An in-place sum across two threads standing for two ranks: each caller blocks until both have
// contributed, then both receive the same sum.
class TwoRankSum {
 public:
  AllReduceSum callback() {
    return [this](torch::Tensor& t) { reduce(t); };
  }

 private:
  void reduce(torch::Tensor& t) {
    std::unique_lock<std::mutex> lock(mutex_);
    const std::uint64_t round = round_;
    if (arrived_ == 0) {
      partial_ = t.clone();
      arrived_ = 1;
      cv_.wait(lock, [&] { return round_ != round; });
    } else {
      partial_ = partial_ + t;  // a new tensor: the first rank may still be reading the last sum
      result_ = partial_;
      arrived_ = 0;
      ++round_;
      cv_.notify_all();
    }
    t.copy_(result_);
  }
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  std::uint64_t round_ = 0;
  torch::Tensor partial_, result_;
};

// Runs f(rank, all_reduce) on two threads.
template <class F>
void two_ranks(F f) {
  TwoRankSum sum;
  std::thread t0([&] { f(0, sum.callback()); });
  std::thread t1([&] { f(1, sum.callback()); });
  t0.join();
  t1.join();
}

// Two halves with Sinkhorn-Knopp's sums all-reduced equal the whole batch in one process: the
// sums differ only in float32 summation order (a few ulp of values <= 1).
TEST(SslDistributed, SinkhornKnoppOnTwoRanksEqualsTheWholeBatch) {
  const torch::Tensor t = fixed_randn({2 * kB, kK}, 3, 0.3).clamp(-1, 1);
  DinoLoss dino(kK);
  const torch::Tensor whole = dino.sinkhorn_knopp_teacher(t, 0.04, 3);
  std::vector<torch::Tensor> halves(2);
  two_ranks([&](int rank, const AllReduceSum& all_reduce) {
    halves[rank] = dino.sinkhorn_knopp_teacher(t.chunk(2)[rank], 0.04, 3, all_reduce, 2);
  });
  EXPECT_TRUE(torch::allclose(torch::cat(halves), whole, 0, 1e-6));
  // Without the all-reduce the halves are normalised on their own, which differs: the test can fail.
  EXPECT_FALSE(torch::allclose(torch::cat({dino.sinkhorn_knopp_teacher(t.chunk(2)[0], 0.04, 3),
                                           dino.sinkhorn_knopp_teacher(t.chunk(2)[1], 0.04, 3)}),
                               whole, 0, 1e-3));

  // iBOT: ranks with different masked-token counts, B = the count of both.
  const torch::Tensor tm = fixed_randn({11, kK}, 9, 0.3).clamp(-1, 1);
  IbotPatchLoss ibot(kK);
  const torch::Tensor whole_m = ibot.sinkhorn_knopp_teacher(tm, 0.07, 11, 3);
  std::vector<torch::Tensor> parts(2);
  two_ranks([&](int rank, const AllReduceSum& all_reduce) {
    parts[rank] = ibot.sinkhorn_knopp_teacher(rank == 0 ? tm.narrow(0, 0, 4) : tm.narrow(0, 4, 7), 0.07, 11, 3,
                                              all_reduce);
  });
  EXPECT_TRUE(torch::allclose(torch::cat(parts), whole_m, 0, 1e-6));
}

TEST(SslDistributed, CenterUpdatesOnTwoRanks) {
  const torch::Tensor t = fixed_randn({2 * kB, kK}, 3, 0.3);
  DinoLoss whole(kK);
  whole.update_center(t);
  std::vector<DinoLoss> ranks(2, DinoLoss(kK));
  two_ranks([&](int rank, const AllReduceSum& all_reduce) {
    ranks[rank].update_center(t.chunk(2)[rank], all_reduce, 2);
  });
  // DINO: the mean over every rank's rows, as one process with the whole batch.
  EXPECT_TRUE(torch::allclose(ranks[0].center, whole.center, 0, 1e-7));
  EXPECT_TRUE(torch::equal(ranks[0].center, ranks[1].center));
  EXPECT_TRUE(torch::allclose(whole.center, 0.1 * t.mean(0, true), 0, 1e-7));

  // iBOT (DINOv2's rule): the mean of the ranks' means, whatever each rank's count.
  const torch::Tensor a = fixed_randn({3, kK}, 10), b = fixed_randn({8, kK}, 11);
  std::vector<IbotPatchLoss> iranks(2, IbotPatchLoss(kK));
  two_ranks([&](int rank, const AllReduceSum& all_reduce) { iranks[rank].update_center(rank ? b : a, all_reduce, 2); });
  const torch::Tensor expected = 0.1 * (a.mean(0, true) + b.mean(0, true)) / 2;
  EXPECT_TRUE(torch::allclose(iranks[0].center, expected, 0, 1e-7));
  EXPECT_TRUE(torch::equal(iranks[0].center, iranks[1].center));
}

TEST(SslHead, ParameterNamesAndShapesAreDinov2s) {
  DinoHead head(DinoHeadConfig{384, 1000, 128, 256, 3});
  std::vector<std::string> names;
  std::map<std::string, std::vector<std::int64_t>> shapes;
  for (const auto& p : head.named_parameters()) {
    names.push_back(p.key());
    shapes[p.key()] = p.value().sizes().vec();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias", "mlp.4.weight",
                                             "mlp.4.bias", "last_layer.weight_g", "last_layer.weight_v"}));
  EXPECT_EQ(shapes["mlp.0.weight"], (std::vector<std::int64_t>{128, 384}));
  EXPECT_EQ(shapes["mlp.2.weight"], (std::vector<std::int64_t>{128, 128}));
  EXPECT_EQ(shapes["mlp.4.weight"], (std::vector<std::int64_t>{256, 128}));
  EXPECT_EQ(shapes["last_layer.weight_g"], (std::vector<std::int64_t>{1000, 1}));
  EXPECT_EQ(shapes["last_layer.weight_v"], (std::vector<std::int64_t>{1000, 256}));
  EXPECT_EQ(head.prototype_parameters().size(), 2u);

  DinoHead one(DinoHeadConfig{8, 10, 0, 4, 1});
  names.clear();
  for (const auto& p : one.named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"mlp.weight", "mlp.bias", "last_layer.weight_g", "last_layer.weight_v"}));
  EXPECT_THROW(DinoHead(DinoHeadConfig{0, 10, 4, 4, 3}), cx::Error);
}

TEST(SslHead, InitialisationIsDeterministicAndShapedAsDinov2s) {
  const DinoHeadConfig c{64, 4096, 512, 128, 3};
  DinoHead a(c), b(c);
  a.init_random(5);
  b.init_random(5);
  auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& p : pa) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
  b.init_random(6);
  EXPECT_FALSE(torch::equal(pa["mlp.0.weight"], pb["mlp.0.weight"]));
  // trunc-normal std 0.02 (262,144 draws: the sample std is within 1% of 0.02), zero biases
  const double sd = pa["mlp.2.weight"].std().item<double>();
  EXPECT_NEAR(sd, 0.02, 2e-4);
  EXPECT_NEAR(pa["mlp.2.weight"].mean().item<double>(), 0.0, 2e-4);
  EXPECT_EQ(torch::count_nonzero(pa["mlp.0.bias"]).item<std::int64_t>(), 0);
  // prototypes: nn.Linear's default U(-1/sqrt(128), 1/sqrt(128)), unit lengths
  const torch::Tensor v = pa["last_layer.weight_v"];
  EXPECT_LE(v.abs().max().item<double>(), 1.0 / std::sqrt(128.0));
  EXPECT_GE(v.abs().max().item<double>(), 0.99 / std::sqrt(128.0));
  EXPECT_TRUE(torch::equal(pa["last_layer.weight_g"], torch::ones({4096, 1})));
  EXPECT_TRUE(torch::allclose(a.prototypes().norm(2, 1), torch::ones({4096}), 0, 1e-5));
  // Outputs are cosine similarities with unit prototypes: |logit| <= 1.
  torch::NoGradGuard no_grad;
  EXPECT_LE(a.forward(fixed_randn({5, 64}, 1)).abs().max().item<double>(), 1.0 + 1e-6);
  // Under bf16 autocast (training's CPU path) the products run in bf16 and the logits are close to
  // the float32 ones; they are the float32 accumulators where linear() has its bf16 GEMM
  // (LinearOutput::float32), at::linear's bfloat16 elsewhere.
  torch::Tensor y16;
  bool bf16_gemm = false;
  {
    cx::model::AutocastGuard autocast(cx::model::Precision::bf16, torch::kCPU);
    bf16_gemm = cx::model::detail::bf16_linear_applies(torch::ones({1, 128}), a.prototypes(), {});
    y16 = a.forward(fixed_randn({5, 64}, 1));
  }
  EXPECT_EQ(y16.scalar_type(), bf16_gemm ? torch::kFloat32 : torch::kBFloat16);
  EXPECT_TRUE(torch::allclose(y16.to(torch::kFloat32), a.forward(fixed_randn({5, 64}, 1)), 0, 0.05));
}

TEST(SslMasking, GeneratorIsAFunctionOfItsCountersAndNeverExceedsTheRequest) {
  MaskingGenerator gen(14, 14);
  EXPECT_EQ(gen.max_num_patches(), 98);
  for (std::uint64_t step = 0; step < 40; ++step) {
    auto r1 = cx::random::training_rng(1, 2, step, 0), r2 = cx::random::training_rng(1, 2, step, 0);
    const std::int64_t n = 4 + static_cast<std::int64_t>(step) * 4;  // 4 .. 160
    torch::Tensor m = gen(n, r1);
    EXPECT_TRUE(torch::equal(m, gen(n, r2)));
    EXPECT_EQ(m.sizes(), (std::vector<std::int64_t>{14, 14}));
    EXPECT_EQ(m.scalar_type(), torch::kBool);
    const std::int64_t count = m.sum().item<std::int64_t>();
    EXPECT_LE(count, n);
    EXPECT_GT(count, 0);
  }
  auto r = cx::random::training_rng(1, 2, 0, 0);
  EXPECT_EQ(gen(0, r).sum().item<std::int64_t>(), 0);
  auto ra = cx::random::training_rng(1, 2, 0, 0), rb = cx::random::training_rng(1, 2, 0, 1);
  EXPECT_FALSE(torch::equal(gen(60, ra), gen(60, rb)));
  EXPECT_THROW(MaskingGenerator(0, 14), cx::Error);
}

TEST(SslMasking, CollateCountsIndicesAndWeightsAgreeWithTheMasks) {
  for (std::uint64_t step = 0; step < 20; ++step) {
    SCOPED_TRACE(step);
    auto rng = cx::random::training_rng(3, 4, step, 1);
    const std::int64_t B = 2 + static_cast<std::int64_t>(step % 7) * 3;  // 2 .. 20 images
    CollatedMasks m = collate_masks(B, 16, 16, 0.5, 0.1, 0.5, rng);
    ASSERT_EQ(m.masks.sizes(), (std::vector<std::int64_t>{B, 256}));
    const torch::Tensor per_image = m.masks.sum(1);
    // int(B p) images masked (each with a target of at least 25 patches here), the rest empty
    EXPECT_EQ((per_image > 0).sum().item<std::int64_t>(), B / 2);
    EXPECT_LE(m.count(), m.upperbound);
    EXPECT_EQ(m.count(), m.masks.sum().item<std::int64_t>());
    EXPECT_TRUE(torch::equal(m.indices, m.masks.flatten().nonzero().flatten()));
    ASSERT_EQ(m.weights.size(0), m.count());
    EXPECT_EQ(m.weights.scalar_type(), torch::kFloat32);
    const torch::Tensor image = m.indices.div(256, "floor");
    EXPECT_TRUE(torch::equal(m.weights, 1.0f / per_image.index_select(0, image).to(torch::kFloat32)));
    // each masked image's weights sum to 1
    EXPECT_NEAR(m.weights.sum().item<double>(), static_cast<double>(B / 2), 1e-4);
    // upperbound: sum of int(N r_{i+1}) over the linspace bins
    const std::int64_t k = B / 2;
    std::int64_t upper = 0;
    for (std::int64_t i = 1; i <= k; ++i)
      upper += static_cast<std::int64_t>(256 * (0.1 + 0.4 * static_cast<double>(i) / static_cast<double>(k)));
    EXPECT_NEAR(static_cast<double>(m.upperbound), static_cast<double>(upper), static_cast<double>(k));
  }
  auto rng = cx::random::training_rng(3, 4, 0, 0);
  EXPECT_THROW(collate_masks(4, 16, 16, 1.5, 0.1, 0.5, rng), cx::Error);
  CollatedMasks none = collate_masks(4, 16, 16, 0.0, 0.1, 0.5, rng);
  EXPECT_EQ(none.count(), 0);
  EXPECT_EQ(none.upperbound, 0);
}

TEST(SslLoss, ShapesAreChecked) {
  DinoLoss dino(8);
  EXPECT_THROW(dino.softmax_center_teacher(torch::zeros({2, 9}), 0.04), cx::Error);
  EXPECT_THROW(koleo_loss(torch::zeros({1, 4})), cx::Error);
  IbotPatchLoss ibot(8);
  EXPECT_THROW(ibot.forward_masked(torch::zeros({3, 8}), torch::zeros({2, 8}), torch::zeros({2, 4}, torch::kBool),
                                   torch::ones({3})),
               cx::Error);
  EXPECT_THROW(dino_multicrop_loss(dino, torch::zeros({4, 8}), torch::zeros({3, 8}), torch::zeros({4, 8}), 2),
               cx::Error);
}

}  // namespace
