#include "cx/model/gemm.hpp"

#include <dlfcn.h>

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::model {
namespace {

// dnnl.h: row-major C[m, n] = alpha op(A) op(B) + beta C, 'N' or 'T' per operand; 0 = dnnl_success.
using SgemmFn = int (*)(char transa, char transb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                        const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                        std::int64_t ldc);

SgemmFn find_sgemm() {
  static const SgemmFn fn = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "dnnl_sgemm"));
  return fn;
}

std::atomic<bool> g_enabled{true};

// The one call into oneDNN (found: the callers checked). at::parallel_for rethrows an exception from a task.
void sgemm(char ta, char tb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
           std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  const int status = find_sgemm()(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  if (status != 0)
    throw Error("oneDNN's sgemm failed (status " + std::to_string(status) + ") on " + std::to_string(m) + " x " +
                std::to_string(n) + " x " + std::to_string(k));
}

bool cpu_f32(const torch::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == torch::kFloat32; }

// A 2-D float32 operand whose rows are contiguous: element (i, j) at data[i * ld + j].
torch::Tensor rows_contiguous(const torch::Tensor& t) {
  return t.stride(-1) == 1 && t.stride(0) >= t.size(1) ? t : t.contiguous();
}

// x [M, K] (rows contiguous), w [N, K] -> x w^T + b [M, N].
//
// oneDNN's sgemm picks a slow kernel for x w^T when a few rows meet a long K: the DINO / iBOT heads'
// 2048 x 2048 layer on 32-150 rows ran at 50-160 GFLOP/s against 350-400 for the same work as
// dY W in the backward (2-core AMD EPYC with AVX-512, oneDNN 2.6). The transposed product
// y^T = w x^T (N rows) goes to its many-row kernel: 190-260 GFLOP/s there, the transpose back
// included; from about K/8 rows on the direct product is as fast. Chosen by shape alone, so a run
// and its resume round alike.
bool transposed_forward(std::int64_t M, std::int64_t K) { return M >= 16 && M * 8 <= K; }

torch::Tensor forward_2d(const torch::Tensor& x2, const torch::Tensor& w, const torch::Tensor& b) {
  const std::int64_t M = x2.size(0), K = x2.size(1), N = w.size(0);
  torch::Tensor wc = w.contiguous();
  if (transposed_forward(M, K)) {
    torch::Tensor yt = torch::empty({N, M}, x2.options());
    float beta = 0.0f;
    if (b.defined()) {
      yt.copy_(b.unsqueeze(1).expand({N, M}));
      beta = 1.0f;
    }
    sgemm('N', 'T', N, M, K, 1.0f, wc.data_ptr<float>(), K, x2.data_ptr<float>(), x2.stride(0), beta, yt.data_ptr<float>(), M);
    return yt.t().contiguous();
  }
  // C starts as the bias in every row (beta 1), a fresh buffer: for M = 1 b.expand() is b itself.
  torch::Tensor y = torch::empty({M, N}, x2.options());
  float beta = 0.0f;
  if (b.defined()) {
    y.copy_(b.expand({M, N}));
    beta = 1.0f;
  }
  sgemm('N', 'T', M, N, K, 1.0f, x2.data_ptr<float>(), x2.stride(0), wc.data_ptr<float>(), K, beta, y.data_ptr<float>(), N);
  return y;
}

std::vector<std::int64_t> out_shape(const torch::Tensor& x, std::int64_t n) {
  std::vector<std::int64_t> s(x.sizes().begin(), x.sizes().end());
  s.back() = n;
  return s;
}

struct OneDnnLinear : public torch::autograd::Function<OneDnnLinear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b) {
    torch::Tensor x2 = rows_contiguous(x.reshape({-1, x.size(-1)}));
    ctx->save_for_backward({x2, w});
    const bool has_bias = b.numel() > 0;
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["x_shape"] = x.sizes().vec();
    return forward_2d(x2, w, has_bias ? b : torch::Tensor()).view(out_shape(x, w.size(0)));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x2 = saved[0];
    const torch::Tensor w = saved[1].contiguous();
    const std::int64_t M = x2.size(0), K = x2.size(1), N = w.size(0);
    torch::Tensor gy = grad_out[0].reshape({M, N}).contiguous();
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = torch::empty({M, K}, gy.options());
      sgemm('N', 'N', M, K, N, 1.0f, gy.data_ptr<float>(), N, w.data_ptr<float>(), K, 0.0f, gx.data_ptr<float>(), K);
      gx = gx.view(ctx->saved_data["x_shape"].toIntVector());
    }
    if (ctx->needs_input_grad(1)) {
      gw = torch::empty({N, K}, gy.options());
      sgemm('T', 'N', N, K, M, 1.0f, gy.data_ptr<float>(), N, x2.data_ptr<float>(), x2.stride(0), 0.0f, gw.data_ptr<float>(), K);
    }
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) gb = gy.sum(0);
    return {gx, gw, gb};
  }
};

