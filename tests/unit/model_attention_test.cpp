// The fused CPU attention against the reference (matmul + softmax + matmul, HF's eager attention)
// and against the same math in float64; its exp against expf; stability, strides, determinism.
#include <gtest/gtest.h>

#include <ATen/autocast_mode.h>

#include <array>
#include <cmath>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/model/attention.hpp"

namespace {
using cx::model::AttentionKernel;
namespace detail = cx::model::detail;
using detail::Isa;

// Inputs ~N(0, 1) and scale d^-0.5 give unit-scale logits and outputs (convex combinations of V
// rows, |out| < 2 here). Each float32 kernel rounds differently from float64: every score is a
// 16-64 term dot product (~1e-7 relative), the exp adds <= 2.5e-7 relative, and P @ V is a weighted
// mean rounded ~1e-7 of max|v| per step, summed in an order that differs between OpenBLAS's tile
// products and one large matmul. Measured on these shapes: fused vs float64 <= 4.4e-7, reference vs
// float64 <= 7.1e-7, fused vs reference <= 7.8e-7. 2e-6 absolute leaves 2.5x headroom; a wrong
// row, maximum or normalisation moves outputs by 1e-2 or more.
constexpr double kTolerance = 2e-6;

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  if (a.numel() == 0) return 0;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

torch::Tensor reference64(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale) {
  torch::Tensor s = torch::matmul(q.to(torch::kFloat64), k.to(torch::kFloat64).transpose(-2, -1)) * scale;
  return torch::matmul(torch::softmax(s, -1), v.to(torch::kFloat64));
}

std::vector<Isa> supported_isas() {
  std::vector<Isa> isas;
  for (Isa isa : {Isa::scalar, Isa::avx2, Isa::avx512})
    if (detail::isa_supported(isa)) isas.push_back(isa);
  return isas;
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar: return "scalar";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
    default: return "automatic";
  }
}

// ---------------------------------------------------------------------------------------------
TEST(AttentionExp, WithinTwoAndAHalfE7OfExpOnTheSoftmaxRange) {
  // Every float32 spacing matters near 0; a dense grid plus the exact boundaries.
  std::vector<float> x;
  for (int i = 0; i <= 2000000; ++i) x.push_back(-87.33f * static_cast<float>(i) / 2000000.0f);
  for (float special : {0.0f, -0.0f, -1e-30f, -1e-7f, -0.34657359f, -0.34657360f, -0.6931472f, -87.3365f})
    x.push_back(special);
  for (Isa isa : supported_isas()) {
    SCOPED_TRACE(isa_name(isa));
    std::vector<float> y(x.size());
    double worst = 0, worst_sum = 0;
    // Rows of 4096, a long softmax row: each call's float32 sum against the float64 sum of its outputs.
    for (size_t begin = 0; begin < x.size(); begin += 4096) {
      const std::int64_t n = static_cast<std::int64_t>(std::min<size_t>(4096, x.size() - begin));
      const float sum = detail::exp_nonpositive(x.data() + begin, y.data() + begin, n, isa);
      double exact_sum = 0;
      for (std::int64_t i = 0; i < n; ++i) exact_sum += y[begin + i];
      worst_sum = std::max(worst_sum, std::abs(sum - exact_sum) / exact_sum);
    }
    for (size_t i = 0; i < x.size(); ++i) {
      const double e = std::exp(static_cast<double>(x[i]));
      worst = std::max(worst, std::abs(y[i] - e) / e);
    }
    // 2.5e-7 is ~2 ulp: the polynomial (~1 ulp) plus rounding of the range reduction.
    EXPECT_LE(worst, 2.5e-7);
    // 4096 positive terms in 8-16 running float32 sums: <= 512 roundings of 6e-8 each at worst.
    EXPECT_LE(worst_sum, 3e-5);
  }
}

