// cx::model::linear (oneDNN's sgemm for float32 CPU products, forward and backward) against
// float64 and against at::linear; where it applies and where it falls back; determinism.
#include <gtest/gtest.h>

#include <ATen/autocast_mode.h>

#include <iostream>
#include <vector>

#include "cx/model/gemm.hpp"

namespace {
namespace detail = cx::model::detail;

// Inputs ~N(0, 1): every output and gradient element is a sum of n unit-scale products (n = K for y,
// N for dx, M for dw and db), of size ~sqrt(n), accumulated in float32 in some blocked order. Its
// rounding error grows like u * sqrt(n) * |partial sums| ~ u * n with u = 6e-8; the largest over
// thousands of elements is a few times that (measured: 3.8e-5 for dx with n = 288, ~2.2 u n). The
// tolerance tol(n) = 5e-7 * n + 1e-6 (~8 u n) leaves ~4x headroom; a wrong transpose, stride or a
// missing bias moves elements by O(1).
double tol(std::int64_t n) { return 5e-7 * static_cast<double>(n) + 1e-6; }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

struct Grads {
  torch::Tensor y, gx, gw, gb;
};

// y = f(x, w, b), then the gradients of sum(y * g) for a fixed random g.
template <typename F>
Grads run(F f, const torch::Tensor& x0, const torch::Tensor& w0, const torch::Tensor& b0, const torch::Tensor& g,
          torch::ScalarType dtype) {
  torch::Tensor x = x0.to(dtype).detach().requires_grad_(true), w = w0.to(dtype).detach().requires_grad_(true);
  torch::Tensor b = b0.defined() ? b0.to(dtype).detach().requires_grad_(true) : torch::Tensor();
  torch::Tensor y = f(x, w, b);
  (y * g.to(dtype)).sum().backward();
  return {y.detach(), x.grad(), w.grad(), b.defined() ? b.grad() : torch::Tensor()};
}

class GemmTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!detail::onednn_sgemm_available()) GTEST_SKIP() << "dnnl_sgemm not found in this process: linear() is at::linear";
  }
  void TearDown() override { detail::set_onednn_linear_enabled(true); }
};

TEST_F(GemmTest, MatchesFloat64ForwardAndBackward) {
  torch::manual_seed(1);
  struct Case {
    std::vector<std::int64_t> x;
    std::int64_t n;
    bool bias;
  };
  // Few rows and a long K (64 x 2048, 40 x 512) take the transposed forward (y^T = w x^T), the others
  // the direct one.
  for (const Case& c : {Case{{2, 37, 96}, 288, true}, Case{{5, 384}, 1536, true}, Case{{3, 4, 7, 700}, 33, false},
                        Case{{1, 1}, 1, true}, Case{{64, 2048}, 4096, true}, Case{{2, 20, 512}, 96, false}}) {
    const std::int64_t K = c.x.back();
    torch::Tensor x = torch::randn(c.x), w = torch::randn({c.n, K});
    torch::Tensor b = c.bias ? torch::randn({c.n}) : torch::Tensor();
    std::vector<std::int64_t> ys = c.x;
    ys.back() = c.n;
    torch::Tensor g = torch::randn(ys);
    ASSERT_TRUE(detail::onednn_linear_applies(x, w, b));
    Grads ours = run([](auto& a, auto& bw, auto& bb) { return cx::model::linear(a, bw, bb); }, x, w, b, g, torch::kFloat32);
    Grads ref = run([](auto& a, auto& bw, auto& bb) { return at::linear(a, bw, bb); }, x, w, b, g, torch::kFloat64);
    const std::int64_t M = x.numel() / K;
    EXPECT_LT(max_abs_diff(ours.y, ref.y), tol(K)) << "y, K " << K;
    EXPECT_LT(max_abs_diff(ours.gx, ref.gx), tol(c.n)) << "dx";
    EXPECT_LT(max_abs_diff(ours.gw, ref.gw), tol(M)) << "dw";
    if (c.bias) {
      EXPECT_LT(max_abs_diff(ours.gb, ref.gb), tol(M)) << "db";
    }
    EXPECT_EQ(ours.y.sizes(), ref.y.sizes());
    EXPECT_EQ(ours.gx.sizes(), x.sizes());
  }
}