// One operand of a batched product as oneDNN reads it: row-major with leading dimension ld, or
// transposed ('T', the matrix stored column by column).
struct Operand {
  torch::Tensor t;  // keeps the storage alive; [..., rows, cols]
  char trans;
  std::int64_t ld;
};

Operand operand(const torch::Tensor& t) {
  const std::int64_t rows = t.size(-2), cols = t.size(-1);
  if (t.stride(-1) == 1 && t.stride(-2) >= std::max<std::int64_t>(cols, 1)) return {t, 'N', t.stride(-2)};
  if (t.stride(-2) == 1 && t.stride(-1) >= std::max<std::int64_t>(rows, 1)) return {t, 'T', t.stride(-1)};
  torch::Tensor c = t.contiguous();
  return {c, 'N', std::max<std::int64_t>(cols, 1)};
}

// Element offset of matrix g of the batch (row-major over the batch dimensions).
std::int64_t batch_offset(const torch::Tensor& t, std::int64_t g) {
  std::int64_t off = 0;
  for (std::int64_t d = t.dim() - 3; d >= 0; --d) {
    off += (g % t.size(d)) * t.stride(d);
    g /= t.size(d);
  }
  return off;
}

// c = a @ b over the batch, c a fresh contiguous [..., M, N].
torch::Tensor batched_product(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  const Operand a = operand(a_in), b = operand(b_in);
  const std::int64_t M = a_in.size(-2), K = a_in.size(-1), N = b_in.size(-1);
  std::vector<std::int64_t> shape(a_in.sizes().begin(), a_in.sizes().end());
  shape.back() = N;
  torch::Tensor c = torch::empty(shape, a_in.options().memory_format(at::MemoryFormat::Contiguous));
  const std::int64_t G = c.numel() / std::max<std::int64_t>(M * N, 1);
  const float* pa = a.t.data_ptr<float>();
  const float* pb = b.t.data_ptr<float>();
  float* pc = c.data_ptr<float>();
  at::parallel_for(0, G, 1, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t g = begin; g < end; ++g)
      sgemm(a.trans, b.trans, M, N, K, 1.0f, pa + batch_offset(a.t, g), a.ld, pb + batch_offset(b.t, g), b.ld, 0.0f,
            pc + g * M * N, N);
  });
  return c;
}

struct OneDnnMatmul : public torch::autograd::Function<OneDnnMatmul> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b) {
    ctx->save_for_backward({a, b});
    return batched_product(a, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& gc = grad_out[0];
    torch::Tensor ga, gb;
    if (ctx->needs_input_grad(0)) ga = batched_product(gc, saved[1].transpose(-2, -1));
    if (ctx->needs_input_grad(1)) gb = batched_product(saved[0].transpose(-2, -1), gc);
    return {ga, gb};
  }
};

// Shapes both linear() paths take: anything else goes to at::linear, which reports it. Empty
// products too: at::linear's zeros (or bias) are all there is to compute.
bool linear_shapes_fit(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (x.dim() < 1 || weight.dim() != 2 || x.size(-1) != weight.size(1)) return false;
  if (bias.defined() && (bias.dim() != 1 || bias.size(0) != weight.size(0))) return false;
  return x.numel() > 0 && weight.numel() > 0;
}

// ---- bf16 (CPU autocast) ----

bool cpu_bf16_or_f32(const torch::Tensor& t) {
  return t.device().is_cpu() && (t.scalar_type() == torch::kFloat32 || t.scalar_type() == torch::kBFloat16);
}

const std::uint16_t* bits(const torch::Tensor& t) {
  return reinterpret_cast<const std::uint16_t*>(t.data_ptr<at::BFloat16>());
}

void gemm_bf16(char ta, char tb, std::int64_t m, std::int64_t n, std::int64_t k, const std::uint16_t* a,
               std::int64_t lda, const std::uint16_t* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  const int status = detail::onednn_gemm_bf16()(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, beta, c, ldc);
  if (status != 0)
    throw Error("oneDNN's bf16 GEMM failed (status " + std::to_string(status) + ") on " + std::to_string(m) + " x " +
                std::to_string(n) + " x " + std::to_string(k));
}