TEST(AttentionExp, UnderflowsToZeroNaNPropagatesAndTailsStayInBounds) {
  for (Isa isa : supported_isas()) {
    SCOPED_TRACE(isa_name(isa));
    std::vector<float> x = {-87.4f, -100.0f, -1e30f, -std::numeric_limits<float>::infinity()};
    std::vector<float> y(x.size());
    EXPECT_EQ(detail::exp_nonpositive(x.data(), y.data(), 4, isa), 0.0f);
    for (float v : y) EXPECT_LE(v, 1.2e-38f);  // expf gives subnormals or 0 here
    float nan_in = std::numeric_limits<float>::quiet_NaN(), nan_out = 0;
    detail::exp_nonpositive(&nan_in, &nan_out, 1, isa);
    EXPECT_TRUE(std::isnan(nan_out));
    // Masked tails: every length up to 40 writes exactly n values and sums exactly n of them.
    for (int n = 1; n <= 40; ++n) {
      std::vector<float> in(64, -1.0f), out(64, 123.0f);
      const float s = detail::exp_nonpositive(in.data(), out.data(), n, isa);
      EXPECT_NEAR(s, n * std::exp(-1.0), 1e-5 * n) << "n=" << n;
      for (int i = n; i < 64; ++i) ASSERT_EQ(out[i], 123.0f) << "n=" << n << " wrote past the end at " << i;
    }
  }
}

// ---------------------------------------------------------------------------------------------
struct Shape {
  std::int64_t B, H, N, M, dk, dv;
};
std::ostream& operator<<(std::ostream& os, const Shape& s) {
  return os << "B" << s.B << "_H" << s.H << "_N" << s.N << "_M" << s.M << "_dk" << s.dk << "_dv" << s.dv;
}

class FusedShapes : public ::testing::TestWithParam<Shape> {};

TEST_P(FusedShapes, MatchesReferenceAndFloat64) {
  const Shape s = GetParam();
  // Set explicitly: until LibTorch sets the OpenMP thread count, OpenBLAS threads the first products
  // by its own default and rounds them differently from later ones (bitwise checks below).
  at::set_num_threads(2);
  torch::NoGradGuard no_grad;
  torch::manual_seed(7);
  torch::Tensor q = torch::randn({s.B, s.H, s.N, s.dk}), k = torch::randn({s.B, s.H, s.M, s.dk});
  torch::Tensor v = torch::randn({s.B, s.H, s.M, s.dv});
  const double scale = 1.0 / std::sqrt(static_cast<double>(s.dk));
  torch::Tensor ref = cx::model::attention(q, k, v, scale, AttentionKernel::reference);
  torch::Tensor ref64 = reference64(q, k, v, scale);
  torch::Tensor fused = cx::model::attention(q, k, v, scale, AttentionKernel::fused);
  ASSERT_EQ(fused.sizes(), (std::vector<std::int64_t>{s.B, s.H, s.N, s.dv}));
  EXPECT_LE(max_abs_diff(fused, ref), kTolerance);
  EXPECT_LE(max_abs_diff(fused, ref64), kTolerance);
  EXPECT_LE(max_abs_diff(ref, ref64), kTolerance);  // the bound is about float32 rounding, not our kernel
  // Heads merged: the same numbers as [B, N, H * dv].
  torch::Tensor merged = cx::model::attention_merged_heads(q, k, v, scale, AttentionKernel::fused);
  EXPECT_TRUE(torch::equal(merged, fused.transpose(1, 2).reshape({s.B, s.N, s.H * s.dv})));
  torch::Tensor merged_ref = cx::model::attention_merged_heads(q, k, v, scale, AttentionKernel::reference);
  EXPECT_TRUE(torch::equal(merged_ref, ref.transpose(1, 2).reshape({s.B, s.N, s.H * s.dv})));
}

INSTANTIATE_TEST_SUITE_P(Shapes, FusedShapes,
                         ::testing::Values(Shape{1, 1, 1, 1, 16, 16},        // one query, one key
                                           Shape{1, 2, 5, 5, 16, 16},        //
                                           Shape{2, 3, 17, 17, 64, 64},      //
                                           Shape{1, 1, 129, 129, 64, 64},    // one past a 128-row tile
                                           Shape{2, 2, 300, 257, 16, 32},    // cross attention, dk != dv
                                           Shape{1, 2, 3, 2000, 64, 64},     // long keys: smaller tiles
                                           Shape{2, 6, 1374, 1374, 64, 64}), // ViT-S/14 at 518, B*H = 12
                         [](const auto& info) {
                           std::ostringstream os;
                           os << info.param;
                           return os.str();
                         });