TEST_F(GemmTest, ReadsStridedRowsAndNonContiguousWeights) {
  torch::manual_seed(2);
  // The CLS row of every image, a [B, D] view with row stride N * D, as the DINO head reads it.
  torch::Tensor tokens = torch::randn({6, 9, 64});
  torch::Tensor cls = tokens.select(1, 0);
  torch::Tensor wt = torch::randn({64, 48}).t();  // [48, 64], transposed storage
  torch::Tensor b = torch::randn({48});
  torch::Tensor ours = cx::model::linear(cls, wt, b), ref = at::linear(cls.to(torch::kFloat64), wt.to(torch::kFloat64), b.to(torch::kFloat64));
  EXPECT_LT(max_abs_diff(ours, ref), 2e-5);
  // The same through the transposed forward (24 rows of K = 256).
  torch::Tensor tokens2 = torch::randn({24, 3, 256});
  torch::Tensor w2 = torch::randn({40, 256}), b2 = torch::randn({40});
  EXPECT_LT(max_abs_diff(cx::model::linear(tokens2.select(1, 0), w2, b2),
                         at::linear(tokens2.select(1, 0).to(torch::kFloat64), w2.to(torch::kFloat64), b2.to(torch::kFloat64))),
            tol(256));
  // Columns not contiguous: copied first, same result.
  torch::Tensor xt = torch::randn({64, 10}).t();
  EXPECT_LT(max_abs_diff(cx::model::linear(xt, wt, b), at::linear(xt.to(torch::kFloat64), wt.to(torch::kFloat64), b.to(torch::kFloat64))), 2e-5);
}

TEST_F(GemmTest, LeavesItsInputsAlone) {
  // One row: the bias broadcast to [1, N] is the bias's own storage; the product must not land in it.
  for (std::int64_t m : {1, 3}) {
    torch::Tensor x = torch::randn({m, 5}), w = torch::randn({4, 5}), b = torch::randn({4});
    const torch::Tensor x0 = x.clone(), w0 = w.clone(), b0 = b.clone();
    cx::model::linear(x, w, b);
    cx::model::linear(x, w.requires_grad_(true), b).sum().backward();
    EXPECT_TRUE(x.equal(x0) && w.detach().equal(w0) && b.equal(b0)) << "m " << m;
  }
}

TEST_F(GemmTest, GradientOnlyWhereAsked) {
  torch::manual_seed(3);
  torch::Tensor x = torch::randn({8, 16}), w = torch::randn({4, 16}).requires_grad_(true), b = torch::randn({4});
  cx::model::linear(x, w, b).sum().backward();
  ASSERT_TRUE(w.grad().defined());
  // d sum(x w^T) / dw = column sums of x, repeated per output.
  EXPECT_LT(max_abs_diff(w.grad(), x.sum(0).expand({4, 16})), 1e-5);
  EXPECT_FALSE(x.grad().defined());
  // No gradient mode: no graph.
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(cx::model::linear(x, w, b).requires_grad());
}

TEST_F(GemmTest, FallsBackWhereItDoesNotApply) {
  torch::Tensor x = torch::randn({4, 8}), w = torch::randn({3, 8}), b = torch::randn({3});
  EXPECT_FALSE(detail::onednn_linear_applies(x.to(torch::kFloat64), w.to(torch::kFloat64), b.to(torch::kFloat64)));
  EXPECT_FALSE(detail::onednn_linear_applies(x.to(torch::kBFloat16), w.to(torch::kBFloat16), {}));
  EXPECT_FALSE(detail::onednn_linear_applies(torch::randn({0, 8}), w, b));
  EXPECT_FALSE(detail::onednn_linear_applies(x, torch::randn({3, 7}), b));  // at::linear's own shape error
  EXPECT_THROW(cx::model::linear(x, torch::randn({3, 7}), b), c10::Error);
  {
    // Under CPU autocast at::linear casts to bf16 (and runs oneDNN's bf16 matmul): left to it.
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    EXPECT_FALSE(detail::onednn_linear_applies(x, w, b));
    EXPECT_EQ(cx::model::linear(x, w, b).scalar_type(), torch::kBFloat16);
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  detail::set_onednn_linear_enabled(false);
  EXPECT_FALSE(detail::onednn_linear_applies(x, w, b));
  EXPECT_TRUE(cx::model::linear(x, w, b).equal(at::linear(x, w, b)));
}

TEST_F(GemmTest, SameBitsOnEveryCall) {
  torch::manual_seed(4);
  torch::Tensor x = torch::randn({261 * 4, 384}), w = torch::randn({1152, 384}), b = torch::randn({1152});
  torch::Tensor g = torch::randn({261 * 4, 1152});
  auto f = [](auto& a, auto& bw, auto& bb) { return cx::model::linear(a, bw, bb); };
  Grads a = run(f, x, w, b, g, torch::kFloat32), c = run(f, x, w, b, g, torch::kFloat32);
  EXPECT_TRUE(a.y.equal(c.y));
  EXPECT_TRUE(a.gx.equal(c.gx));
  EXPECT_TRUE(a.gw.equal(c.gw));
  EXPECT_TRUE(a.gb.equal(c.gb));
}

}  // namespace