// [M, K] in bf16 with contiguous rows: a float32 x rounded as autocast rounds it (one pass), a bf16
// x read in place.
torch::Tensor bf16_rows(const torch::Tensor& x2) {
  if (x2.scalar_type() == torch::kBFloat16) return rows_contiguous(x2);
  return torch::empty(x2.sizes(), x2.options().dtype(torch::kBFloat16)).copy_(x2);
}

// W in bf16, contiguous. A float32 leaf that requires grad goes through autocast's own cast cache,
// as at::linear's would (the student's weights: cast once per autocast region, not once per call);
// the cache is only used with recording on, so an entry never lacks the gradient edge a later
// autocast op relies on. Detached: the gradient reaches W through this function's backward.
torch::Tensor bf16_weight(const torch::Tensor& w) {
  if (w.scalar_type() == torch::kBFloat16) return w.contiguous();
  if (torch::GradMode::is_enabled() && w.requires_grad() && w.is_leaf())
    return at::autocast::cached_cast(at::kBFloat16, w, c10::DeviceType::CPU).detach().contiguous();
  return w.to(torch::kBFloat16).contiguous();
}

// xb [M, K] bf16 rows, wb [N, K] bf16 -> x W^T + b [M, N] in f32 accumulation. float32 output:
// the bias (float32 where given so) is C's starting value. bf16 output: the product into a float32
// buffer, then one pass that adds the bias and rounds (at::add_out into a bf16 tensor), instead of
// writing the bias first and rounding in a pass of its own.
torch::Tensor bf16_forward_2d(const torch::Tensor& xb, const torch::Tensor& wb, const torch::Tensor& b,
                              LinearOutput output) {
  const std::int64_t M = xb.size(0), K = xb.size(1), N = wb.size(0);
  torch::Tensor y = torch::empty({M, N}, xb.options().dtype(torch::kFloat32));
  const bool into_c = b.defined() && output == LinearOutput::float32;
  if (into_c) y.copy_(b.expand({M, N}));
  gemm_bf16('N', 'T', M, N, K, bits(xb), xb.stride(0), bits(wb), K, into_c ? 1.0f : 0.0f, y.data_ptr<float>(), N);
  if (output == LinearOutput::float32) return y;
  torch::Tensor out = torch::empty({M, N}, xb.options().dtype(torch::kBFloat16));
  return b.defined() ? at::add_out(out, y, b) : out.copy_(y);
}