TEST(FusedAttention, EveryIsaGemmAndTileGivesTheSameAnswer) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  torch::Tensor q = torch::randn({2, 3, 77, 64}), k = torch::randn({2, 3, 61, 64}), v = torch::randn({2, 3, 61, 64});
  torch::Tensor ref64 = reference64(q, k, v, 0.125);
  for (Isa isa : supported_isas())
    for (bool blas : {true, false})
      for (std::int64_t tile : {0, 1, 16, 50, 200}) {
        SCOPED_TRACE(isa_name(isa) + (blas ? " blas" : " at::addmm") + " tile " + std::to_string(tile));
        detail::FusedOptions options;
        options.isa = isa;
        options.use_blas = blas;
        options.tile_rows = tile;
        EXPECT_LE(max_abs_diff(detail::fused_attention(q, k, v, 0.125, false, options), ref64), kTolerance);
      }
}

TEST(FusedAttention, FindsTheBlasLibTorchUses) {
  // Debian's LibTorch calls OpenBLAS's sgemm_; without it every tile goes through at::addmm_out.
  EXPECT_TRUE(detail::blas_sgemm_available());
}

TEST(FusedAttention, ReadsStridedViewsInPlaceAndCopiesTheRest) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(11);
  const std::int64_t B = 2, N = 50, H = 3, d = 16;
  // The ViT's layout: one qkv projection [B, N, 3 * H * d] split into [B, H, N, d] views.
  torch::Tensor qkv = torch::randn({B, N, 3 * H * d}).view({B, N, 3, H, d}).permute({2, 0, 3, 1, 4});
  torch::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
  ASSERT_FALSE(q.is_contiguous());
  torch::Tensor expected = reference64(q, k, v, 0.25);
  EXPECT_LE(max_abs_diff(cx::model::attention(q, k, v, 0.25, AttentionKernel::fused), expected), kTolerance);
  // Last dimension not contiguous (must be copied), and a batch broadcast with stride 0.
  torch::Tensor qt = q.contiguous().transpose(2, 3).contiguous().transpose(2, 3);
  ASSERT_NE(qt.stride(3), 1);
  EXPECT_LE(max_abs_diff(cx::model::attention(qt, k, v, 0.25, AttentionKernel::fused), expected), kTolerance);
  torch::Tensor k1 = k.narrow(0, 0, 1).expand({B, H, N, d}), v1 = v.narrow(0, 0, 1).expand({B, H, N, d});
  EXPECT_LE(max_abs_diff(cx::model::attention(q, k1, v1, 0.25, AttentionKernel::fused), reference64(q, k1, v1, 0.25)),
            kTolerance);
}

TEST(FusedAttention, HugeLogitsStayFiniteAndPickTheMaximum) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(5);
  const std::int64_t N = 40, M = 300, d = 16;
  // Unit keys; each query is 1e4 times one of them, so its own score is 1e4 and the next best is
  // at most ~0.9e4: exp of the gap is 0 in any precision and the output must be that key's V row.
  torch::Tensor k = torch::nn::functional::normalize(torch::randn({1, 2, M, d}),
                                                     torch::nn::functional::NormalizeFuncOptions().dim(-1));
  torch::Tensor pick = torch::randint(M, {N}, torch::kLong);
  torch::Tensor q = k.index_select(2, pick) * 1e4;
  torch::Tensor v = torch::randn({1, 2, M, d});
  torch::Tensor expected = v.index_select(2, pick);
  for (Isa isa : supported_isas()) {
    detail::FusedOptions options;
    options.isa = isa;
    torch::Tensor out = detail::fused_attention(q, k, v, 1.0, false, options);
    EXPECT_TRUE(torch::isfinite(out).all().item<bool>()) << isa_name(isa);
    EXPECT_LE(max_abs_diff(out, expected), 1e-6) << isa_name(isa);
  }
  // Logits of 1e6 in both signs: max-subtraction keeps exp in range, the row is a proper average.
  torch::Tensor qb = torch::randn({1, 2, N, d}) * 1e3, kb = torch::randn({1, 2, M, d}) * 1e3;
  torch::Tensor out = cx::model::attention(qb, kb, v, 1.0, AttentionKernel::fused);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  EXPECT_LE(out.abs().max().item<float>(), v.abs().max().item<float>() * (1 + 1e-6));
}