namespace {

// matmul: q k^T and P V as attention reads them, strided views of one fused qkv projection.
TEST_F(GemmTest, BatchedMatmulOnStridedViewsForwardAndBackward) {
  torch::manual_seed(5);
  const std::int64_t B = 3, N = 37, H = 2, d = 16;
  torch::Tensor qkv0 = torch::randn({B, N, 3, H, d});
  auto run_attention_products = [&](bool ours, torch::ScalarType dtype) {
    torch::Tensor qkv = qkv0.to(dtype).detach().requires_grad_(true);
    torch::Tensor p = qkv.permute({2, 0, 3, 1, 4});  // [3, B, H, N, d] views
    auto mm = [&](const torch::Tensor& a, const torch::Tensor& b) {
      return ours ? cx::model::matmul(a, b) : torch::matmul(a, b);
    };
    if (ours) {
      EXPECT_TRUE(detail::onednn_matmul_applies(p[0], p[1].transpose(-2, -1)));
    }
    torch::Tensor s = mm(p[0], p[1].transpose(-2, -1)) * 0.25;
    torch::Tensor out = mm(torch::softmax(s, -1), p[2]);
    torch::Tensor g = torch::ones_like(out).cumsum(-1).sin();  // fixed, non-uniform upstream gradient
    (out * g).sum().backward();
    return std::make_pair(out.detach(), qkv.grad());
  };
  auto [y, gq] = run_attention_products(true, torch::kFloat32);
  auto [y64, gq64] = run_attention_products(false, torch::kFloat64);
  // Sums of d = 16 and N = 37 unit-scale terms: tol(n) as above.
  EXPECT_LT(max_abs_diff(y, y64), tol(N));
  EXPECT_LT(max_abs_diff(gq, gq64), tol(N));
  EXPECT_EQ(y.sizes(), (std::vector<std::int64_t>{B, H, N, d}));
}

TEST_F(GemmTest, BatchedMatmulDoesNotDependOnThreads) {
  torch::manual_seed(6);
  torch::Tensor a = torch::randn({4, 6, 50, 64}), b = torch::randn({4, 6, 64, 50});
  const int before = at::get_num_threads();
  at::set_num_threads(1);
  torch::Tensor one = cx::model::matmul(a, b);
  at::set_num_threads(2);
  torch::Tensor two = cx::model::matmul(a, b);
  at::set_num_threads(before);
  EXPECT_TRUE(one.equal(two));
  EXPECT_LT(max_abs_diff(one, torch::matmul(a.to(torch::kFloat64), b.to(torch::kFloat64))), tol(64));
}

TEST_F(GemmTest, BatchedMatmulFallsBackOnBroadcasting) {
  torch::Tensor a = torch::randn({2, 3, 4}), b = torch::randn({1, 4, 5});
  EXPECT_FALSE(detail::onednn_matmul_applies(a, b));
  EXPECT_TRUE(cx::model::matmul(a, b).equal(torch::matmul(a, b)));
  EXPECT_FALSE(detail::onednn_matmul_applies(a, torch::randn({2, 5, 4})));
  EXPECT_THROW(cx::model::matmul(a, torch::randn({2, 5, 4})), c10::Error);
}

}  // namespace