struct Bf16Linear : public torch::autograd::Function<Bf16Linear> {
  // wb: W's bf16 copy (not differentiated); w: W itself, for its gradient's dtype and for autograd.
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b, const torch::Tensor& wb, bool float_out) {
    RECORD_FUNCTION("cx::bf16_linear", std::vector<c10::IValue>());
    torch::Tensor xb = bf16_rows(x.reshape({-1, x.size(-1)}));
    ctx->save_for_backward({xb, wb});
    const bool has_bias = b.numel() > 0;
    ctx->saved_data["has_bias"] = has_bias;
    ctx->saved_data["x_shape"] = x.sizes().vec();
    return bf16_forward_2d(xb, wb, has_bias ? b : torch::Tensor(),
                           float_out ? LinearOutput::float32 : LinearOutput::as_autocast)
        .view(out_shape(x, w.size(0)));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& xb = saved[0];
    const torch::Tensor& wb = saved[1];
    const std::int64_t M = xb.size(0), K = xb.size(1), N = wb.size(0);
    torch::Tensor g = grad_out[0].reshape({M, N});
    torch::Tensor gyb = bf16_rows(g).contiguous();
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = torch::empty({M, K}, g.options().dtype(torch::kFloat32));
      gemm_bf16('N', 'N', M, K, N, bits(gyb), N, bits(wb), K, 0.0f, gx.data_ptr<float>(), K);
      gx = gx.view(ctx->saved_data["x_shape"].toIntVector());
    }
    if (ctx->needs_input_grad(1)) {
      gw = torch::empty({N, K}, g.options().dtype(torch::kFloat32));
      gemm_bf16('T', 'N', N, K, M, bits(gyb), N, bits(xb), xb.stride(0), 0.0f, gw.data_ptr<float>(), K);
    }
    // The bias gradient: float32 dY summed as it is; bf16 dY as the product 1^T dY on the same GEMM
    // (f32 accumulation), which reads it once instead of widening a copy first.
    if (ctx->saved_data["has_bias"].toBool() && ctx->needs_input_grad(2)) {
      if (g.scalar_type() == torch::kFloat32) {
        gb = g.sum(0);
      } else {
        const torch::Tensor ones = torch::ones({M}, gyb.options());
        gb = torch::empty({N}, g.options().dtype(torch::kFloat32));
        gemm_bf16('N', 'N', 1, N, M, bits(ones), M, bits(gyb), N, 0.0f, gb.data_ptr<float>(), N);
      }
    }
    return {gx, gw, gb, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

namespace detail {

GemmBf16Fn onednn_gemm_bf16() {
  static const GemmBf16Fn fn = reinterpret_cast<GemmBf16Fn>(dlsym(RTLD_DEFAULT, "dnnl_gemm_bf16bf16f32"));
  return fn;
}

bool onednn_gemm_bf16_usable() {
  static const bool usable = onednn_gemm_bf16() != nullptr && __builtin_cpu_supports("avx512f");
  return usable;
}

bool bf16_linear_applies(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!g_enabled || !at::autocast::is_cpu_enabled() || at::autocast::get_autocast_cpu_dtype() != at::kBFloat16)
    return false;
  if (!onednn_gemm_bf16_usable()) return false;
  if (!cpu_bf16_or_f32(x) || !cpu_bf16_or_f32(weight) || (bias.defined() && !cpu_bf16_or_f32(bias))) return false;
  return linear_shapes_fit(x, weight, bias);
}

bool onednn_sgemm_available() { return find_sgemm() != nullptr; }

bool onednn_sgemm(char transa, char transb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                  std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc) {
  if (!find_sgemm()) return false;
  sgemm(transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  return true;
}

void set_onednn_linear_enabled(bool enabled) { g_enabled = enabled; }

bool onednn_linear_applies(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias) {
  if (!g_enabled || !onednn_sgemm_available() || at::autocast::is_cpu_enabled()) return false;
  if (!cpu_f32(x) || !cpu_f32(weight) || (bias.defined() && !cpu_f32(bias))) return false;
  return linear_shapes_fit(x, weight, bias);
}

bool onednn_matmul_applies(const torch::Tensor& a, const torch::Tensor& b) {
  if (!g_enabled || !onednn_sgemm_available() || at::autocast::is_cpu_enabled()) return false;
  if (!cpu_f32(a) || !cpu_f32(b) || a.dim() < 2 || a.dim() != b.dim()) return false;
  for (std::int64_t d = 0; d + 2 < a.dim(); ++d)
    if (a.size(d) != b.size(d)) return false;  // broadcasting: torch::matmul
  if (a.size(-1) != b.size(-2)) return false;  // torch::matmul reports it
  return a.numel() > 0 && b.numel() > 0;
}

}  // namespace detail

torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b) {
  if (!detail::onednn_matmul_applies(a, b)) return torch::matmul(a, b);
  const bool grad = torch::GradMode::is_enabled() && (a.requires_grad() || b.requires_grad());
  return grad ? OneDnnMatmul::apply(a, b) : batched_product(a, b);
}

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias,
                     LinearOutput output) {
  const bool bf16 = detail::bf16_linear_applies(x, weight, bias);
  if (!bf16 && !detail::onednn_linear_applies(x, weight, bias)) return at::linear(x, weight, bias);
  const bool grad = torch::GradMode::is_enabled() &&
                    (x.requires_grad() || weight.requires_grad() || (bias.defined() && bias.requires_grad()));
  // A custom function's inputs must be defined tensors: no bias travels as an empty placeholder.
  auto b_in = [&] { return bias.defined() ? bias : torch::empty({0}, x.options()); };
  if (bf16) {
    torch::Tensor wb = bf16_weight(weight);
    if (grad) return Bf16Linear::apply(x, weight, b_in(), wb, output == LinearOutput::float32);
    return bf16_forward_2d(bf16_rows(x.reshape({-1, x.size(-1)})), wb, bias, output).view(out_shape(x, weight.size(0)));
  }
  if (grad) return OneDnnLinear::apply(x, weight, b_in());
  torch::Tensor x2 = rows_contiguous(x.reshape({-1, x.size(-1)}));
  return forward_2d(x2, weight, bias).view(out_shape(x, weight.size(0)));
}

}  // namespace cx::model