TEST(FusedAttention, SameBytesWithOneAndTwoThreads) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(9);
  torch::Tensor qkv = torch::randn({2, 517, 3 * 6 * 64}).view({2, 517, 3, 6, 64}).permute({2, 0, 3, 1, 4});
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  torch::Tensor one = cx::model::attention(qkv[0], qkv[1], qkv[2], 0.125, AttentionKernel::fused);
  at::set_num_threads(2);
  torch::Tensor two = cx::model::attention(qkv[0], qkv[1], qkv[2], 0.125, AttentionKernel::fused);
  torch::Tensor again = cx::model::attention(qkv[0], qkv[1], qkv[2], 0.125, AttentionKernel::fused);
  at::set_num_threads(saved);
  EXPECT_TRUE(torch::equal(one, two));
  EXPECT_TRUE(torch::equal(two, again));
  // One head whose queries fit one tile: still split in two tasks, so still the same bytes.
  torch::Tensor q1 = torch::randn({1, 1, 100, 64});
  torch::Tensor k1 = torch::randn({1, 1, 3000, 64}), v1 = torch::randn({1, 1, 3000, 64});
  at::set_num_threads(1);
  torch::Tensor single = cx::model::attention(q1, k1, v1, 0.125, AttentionKernel::fused);
  at::set_num_threads(2);
  torch::Tensor pair = cx::model::attention(q1, k1, v1, 0.125, AttentionKernel::fused);
  at::set_num_threads(saved);
  EXPECT_TRUE(torch::equal(single, pair));
}

// ---------------------------------------------------------------------------------------------
// bf16 (CPU autocast, --precision bf16). Against the float64 attention of the same bf16-rounded
// inputs: the fused kernel rounds the unnormalised probabilities (<= 1) to bf16 (relative 2^-9)
// before P V and the output once more (2^-9 of |out| < 2, i.e. <= 3.9e-3); the probability
// rounding averages over ~M terms. Measured <= 3.7e-3 on these shapes; bound 1e-2. A wrong row,
// maximum or normalisation moves outputs by 1e-1 or more. The reference kernel in bf16 (autograd,
// as PyTorch autocast's eager attention) also rounds the scores to bf16 before the softmax:
// measured <= 1.2e-2, bound 3e-2.
constexpr double kBf16Tolerance = 1e-2;
constexpr double kBf16ReferenceTolerance = 3e-2;