namespace {

// linear() under CPU bf16 autocast: oneDNN's bf16 GEMM, float32 accumulation and output.
class Bf16LinearTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!detail::onednn_gemm_bf16_usable())
      GTEST_SKIP() << "no oneDNN bf16 GEMM or no AVX-512 here: linear() under autocast is at::linear";
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  void TearDown() override {
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
    detail::set_onednn_linear_enabled(true);
  }
};

torch::Tensor rounded64(const torch::Tensor& t) { return t.detach().to(torch::kBFloat16).to(torch::kFloat64); }

// The operands rounded to bf16 are exact in float32 and so are their products: what is left is
// float32 summation, tol(n) as above. A product rounded to bf16 anywhere (as at::linear's output
// and gradients are under autocast) is off by ~4e-3 relative, |y| ~ sqrt(n): far outside.
TEST_F(Bf16LinearTest, FloatOutputIsTheFloat32SumOfBf16Products) {
  torch::manual_seed(7);
  for (auto [shape, n] : {std::make_pair(std::vector<std::int64_t>{2, 37, 96}, std::int64_t{288}),
                          std::make_pair(std::vector<std::int64_t>{261, 384}, std::int64_t{1152}),
                          std::make_pair(std::vector<std::int64_t>{1, 5}, std::int64_t{3})}) {
    const std::int64_t K = shape.back();
    torch::Tensor x = torch::randn(shape).requires_grad_(true), w = torch::randn({n, K}).requires_grad_(true);
    torch::Tensor b = torch::randn({n}).requires_grad_(true);
    ASSERT_TRUE(detail::bf16_linear_applies(x, w, b));
    torch::Tensor y = cx::model::linear(x, w, b, cx::model::LinearOutput::float32);
    ASSERT_EQ(y.scalar_type(), torch::kFloat32);
    std::vector<std::int64_t> ys = shape;
    ys.back() = n;
    ASSERT_EQ(y.sizes(), ys);
    torch::Tensor y64 = at::linear(rounded64(x), rounded64(w), b.detach().to(torch::kFloat64));
    EXPECT_LT(max_abs_diff(y, y64), tol(K)) << "K " << K;

    torch::Tensor g = torch::randn(ys);
    (y * g).sum().backward();
    const torch::Tensor g64 = rounded64(g).reshape({-1, n}), x64 = rounded64(x).reshape({-1, K});
    const std::int64_t M = x64.size(0);
    ASSERT_EQ(x.grad().scalar_type(), torch::kFloat32);
    EXPECT_LT(max_abs_diff(x.grad().reshape({-1, K}), g64.mm(rounded64(w))), tol(n)) << "dx";
    EXPECT_LT(max_abs_diff(w.grad(), g64.t().mm(x64)), tol(M)) << "dw";
    // db from dY as it arrived, float32.
    EXPECT_LT(max_abs_diff(b.grad(), g.to(torch::kFloat64).reshape({-1, n}).sum(0)), tol(M)) << "db";
  }
}

TEST_F(Bf16LinearTest, AutocastOutputIsTheFloatOutputRounded) {
  torch::manual_seed(8);
  torch::Tensor x = torch::randn({3, 50, 64}), w = torch::randn({80, 64}), b = torch::randn({80});
  torch::Tensor f = cx::model::linear(x, w, b, cx::model::LinearOutput::float32);
  torch::Tensor h = cx::model::linear(x, w, b);
  ASSERT_EQ(h.scalar_type(), torch::kBFloat16);
  // h is f rounded to bf16: within half a bf16 ulp (2^-8 relative) of it. (The bias is added after
  // the product there and before it here, so an f32 ulp may tip a rounding: not bit for bit.)
  EXPECT_TRUE(((h.to(torch::kFloat32) - f).abs() <= f.abs() * (1.0 / 256) + 1e-6).all().item<bool>());
  // And what at::linear gives under autocast, which also rounds the bias to bf16 first: both are
  // within half a bf16 ulp (2^-8 relative) of nearly the same float32 sum, so within 2^-6 relative
  // of each other with room; a missing bias or a wrong row would be off by O(1).
  torch::Tensor ref = at::linear(x, w, b);
  ASSERT_EQ(ref.scalar_type(), torch::kBFloat16);
  torch::Tensor rel = (h.to(torch::kFloat32) - ref.to(torch::kFloat32)).abs() / ref.to(torch::kFloat32).abs().clamp_min(1.0);
  EXPECT_LE(rel.max().item<double>(), 1.0 / 64);
  // The backward of the bf16 output receives bf16 dY: db as 1^T dY on the bf16 GEMM, f32 sums.
  torch::Tensor bg = b.clone().requires_grad_(true), wg = w.clone().requires_grad_(true);
  torch::Tensor g = torch::randn({3, 50, 80});
  (cx::model::linear(x, wg, bg) * g.to(torch::kBFloat16)).sum().backward();
  EXPECT_LT(max_abs_diff(bg.grad(), rounded64(g).reshape({-1, 80}).sum(0)), tol(150));
  EXPECT_LT(max_abs_diff(wg.grad(), rounded64(g).reshape({-1, 80}).t().mm(rounded64(x).reshape({-1, 64}))), tol(150));
}