TEST(FusedAttentionBf16, MatchesFloat64OnBf16InputsAndThreadsDoNotChangeBytes) {
  if (!detail::bf16_gemm_available()) GTEST_SKIP() << "no oneDNN bf16 GEMM or no AVX-512 on this machine";
  torch::NoGradGuard no_grad;
  torch::manual_seed(21);
  for (auto shape : std::vector<std::vector<std::int64_t>>{{2, 3, 37, 16}, {1, 6, 517, 64}, {2, 2, 1, 32}}) {
    torch::Tensor qkv = torch::randn({shape[0], shape[2], 3 * shape[1] * shape[3]})
                            .to(torch::kBFloat16)
                            .view({shape[0], shape[2], 3, shape[1], shape[3]})
                            .permute({2, 0, 3, 1, 4});
    const torch::Tensor q = qkv[0], k = qkv[1], v = qkv[2];
    const double scale = 1.0 / std::sqrt(static_cast<double>(shape[3]));
    ASSERT_TRUE(cx::model::fused_attention_applies(q, k, v));
    const int saved = at::get_num_threads();
    at::set_num_threads(1);
    torch::Tensor one = cx::model::attention(q, k, v, scale, AttentionKernel::fused);
    at::set_num_threads(2);
    torch::Tensor two = cx::model::attention(q, k, v, scale, AttentionKernel::automatic);
    at::set_num_threads(saved);
    EXPECT_EQ(two.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::equal(one, two)) << shape[2];
    const torch::Tensor want = reference64(q, k, v, scale);
    const double fused_err = max_abs_diff(two, want);
    const double reference_err = max_abs_diff(cx::model::attention(q, k, v, scale, AttentionKernel::reference), want);
    std::cout << "[ bf16 ] N " << shape[2] << ": fused " << fused_err << ", reference " << reference_err << "\n";
    EXPECT_LE(fused_err, kBf16Tolerance);
    EXPECT_LE(reference_err, kBf16ReferenceTolerance);
    // Merged heads: the same numbers as [B, N, H * dv].
    torch::Tensor merged = cx::model::attention_merged_heads(q, k, v, scale);
    EXPECT_TRUE(torch::equal(merged, two.transpose(1, 2).reshape({shape[0], shape[2], shape[1] * shape[3]})));
  }
}

// attention_from_qkv with autograd on a bf16 qkv: the trainable bf16 kernel, output and qkv's
// gradient against float64 autograd on the same bf16 values, beside autocast's eager attention (the
// path it replaces in bf16 training) against the same float64.
struct QkvRun {
  torch::Tensor out, grad;
};