TEST_F(Bf16LinearTest, Bf16InputsAndAWeightUsedTwice) {
  torch::manual_seed(9);
  // x already bf16 (a GELU output under autocast): read in place; its gradient comes back in bf16.
  torch::Tensor x = torch::randn({40, 32}).to(torch::kBFloat16).requires_grad_(true);
  torch::Tensor x2 = torch::randn({12, 32}).requires_grad_(true);
  torch::Tensor w = torch::randn({16, 32}).requires_grad_(true);
  // Twice in one autocast region (the student's global and local crops): the cached bf16 copy, both
  // gradients added into w.
  torch::Tensor y = cx::model::linear(x, w, {}, cx::model::LinearOutput::float32);
  torch::Tensor y2 = cx::model::linear(x2, w, {}, cx::model::LinearOutput::float32);
  (y.sum() + 2.0 * y2.sum()).backward();
  ASSERT_EQ(x.grad().scalar_type(), torch::kBFloat16);
  torch::Tensor expect_w = x.detach().to(torch::kFloat64).sum(0) + 2.0 * rounded64(x2).sum(0);
  EXPECT_LT(max_abs_diff(w.grad(), expect_w.expand({16, 32})), tol(52));
  EXPECT_LT(max_abs_diff(x2.grad(), 2.0 * rounded64(w).sum(0).expand({12, 32})), tol(16));
  // No gradient mode: no graph, and the same numbers.
  torch::NoGradGuard no_grad;
  torch::Tensor z = cx::model::linear(x2, w, {}, cx::model::LinearOutput::float32);
  EXPECT_FALSE(z.requires_grad());
  EXPECT_TRUE(z.equal(y2.detach()));
}

TEST_F(Bf16LinearTest, SameBitsOnEveryCallAndFallsBackWhenOff) {
  torch::manual_seed(10);
  torch::Tensor x = torch::randn({261 * 4, 384}), w = torch::randn({1152, 384}), b = torch::randn({1152});
  torch::Tensor g = torch::randn({261 * 4, 1152});
  auto f = [](auto& a, auto& bw, auto& bb) { return cx::model::linear(a, bw, bb, cx::model::LinearOutput::float32); };
  Grads a = run(f, x, w, b, g, torch::kFloat32), c = run(f, x, w, b, g, torch::kFloat32);
  EXPECT_TRUE(a.y.equal(c.y) && a.gx.equal(c.gx) && a.gw.equal(c.gw) && a.gb.equal(c.gb));
  EXPECT_FALSE(detail::bf16_linear_applies(x.to(torch::kFloat64), w, b));
  EXPECT_FALSE(detail::bf16_linear_applies(x, w, torch::randn({5})));
  detail::set_onednn_linear_enabled(false);
  EXPECT_FALSE(detail::bf16_linear_applies(x, w, b));
  EXPECT_TRUE(cx::model::linear(x, w, b, cx::model::LinearOutput::float32).equal(at::linear(x, w, b)));
  at::autocast::set_cpu_enabled(false);
  detail::set_onednn_linear_enabled(true);
  EXPECT_FALSE(detail::bf16_linear_applies(x, w, b));  // no autocast: the float32 path
}

}  // namespace