QkvRun run_qkv(const torch::Tensor& qkv0, const torch::Tensor& g, std::int64_t heads, torch::ScalarType dtype,
               AttentionKernel kernel, bool autocast) {
  torch::Tensor qkv = qkv0.to(dtype).detach().requires_grad_(true);
  const double scale = 1.0 / std::sqrt(static_cast<double>(qkv0.size(2) / 3 / heads));
  if (autocast) {
    at::autocast::set_cpu_enabled(true);
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  }
  torch::Tensor out;
  if (dtype == torch::kFloat64) {
    const std::int64_t B = qkv0.size(0), N = qkv0.size(1), d = qkv0.size(2) / 3 / heads;
    auto p = qkv.view({B, N, 3, heads, d}).permute({2, 0, 3, 1, 4}).unbind(0);
    out = reference64(p[0], p[1], p[2], scale).transpose(1, 2).reshape({B, N, heads * d});
  } else {
    out = cx::model::attention_from_qkv(qkv, heads, scale, kernel);
  }
  (out.to(torch::kFloat64) * g.to(torch::kFloat64)).sum().backward();
  if (autocast) {
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  return {out.detach(), qkv.grad()};
}

// Tolerances: bf16 keeps 8 bits, so P, the output, dS and the gradients each carry up to 2^-9
// relative rounding. Relative to max(1, |element|), the largest errors over these shapes measured
// 6.0e-3 (output) and 6.6e-3 (gradient) here, the eager path's 6.5e-3 and 1.2e-2 (printed): 1.6e-2
// and 2.4e-2 leave 2.5-3.5x; a wrong head, a transposed product or a missing scale is off by O(1).
// Also asserted: the kernel is not less accurate than the eager path it replaces on the mean
// (measured 0.57-0.90 of its mean error; bound 1.25).
TEST(TrainableAttentionBf16, MatchesFloat64AndTheEagerAutocastPath) {
  if (!detail::bf16_gemm_available()) GTEST_SKIP() << "no oneDNN bf16 GEMM or no AVX-512 on this machine";
  torch::manual_seed(31);
  for (auto [B, N, H, d] : std::vector<std::array<std::int64_t, 4>>{{2, 37, 3, 16}, {1, 261, 6, 64}, {3, 5, 2, 32}}) {
    const torch::Tensor qkv0 = torch::randn({B, N, 3 * H * d}).to(torch::kBFloat16);
    const torch::Tensor g = torch::randn({B, N, H * d}).to(torch::kBFloat16);
    const QkvRun ours = run_qkv(qkv0, g, H, torch::kBFloat16, AttentionKernel::automatic, false);
    const QkvRun eager = run_qkv(qkv0, g, H, torch::kBFloat16, AttentionKernel::reference, true);
    const QkvRun want = run_qkv(qkv0, g, H, torch::kFloat64, AttentionKernel::reference, false);
    ASSERT_EQ(ours.out.scalar_type(), torch::kBFloat16);
    ASSERT_EQ(ours.grad.scalar_type(), torch::kBFloat16);
    ASSERT_EQ(ours.out.sizes(), want.out.sizes());
    // Errors relative to each element's size (at least 1): bf16 rounding is relative.
    auto rel = [](const torch::Tensor& a, const torch::Tensor& w) {
      const torch::Tensor w64 = w.to(torch::kFloat64);
      return ((a.to(torch::kFloat64) - w64).abs() / w64.abs().clamp_min(1.0)).max().item<double>();
    };
    auto mean_err = [](const torch::Tensor& a, const torch::Tensor& w) {
      return (a.to(torch::kFloat64) - w.to(torch::kFloat64)).abs().mean().item<double>();
    };
    const double out_err = rel(ours.out, want.out), grad_err = rel(ours.grad, want.grad);
    std::cout << "[ bf16 train ] N " << N << ": output " << out_err << " (eager " << rel(eager.out, want.out)
              << "), gradient " << grad_err << " (eager " << rel(eager.grad, want.grad) << "); mean "
              << mean_err(ours.out, want.out) << " / " << mean_err(ours.grad, want.grad) << " (eager "
              << mean_err(eager.out, want.out) << " / " << mean_err(eager.grad, want.grad) << ")\n";
    EXPECT_LE(out_err, 1.6e-2);
    EXPECT_LE(grad_err, 2.4e-2);
    EXPECT_LE(mean_err(ours.out, want.out), 1.25 * mean_err(eager.out, want.out));
    EXPECT_LE(mean_err(ours.grad, want.grad), 1.25 * mean_err(eager.grad, want.grad));
  }
}

TEST(TrainableAttentionBf16, ThreadsDoNotChangeBytesAndInferenceIsTheFusedKernel) {
  if (!detail::bf16_gemm_available()) GTEST_SKIP() << "no oneDNN bf16 GEMM or no AVX-512 on this machine";
  torch::manual_seed(32);
  const torch::Tensor qkv0 = torch::randn({2, 41, 3 * 4 * 32}).to(torch::kBFloat16);
  const torch::Tensor g = torch::randn({2, 41, 4 * 32}).to(torch::kBFloat16);
  const int saved = at::get_num_threads();
  at::set_num_threads(1);
  const QkvRun one = run_qkv(qkv0, g, 4, torch::kBFloat16, AttentionKernel::automatic, false);
  at::set_num_threads(2);
  const QkvRun two = run_qkv(qkv0, g, 4, torch::kBFloat16, AttentionKernel::automatic, false);
  at::set_num_threads(saved);
  EXPECT_TRUE(torch::equal(one.out, two.out));
  EXPECT_TRUE(torch::equal(one.grad, two.grad));
  // Without autograd: the inference kernel on the q, k, v views, close to the training kernel's
  // output (it rounds the unnormalised probabilities instead of the normalised ones).
  torch::NoGradGuard no_grad;
  const torch::Tensor inference = cx::model::attention_from_qkv(qkv0, 4, 1.0 / std::sqrt(32.0));
  EXPECT_LE(max_abs_diff(inference, one.out), 3e-2);
  EXPECT_THROW(cx::model::attention_from_qkv(qkv0, 5, 1.0), cx::Error);
}

TEST(FusedAttentionBf16, HugeLogitsStayFiniteAndMixedTypesAreNotFused) {
  if (!detail::bf16_gemm_available()) GTEST_SKIP() << "no oneDNN bf16 GEMM or no AVX-512 on this machine";
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  torch::Tensor q = (torch::randn({1, 1, 8, 16}) * 300).to(torch::kBFloat16);
  torch::Tensor k = (torch::randn({1, 1, 40, 16}) * 300).to(torch::kBFloat16);
  torch::Tensor v = torch::randn({1, 1, 40, 16}).to(torch::kBFloat16);
  torch::Tensor out = cx::model::attention(q, k, v, 0.25, AttentionKernel::fused);
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
  EXPECT_LE(max_abs_diff(out, reference64(q, k, v, 0.25)), kBf16Tolerance);
  EXPECT_FALSE(cx::model::fused_attention_applies(q, k.to(torch::kFloat32), v));
}

TEST(Attention, AutomaticPicksFusedOnlyForCpuFloat32Inference) {
  torch::manual_seed(1);
  torch::Tensor q = torch::randn({1, 2, 9, 16}), k = torch::randn({1, 2, 9, 16}), v = torch::randn({1, 2, 9, 16});
  EXPECT_TRUE(cx::model::fused_attention_applies(q, k, v));
  EXPECT_FALSE(cx::model::fused_attention_applies(q.to(torch::kFloat64), k.to(torch::kFloat64), v.to(torch::kFloat64)));
  torch::Tensor qg = q.clone().requires_grad_(true);
  EXPECT_FALSE(cx::model::fused_attention_applies(qg, k, v));
  // Training: autograd flows through the reference kernel.
  torch::Tensor out = cx::model::attention(qg, k, v, 0.25);
  ASSERT_TRUE(out.requires_grad());
  out.sum().backward();
  EXPECT_TRUE(qg.grad().defined());
  {
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(cx::model::fused_attention_applies(qg, k, v));
  }
  // float64 through automatic: the reference kernel, which like HF's eager attention takes the
  // softmax in float32 whatever the input dtype, so it sits ~1e-7 (float32 rounding) from float64.
  torch::Tensor q64 = q.to(torch::kFloat64), k64 = k.to(torch::kFloat64), v64 = v.to(torch::kFloat64);
  torch::Tensor out64 = cx::model::attention(q64, k64, v64, 0.25);
  EXPECT_EQ(out64.scalar_type(), torch::kFloat64);
  EXPECT_LE(max_abs_diff(out64, reference64(q, k, v, 0.25)), 1e-6);
}

TEST(Attention, EmptyInputsMatchTheReference) {
  torch::NoGradGuard no_grad;
  torch::Tensor q = torch::randn({1, 2, 4, 8}), k0 = torch::randn({1, 2, 0, 8}), v0 = torch::randn({1, 2, 0, 8});
  EXPECT_LE(max_abs_diff(cx::model::attention(q, k0, v0, 1.0, AttentionKernel::fused),
                         cx::model::attention(q, k0, v0, 1.0, AttentionKernel::reference)),
            0.0);
  torch::Tensor q0 = torch::randn({1, 2, 0, 8}), k = torch::randn({1, 2, 5, 8}), v = torch::randn({1, 2, 5, 8});
  EXPECT_EQ(cx::model::attention(q0, k, v, 1.0, AttentionKernel::fused).sizes(),
            (std::vector<std::int64_t>{1, 2, 0, 8}));
}

TEST(Attention, RejectsMismatchedShapesAndTypes) {
  torch::Tensor q = torch::randn({1, 2, 4, 8}), k = torch::randn({1, 2, 5, 8}), v = torch::randn({1, 2, 6, 8});
  try {
    cx::model::attention(q, k, v, 1.0);
    FAIL() << "no error for mismatched key and value counts";
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()),
              "attention: q [1, 2, 4, 8], k [1, 2, 5, 8], v [1, 2, 6, 8] do not fit q [B, H, N, dk], "
              "k [B, H, M, dk], v [B, H, M, dv]");
  }
  torch::Tensor d = torch::randn({1, 2, 4, 8}, torch::kFloat64);
  EXPECT_THROW(cx::model::attention(d, d, d, 1.0, AttentionKernel::fused), cx::Error);
  EXPECT_THROW(cx::model::attention(q, k.to(torch::kFloat64), k, 1.0), cx::Error);
}

}  // namespace
