#include "cx/model/attention.hpp"

#include <dlfcn.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/TensorIterator.h>
#include <ATen/record_function.h>

#include "cx/cli/error.hpp"
#include "cx/model/gemm.hpp"

namespace cx::model {
namespace {

// ---------------------------------------------------------------------------------------------
// exp for the softmax: x = n ln2 + r with |r| <= ln2/2 (Cody-Waite, ln2 split in two so n*ln2_hi
// is exact), exp(r) by Cephes' expf polynomial (1 + r + r^2 P(r), degree 7 in all, ~1 ulp), times
// 2^n. Inputs are <= 0 after the row maximum is subtracted; below -87.3365 (n < -126) the result is
// flushed to 0 instead of expf's subnormal, an absolute difference under 1.2e-38.
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f;
constexpr float kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;
constexpr float kExpLow = -87.3365448f;  // ln(2^-126)

// In place: x[i] = exp(x[i] - shift); returns the float32 sum (fixed order for a given n).
float exp_shift_sum_scalar(float* x, std::int64_t n, float shift) {
  // Eight partial sums, like the vector paths, so rounding does not grow with the row length.
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::int64_t i = 0; i < n; ++i) {
    const float v = x[i] - shift;
    float y;
    if (v < kExpLow) {
      y = 0.0f;
    } else if (std::isnan(v)) {
      y = v;
    } else {
      const float fx = std::nearbyint(v * kLog2e);
      float r = v - fx * kLn2Hi;
      r = r - fx * kLn2Lo;
      const float z = r * r;
      float p = kP0 * r + kP1;
      p = p * r + kP2;
      p = p * r + kP3;
      p = p * r + kP4;
      p = p * r + kP5;
      p = p * z + r + 1.0f;
      // fx is in [-126, 0] here (v <= 0 after the shift; positive v only in exp_nonpositive misuse,
      // clamped by ldexp's own range handling).
      y = std::ldexp(p, static_cast<int>(fx));
    }
    x[i] = y;
    acc[i & 7] += y;
  }
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

float row_max_scalar(const float* x, std::int64_t n) {
  float m = -INFINITY;
  for (std::int64_t i = 0; i < n; ++i) {
    if (std::isnan(x[i])) return x[i];
    m = std::max(m, x[i]);
  }
  return m;
}

// GCC 12's AVX-512 intrinsics initialise their "undefined" operands with themselves, which -Wall
// reports at every inlined use; the values are never read.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

__attribute__((target("avx2,fma"))) float exp_shift_sum_avx2(float* x, std::int64_t n, float shift) {
  const __m256 log2e = _mm256_set1_ps(kLog2e), hi = _mm256_set1_ps(kLn2Hi), lo = _mm256_set1_ps(kLn2Lo);
  const __m256 p0 = _mm256_set1_ps(kP0), p1 = _mm256_set1_ps(kP1), p2 = _mm256_set1_ps(kP2),
               p3 = _mm256_set1_ps(kP3), p4 = _mm256_set1_ps(kP4), p5 = _mm256_set1_ps(kP5);
  const __m256 one = _mm256_set1_ps(1.0f), low = _mm256_set1_ps(kExpLow), vshift = _mm256_set1_ps(shift);
  const __m256i bias = _mm256_set1_epi32(127);
  __m256 acc = _mm256_setzero_ps();
  for (std::int64_t i = 0; i < n; i += 8) {
    const std::int64_t left = n - i;
    // Masked tail: the lanes past n load and store nothing and add 0.
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<std::int64_t>(left, 8))), lane);
    __m256 v = _mm256_sub_ps(_mm256_maskload_ps(x + i, mask), vshift);
    const __m256 keep = _mm256_cmp_ps(v, low, _CMP_NLT_UQ);  // false below the range; true for NaN
    v = _mm256_max_ps(low, v);                                // NaN stays (max returns its 2nd operand)
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(v, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, hi, v);
    r = _mm256_fnmadd_ps(fx, lo, r);
    const __m256 z = _mm256_mul_ps(r, r);
    __m256 p = _mm256_fmadd_ps(p0, r, p1);
    p = _mm256_fmadd_ps(p, r, p2);
    p = _mm256_fmadd_ps(p, r, p3);
    p = _mm256_fmadd_ps(p, r, p4);
    p = _mm256_fmadd_ps(p, r, p5);
    p = _mm256_add_ps(_mm256_fmadd_ps(p, z, r), one);
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), bias), 23);
    __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(e));
    y = _mm256_and_ps(y, _mm256_and_ps(keep, _mm256_castsi256_ps(mask)));
    _mm256_maskstore_ps(x + i, mask, y);
    acc = _mm256_add_ps(acc, y);
  }
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}

__attribute__((target("avx2,fma"))) float row_max_avx2(const float* x, std::int64_t n) {
  __m256 m = _mm256_set1_ps(-INFINITY);
  __m256 nan = _mm256_setzero_ps();
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    m = _mm256_max_ps(m, v);
  }
  if (_mm256_movemask_ps(nan)) return NAN;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, m);
  float r = lanes[0];
  for (int j = 1; j < 8; ++j) r = std::max(r, lanes[j]);
  for (; i < n; ++i) {
    if (std::isnan(x[i])) return x[i];
    r = std::max(r, x[i]);
  }
  return r;
}

__attribute__((target("avx512f"))) float exp_shift_sum_avx512(float* x, std::int64_t n, float shift) {
  const __m512 log2e = _mm512_set1_ps(kLog2e), hi = _mm512_set1_ps(kLn2Hi), lo = _mm512_set1_ps(kLn2Lo);
  const __m512 p0 = _mm512_set1_ps(kP0), p1 = _mm512_set1_ps(kP1), p2 = _mm512_set1_ps(kP2),
               p3 = _mm512_set1_ps(kP3), p4 = _mm512_set1_ps(kP4), p5 = _mm512_set1_ps(kP5);
  const __m512 one = _mm512_set1_ps(1.0f), low = _mm512_set1_ps(kExpLow), vshift = _mm512_set1_ps(shift);
  __m512 acc = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < n; i += 16) {
    const std::int64_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    __m512 v = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, x + i), vshift);
    const __mmask16 keep = _mm512_mask_cmp_ps_mask(m, v, low, _CMP_NLT_UQ);
    v = _mm512_max_ps(low, v);
    const __m512 fx = _mm512_roundscale_ps(_mm512_mul_ps(v, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(fx, hi, v);
    r = _mm512_fnmadd_ps(fx, lo, r);
    const __m512 z = _mm512_mul_ps(r, r);
    __m512 p = _mm512_fmadd_ps(p0, r, p1);
    p = _mm512_fmadd_ps(p, r, p2);
    p = _mm512_fmadd_ps(p, r, p3);
    p = _mm512_fmadd_ps(p, r, p4);
    p = _mm512_fmadd_ps(p, r, p5);
    p = _mm512_add_ps(_mm512_fmadd_ps(p, z, r), one);
    const __m512 y = _mm512_maskz_mov_ps(keep, _mm512_scalef_ps(p, fx));
    _mm512_mask_storeu_ps(x + i, m, y);
    acc = _mm512_add_ps(acc, y);
  }
  return _mm512_reduce_add_ps(acc);
}

__attribute__((target("avx512f"))) float row_max_avx512(const float* x, std::int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  __mmask16 nan = 0;
  for (std::int64_t i = 0; i < n; i += 16) {
    const std::int64_t left = n - i;
    const __mmask16 k = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    const __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-INFINITY), k, x + i);
    nan |= _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    m = _mm512_max_ps(m, v);
  }
  return nan ? NAN : _mm512_reduce_max_ps(m);
}

#pragma GCC diagnostic pop

using detail::Isa;

Isa resolve_isa(Isa isa) {
  if (isa == Isa::automatic) return detail::best_isa();
  if (!detail::isa_supported(isa)) throw Error("attention: this CPU lacks the requested instruction set");
  return isa;
}

float exp_shift_sum(float* x, std::int64_t n, float shift, Isa isa) {
  switch (isa) {
    case Isa::avx512: return exp_shift_sum_avx512(x, n, shift);
    case Isa::avx2: return exp_shift_sum_avx2(x, n, shift);
    default: return exp_shift_sum_scalar(x, n, shift);
  }
}

float row_max(const float* x, std::int64_t n, Isa isa) {
  switch (isa) {
    case Isa::avx512: return row_max_avx512(x, n);
    case Isa::avx2: return row_max_avx2(x, n);
    default: return row_max_scalar(x, n);
  }
}

// ---------------------------------------------------------------------------------------------
// GEMM. LibTorch (without MKL, as Debian builds it) calls the Fortran sgemm_ of the process's BLAS;
// we look that same symbol up at run time, which needs no link line of our own and skips the
// dispatcher, shape checks and tensor allocations of at::mm for each of the thousands of tile
// products. Inside at::parallel_for's OpenMP region OpenBLAS runs each call on the calling thread.
using SgemmFn = void (*)(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
                         const int*, const float*, const int*, const float*, float*, const int*);

SgemmFn find_sgemm() {
  static const SgemmFn fn = reinterpret_cast<SgemmFn>(dlsym(RTLD_DEFAULT, "sgemm_"));
  return fn;
}

// One matrix operand in row-major terms: element (i, j) at data[i * ld + j].
struct Mat {
  const float* data;
  std::int64_t ld;
};

// C[m, n] = alpha * A[m, k] * B^T, where B is stored [n, k] (b_transposed) or else B is [k, n].
void gemm(SgemmFn sgemm, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, Mat a, Mat b, bool b_transposed,
          float* c, std::int64_t ldc) {
  if (sgemm) {
    // oneDNN's sgemm where LibTorch loaded it (~2x OpenBLAS 0.3.21 on AVX-512 CPUs; gemm.hpp), on the
    // calling thread inside the tiles' parallel region like OpenBLAS.
    if (detail::onednn_sgemm('N', b_transposed ? 'T' : 'N', m, n, k, alpha, a.data, a.ld, b.data, b.ld, 0.0f, c, ldc))
      return;
    // Column-major BLAS sees the row-major C^T = op(B)^T A^T.
    const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
    const int lda = static_cast<int>(b.ld), ldb = static_cast<int>(a.ld), ldcc = static_cast<int>(ldc);
    const float beta = 0.0f;
    sgemm(b_transposed ? "T" : "N", "N", &M, &N, &K, &alpha, b.data, &lda, a.data, &ldb, &beta, c, &ldcc);
    return;
  }
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  torch::Tensor ta = torch::from_blob(const_cast<float*>(a.data), {m, k}, {a.ld, 1}, f32);
  torch::Tensor tb = b_transposed ? torch::from_blob(const_cast<float*>(b.data), {n, k}, {b.ld, 1}, f32).t()
                                  : torch::from_blob(const_cast<float*>(b.data), {k, n}, {b.ld, 1}, f32);
  torch::Tensor tc = torch::from_blob(c, {m, n}, {ldc, 1}, f32);
  at::addmm_out(tc, tc, ta, tb, /*beta=*/0, /*alpha=*/alpha);  // beta 0: tc's old contents are ignored
}

struct AlignedFree {
  void operator()(float* p) const { std::free(p); }
};
std::unique_ptr<float[], AlignedFree> aligned_floats(std::int64_t count) {
  const std::size_t bytes = (static_cast<std::size_t>(count) * sizeof(float) + 63) / 64 * 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, bytes));
  if (!p) throw std::bad_alloc();
  return std::unique_ptr<float[], AlignedFree>(p);
}

// The row stride BLAS is given for a [rows, cols] operand whose last dimension is contiguous: a
// single row may carry any stride, but BLAS still wants ld >= cols.
std::int64_t row_stride(const torch::Tensor& t) { return t.size(2) == 1 ? t.size(3) : t.stride(2); }

// Last dimension contiguous and rows that do not overlap: readable in place.
torch::Tensor blas_readable(const torch::Tensor& t) {
  const bool ok = (t.size(3) <= 1 || t.stride(3) == 1) && (t.size(2) <= 1 || t.stride(2) >= t.size(3)) &&
                  row_stride(t) <= INT_MAX;
  return ok ? t : t.contiguous();
}

// Queries per tile, measured on a Zen 5 with OpenBLAS's Haswell kernels (ViT-S at 518: 1374 keys,
// bench/embed/attention_bench, CPU time): 128 to 256 rows within 3% of each other, 64 rows +7%,
// 32 rows +23%, 16 rows +37%. An online-softmax (flash) variant over key blocks of 128-512 was
// 10-20% slower than this two-pass form: with the whole score row in cache, one pass of sgemm
// over all keys beats many small ones plus rescaling. The score tile is capped at 768 KiB so that
// it stays in a 1 MiB L2 for longer sequences.
std::int64_t default_tile_rows(std::int64_t keys) {
  const std::int64_t fit = (192 * 1024) / std::max<std::int64_t>(keys, 1);
  return std::clamp<std::int64_t>(fit / 16 * 16, 16, 128);
}

// Runs fn(begin, end) over [0, count) split across LibTorch's intra-op threads, with every BLAS call
// made inside the OpenMP region (so OpenBLAS keeps each one on its calling thread).
// at::parallel_for is a header template whose OpenMP pragma only takes effect when the including
// code is compiled with -fopenmp; Debian's TorchConfig does not add it, and then at::parallel_for
// runs serially while OpenBLAS threads each tile product by itself: slower, and rounding that
// depends on the thread count. TensorIterator::for_each runs the same OpenMP loop compiled inside
// libtorch, so without -fopenmp we go through it, iterating over a tensor of task ids.
template <class F>
void parallel_tasks(std::int64_t count, const F& fn) {
#ifdef _OPENMP
  at::parallel_for(0, count, 1, fn);
#else
  torch::Tensor ids = torch::arange(count, torch::kLong);
  at::TensorIterator iter =
      at::TensorIteratorConfig().add_output(ids).check_all_same_dtype(false).resize_outputs(false).build();
  iter.for_each(
      [&](char** data, const std::int64_t* strides, std::int64_t size0, std::int64_t size1) {
        for (std::int64_t j = 0; j < size1; ++j) {
          const char* row = data[0] + j * strides[1];
          const std::int64_t first = *reinterpret_cast<const std::int64_t*>(row);
          const std::int64_t last = *reinterpret_cast<const std::int64_t*>(row + (size0 - 1) * strides[0]);
          if (last - first == size0 - 1) {
            fn(first, last + 1);
          } else {
            for (std::int64_t i = 0; i < size0; ++i) {
              const std::int64_t id = *reinterpret_cast<const std::int64_t*>(row + i * strides[0]);
              fn(id, id + 1);
            }
          }
        }
      },
      /*grain_size=*/1);
#endif
}

void check_shapes(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  auto shape = [](const torch::Tensor& t) {
    std::string s = "[";
    for (std::int64_t i = 0; i < t.dim(); ++i) s += (i ? ", " : "") + std::to_string(t.size(i));
    return s + "]";
  };
  const bool ok = q.dim() == 4 && k.dim() == 4 && v.dim() == 4 && q.size(0) == k.size(0) && q.size(0) == v.size(0) &&
                  q.size(1) == k.size(1) && q.size(1) == v.size(1) && k.size(2) == v.size(2) && q.size(3) == k.size(3);
  if (!ok)
    throw Error("attention: q " + shape(q) + ", k " + shape(k) + ", v " + shape(v) +
                " do not fit q [B, H, N, dk], k [B, H, M, dk], v [B, H, M, dv]");
  if (q.device() != k.device() || q.device() != v.device() || q.scalar_type() != k.scalar_type() ||
      q.scalar_type() != v.scalar_type())
    throw Error("attention: q, k and v must share one device and dtype");
}

torch::Tensor reference_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                  double scale) {
  torch::Tensor scores = model::matmul(q, k.transpose(-2, -1)) * scale;
  torch::Tensor probs = torch::softmax(scores, -1, torch::kFloat32).to(q.scalar_type());
  return model::matmul(probs, v);
}


// ---------------------------------------------------------------------------------------------
// bf16: oneDNN's row-major GEMM with bf16 operands and f32 accumulation and output
// (gemm.hpp's detail::onednn_gemm_bf16). It runs on the CPU's bf16 units (AVX512_BF16 / AMX) and
// single-threaded inside an OpenMP region.
using detail::GemmBf16Fn;

// y[i] = bf16(x[i] * w), rounded to nearest even as c10::BFloat16 does (NaN -> 0x7fc0).
void to_bf16_scalar(const float* x, std::uint16_t* y, std::int64_t n, float w) {
  for (std::int64_t i = 0; i < n; ++i) {
    const float f = x[i] * w;
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    y[i] = std::isnan(f) ? static_cast<std::uint16_t>(0x7fc0) : static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// The lanes of m in v rounded to bf16 (nearest even, NaN -> 0x7fc0) and stored at y.
__attribute__((target("avx512f"))) inline void store_bf16(__m512 v, std::uint16_t* y, __mmask16 m) {
  const __m512i one = _mm512_set1_epi32(1), round = _mm512_set1_epi32(0x7fff), qnan = _mm512_set1_epi32(0x7fc0);
  const __m512i b = _mm512_castps_si512(v);
  __m512i r = _mm512_add_epi32(b, _mm512_add_epi32(round, _mm512_and_si512(_mm512_srli_epi32(b, 16), one)));
  r = _mm512_srli_epi32(r, 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), qnan);
  _mm512_mask_cvtepi32_storeu_epi16(y, m, r);
}

__attribute__((target("avx512f"))) void to_bf16_avx512(const float* x, std::uint16_t* y, std::int64_t n, float w) {
  const __m512 vw = _mm512_set1_ps(w);
  for (std::int64_t i = 0; i < n; i += 16) {
    const std::int64_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    store_bf16(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vw), y + i, m);
  }
}
#pragma GCC diagnostic pop

void to_bf16(const float* x, std::uint16_t* y, std::int64_t n, float w, Isa isa) {
  if (isa == Isa::avx512) to_bf16_avx512(x, y, n, w);
  else to_bf16_scalar(x, y, n, w);
}

bool bf16_kernel_available() { return detail::onednn_gemm_bf16_usable(); }

// The fused kernel in bf16 (attention.hpp): scores Q K^T with bf16 operands into f32, the softmax's
// maximum, exp and sum in f32, the unnormalised probabilities rounded to bf16 for P V (f32
// accumulation), then 1 / sum applied in f32 and the output rounded to bf16 once.
torch::Tensor fused_attention_bf16(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                                   double scale, bool merged_heads, const detail::FusedOptions& options) {
  if (!bf16_kernel_available())
    throw Error("attention: the fused bf16 kernel needs oneDNN's bf16 GEMM and AVX-512");
  const GemmBf16Fn gemm_bf16 = detail::onednn_gemm_bf16();
  const std::int64_t B = q_in.size(0), H = q_in.size(1), N = q_in.size(2), M = k_in.size(2);
  const std::int64_t dk = q_in.size(3), dv = v_in.size(3);
  const Isa isa = resolve_isa(options.isa);

  torch::Tensor out = torch::empty({B, N, H, dv}, q_in.options());
  auto result = [&] { return merged_heads ? out.view({B, N, H * dv}) : out.permute({0, 2, 1, 3}); };
  if (out.numel() == 0) return result();
  if (M == 0 || dk == 0) {
    if (M == 0) return out.zero_(), result();
    torch::Tensor mean = v_in.to(torch::kFloat32).mean(2, /*keepdim=*/true).expand({B, H, N, dv});
    out.copy_(mean.permute({0, 2, 1, 3}));
    return result();
  }
  const torch::Tensor q = blas_readable(q_in), k = blas_readable(k_in), v = blas_readable(v_in);
  const std::int64_t ldq = row_stride(q), ldk = row_stride(k), ldv = row_stride(v), ldo = H * dv;
  const auto* qp = reinterpret_cast<const std::uint16_t*>(q.data_ptr<at::BFloat16>());
  const auto* kp = reinterpret_cast<const std::uint16_t*>(k.data_ptr<at::BFloat16>());
  const auto* vp = reinterpret_cast<const std::uint16_t*>(v.data_ptr<at::BFloat16>());
  auto* op = reinterpret_cast<std::uint16_t*>(out.data_ptr<at::BFloat16>());
  std::int64_t Tq = options.tile_rows > 0 ? options.tile_rows : default_tile_rows(M);
  if (B * H == 1 && N >= 2 && Tq >= N) Tq = (N + 1) / 2;  // as in the f32 kernel: stay inside the OpenMP region
  const std::int64_t tiles = (N + Tq - 1) / Tq;
  const std::int64_t ldS = (M + 15) / 16 * 16, ldP = (M + 31) / 32 * 32;
  const float alpha = static_cast<float>(scale);
  std::atomic<int> failed{0};

  parallel_tasks(B * H * tiles, [&](std::int64_t begin, std::int64_t end) {
    auto scores = aligned_floats(Tq * ldS);
    auto probs = aligned_floats((Tq * ldP + 1) / 2);  // bf16 [Tq, ldP]
    auto acc = aligned_floats(Tq * dv);
    auto inv = aligned_floats(Tq);
    auto* P = reinterpret_cast<std::uint16_t*>(probs.get());
    for (std::int64_t task = begin; task < end; ++task) {
      const std::int64_t bh = task / tiles, tile = task % tiles, b = bh / H, h = bh % H;
      const std::int64_t r0 = tile * Tq, rows = std::min(Tq, N - r0);
      const std::uint16_t* qt = qp + b * q.stride(0) + h * q.stride(1) + r0 * q.stride(2);
      const std::uint16_t* kt = kp + b * k.stride(0) + h * k.stride(1);
      const std::uint16_t* vt = vp + b * v.stride(0) + h * v.stride(1);
      std::uint16_t* ot = op + ((b * N + r0) * H + h) * dv;
      float* S = scores.get();
      int status = gemm_bf16('N', 'T', rows, M, dk, alpha, qt, ldq, kt, ldk, 0.0f, S, ldS);
      for (std::int64_t r = 0; r < rows; ++r) {
        float* s = S + r * ldS;
        inv[r] = 1.0f / exp_shift_sum(s, M, row_max(s, M, isa), isa);
        to_bf16(s, P + r * ldP, M, 1.0f, isa);
      }
      status |= gemm_bf16('N', 'N', rows, dv, M, 1.0f, P, ldP, vt, ldv, 0.0f, acc.get(), dv);
      if (status != 0) failed = status;
      for (std::int64_t r = 0; r < rows; ++r) to_bf16(acc.get() + r * dv, ot + r * ldo, dv, inv[r], isa);
    }
  });
  if (failed) throw Error("attention: oneDNN's bf16 GEMM failed (status " + std::to_string(failed.load()) + ")");
  return result();
}
// ---------------------------------------------------------------------------------------------
// Training in bf16 (CPU autocast): attention with its backward, from one fused qkv projection.
//
// qkv [B, N, 3, H, d] bf16 (q, k, v blocks, heads within) -> ctx [B, N, H * d] bf16, per (batch,
// head) on one thread with oneDNN's bf16 GEMM (f32 accumulation), as autocast's eager attention
// computes it: the scores in f32, the softmax in f32, its probabilities P rounded to bf16 once and
// kept for the backward, P V rounded to bf16 once. The backward, per (batch, head):
//   dV = P^T dO,  dP = dO V^T,  dS = scale * P * (dP - rowsum(P * dP)),  dQ = dS K,  dK = dS^T Q
// with dS rounded to bf16 as a GEMM operand and every product accumulated in f32; dQ, dK and dV are
// written (rounded to bf16) into one [B, N, 3, H, d] gradient, qkv's own layout. Nothing of
// size N x N is formed but P and one thread's dP. Each (batch, head) is one task: the result does
// not depend on the thread count.

// ds[j] = bf16(scale * p[j] * (dp[j] - sum_k p[k] dp[k])), p in bf16.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 16 bf16 values (fewer at the tail, zeros after them) widened to f32; AVX-512F only.
__attribute__((target("avx512f"))) inline __m512 bf16_to_f32x16(const std::uint16_t* p, std::int64_t left) {
  __m256i raw;
  if (left >= 16) {
    raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  } else {
    alignas(32) std::uint16_t tail[16] = {};
    std::memcpy(tail, p, static_cast<std::size_t>(left) * sizeof(std::uint16_t));
    raw = _mm256_load_si256(reinterpret_cast<const __m256i*>(tail));
  }
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

__attribute__((target("avx512f"))) void softmax_backward_row(const std::uint16_t* p, const float* dp, std::int64_t n,
                                                            float scale, std::uint16_t* ds) {
  __m512 acc = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < n; i += 16) {
    const std::int64_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    const __m512 pv = bf16_to_f32x16(p + i, left);
    acc = _mm512_fmadd_ps(pv, _mm512_maskz_loadu_ps(m, dp + i), acc);
  }
  const __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc)), vs = _mm512_set1_ps(scale);
  for (std::int64_t i = 0; i < n; i += 16) {
    const std::int64_t left = n - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1);
    const __m512 pv = bf16_to_f32x16(p + i, left);
    store_bf16(_mm512_mul_ps(_mm512_mul_ps(pv, vs), _mm512_sub_ps(_mm512_maskz_loadu_ps(m, dp + i), dot)), ds + i, m);
  }
}
#pragma GCC diagnostic pop

struct QkvLayout {
  std::int64_t B, N, H, d, D;  // D = H * d; qkv rows are 3 D long
};

QkvLayout qkv_layout(const torch::Tensor& qkv, std::int64_t heads) {
  const std::int64_t D = qkv.size(2) / 3;
  return {qkv.size(0), qkv.size(1), heads, D / heads, D};
}

void check_gemm(int status) {
  if (status != 0) throw Error("attention: oneDNN's bf16 GEMM failed (status " + std::to_string(status) + ")");
}

struct Bf16AttentionTrain : public torch::autograd::Function<Bf16AttentionTrain> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& qkv_in,
                               std::int64_t heads, double scale) {
    RECORD_FUNCTION("cx::bf16_attention", std::vector<c10::IValue>());
    const torch::Tensor qkv = qkv_in.contiguous();
    const QkvLayout L = qkv_layout(qkv, heads);
    const std::int64_t N = L.N, d = L.d, ld = 3 * L.D;
    torch::Tensor out = torch::empty({L.B, N, L.D}, qkv.options());
    torch::Tensor probs = torch::empty({L.B, L.H, N, N}, qkv.options());
    const GemmBf16Fn gemm = detail::onednn_gemm_bf16();
    const Isa isa = detail::best_isa();
    const auto* qp = reinterpret_cast<const std::uint16_t*>(qkv.data_ptr<at::BFloat16>());
    auto* op = reinterpret_cast<std::uint16_t*>(out.data_ptr<at::BFloat16>());
    auto* pp = reinterpret_cast<std::uint16_t*>(probs.data_ptr<at::BFloat16>());
    const std::int64_t ldS = (N + 15) / 16 * 16;
    const float alpha = static_cast<float>(scale);
    std::atomic<int> failed{0};
    parallel_tasks(L.B * L.H, [&](std::int64_t begin, std::int64_t end) {
      auto scores = aligned_floats(N * ldS);
      auto acc = aligned_floats(N * d);
      for (std::int64_t bh = begin; bh < end; ++bh) {
        const std::int64_t b = bh / L.H, h = bh % L.H;
        const std::uint16_t* q = qp + b * N * ld + h * d;
        const std::uint16_t *k = q + L.D, *v = q + 2 * L.D;
        std::uint16_t* P = pp + bh * N * N;
        float* S = scores.get();
        int status = gemm('N', 'T', N, N, d, alpha, q, ld, k, ld, 0.0f, S, ldS);
        for (std::int64_t r = 0; r < N; ++r) {
          float* srow = S + r * ldS;
          const float sum = exp_shift_sum(srow, N, row_max(srow, N, isa), isa);
          to_bf16(srow, P + r * N, N, 1.0f / sum, isa);
        }
        status |= gemm('N', 'N', N, d, N, 1.0f, P, N, v, ld, 0.0f, acc.get(), d);
        if (status != 0) failed = status;
        for (std::int64_t r = 0; r < N; ++r) to_bf16(acc.get() + r * d, op + (b * N + r) * L.D + h * d, d, 1.0f, isa);
      }
    });
    check_gemm(failed);
    ctx->save_for_backward({qkv, probs});
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["scale"] = scale;
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& qkv = saved[0];
    const torch::Tensor& probs = saved[1];
    const QkvLayout L = qkv_layout(qkv, ctx->saved_data["heads"].toInt());
    const float scale = static_cast<float>(ctx->saved_data["scale"].toDouble());
    const std::int64_t N = L.N, d = L.d, ld = 3 * L.D;
    const torch::Tensor dout = grad_out[0].to(torch::kBFloat16).contiguous();
    torch::Tensor dqkv = torch::empty_like(qkv);
    const GemmBf16Fn gemm = detail::onednn_gemm_bf16();
    const Isa isa = detail::best_isa();
    const auto* qp = reinterpret_cast<const std::uint16_t*>(qkv.data_ptr<at::BFloat16>());
    const auto* pp = reinterpret_cast<const std::uint16_t*>(probs.data_ptr<at::BFloat16>());
    const auto* gp = reinterpret_cast<const std::uint16_t*>(dout.data_ptr<at::BFloat16>());
    auto* dp = reinterpret_cast<std::uint16_t*>(dqkv.data_ptr<at::BFloat16>());
    const std::int64_t ldS = (N + 15) / 16 * 16, ldP = (N + 31) / 32 * 32;
    std::atomic<int> failed{0};
    parallel_tasks(L.B * L.H, [&](std::int64_t begin, std::int64_t end) {
      auto dprob = aligned_floats(N * ldS);
      auto dscore = aligned_floats((N * ldP + 1) / 2);  // bf16 [N, ldP]
      auto acc = aligned_floats(N * d);
      auto* dS = reinterpret_cast<std::uint16_t*>(dscore.get());
      for (std::int64_t bh = begin; bh < end; ++bh) {
        const std::int64_t b = bh / L.H, h = bh % L.H;
        const std::int64_t at = b * N * ld + h * d;
        const std::uint16_t *q = qp + at, *k = q + L.D, *v = q + 2 * L.D;
        std::uint16_t *dq = dp + at, *dk = dq + L.D, *dv = dq + 2 * L.D;
        const std::uint16_t* P = pp + bh * N * N;
        const std::uint16_t* dO = gp + b * N * L.D + h * d;
        auto store = [&](std::uint16_t* dst) {
          for (std::int64_t r = 0; r < N; ++r) to_bf16(acc.get() + r * d, dst + r * ld, d, 1.0f, isa);
        };
        int status = gemm('T', 'N', N, d, N, 1.0f, P, N, dO, L.D, 0.0f, acc.get(), d);  // dV = P^T dO
        store(dv);
        float* dPr = dprob.get();
        status |= gemm('N', 'T', N, N, d, 1.0f, dO, L.D, v, ld, 0.0f, dPr, ldS);  // dP = dO V^T
        for (std::int64_t r = 0; r < N; ++r) softmax_backward_row(P + r * N, dPr + r * ldS, N, scale, dS + r * ldP);
        status |= gemm('N', 'N', N, d, N, 1.0f, dS, ldP, k, ld, 0.0f, acc.get(), d);  // dQ = dS K
        store(dq);
        status |= gemm('T', 'N', N, d, N, 1.0f, dS, ldP, q, ld, 0.0f, acc.get(), d);  // dK = dS^T Q
        store(dk);
        if (status != 0) failed = status;
      }
    });
    check_gemm(failed);
    return {dqkv, torch::Tensor(), torch::Tensor()};
  }
};

bool bf16_training_applies(const torch::Tensor& qkv) {
  return torch::GradMode::is_enabled() && qkv.requires_grad() && qkv.device().is_cpu() &&
         qkv.scalar_type() == torch::kBFloat16 && bf16_kernel_available() && qkv.numel() > 0;
}

}  // namespace

namespace detail {

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512: return __builtin_cpu_supports("avx512f");
    case Isa::automatic: return true;
  }
  return false;
}

Isa best_isa() {
  static const Isa best = isa_supported(Isa::avx512) ? Isa::avx512 : isa_supported(Isa::avx2) ? Isa::avx2 : Isa::scalar;
  return best;
}

bool blas_sgemm_available() { return find_sgemm() != nullptr; }
bool bf16_gemm_available() { return bf16_kernel_available(); }

float exp_nonpositive(const float* x, float* y, std::int64_t n, Isa isa) {
  if (x != y) std::memmove(y, x, static_cast<std::size_t>(n) * sizeof(float));
  return exp_shift_sum(y, n, 0.0f, resolve_isa(isa));
}

torch::Tensor fused_attention(const torch::Tensor& q_in, const torch::Tensor& k_in, const torch::Tensor& v_in,
                              double scale, bool merged_heads, const FusedOptions& options) {
  check_shapes(q_in, k_in, v_in);
  if (q_in.device().is_cpu() && q_in.scalar_type() == torch::kBFloat16)
    return fused_attention_bf16(q_in, k_in, v_in, scale, merged_heads, options);
  if (!q_in.device().is_cpu() || q_in.scalar_type() != torch::kFloat32)
    throw Error("attention: the fused kernel takes CPU float32 or bfloat16 tensors");
  const std::int64_t B = q_in.size(0), H = q_in.size(1), N = q_in.size(2), M = k_in.size(2);
  const std::int64_t dk = q_in.size(3), dv = v_in.size(3);
  const Isa isa = resolve_isa(options.isa);
  const SgemmFn sgemm = options.use_blas ? find_sgemm() : nullptr;

  // Buffer [B, N, H, dv]: heads interleaved per token, so merging heads afterwards is a view.
  torch::Tensor out = torch::empty({B, N, H, dv}, q_in.options());
  auto result = [&] { return merged_heads ? out.view({B, N, H * dv}) : out.permute({0, 2, 1, 3}); };
  if (out.numel() == 0) return result();
  if (M == 0 || dk == 0) {
    // No keys: an empty softmax times an empty V, zeros as matmul gives. No features: uniform weights.
    if (M == 0) return out.zero_(), result();
    torch::Tensor mean = v_in.mean(2, /*keepdim=*/true).expand({B, H, N, dv});
    out.copy_(mean.permute({0, 2, 1, 3}));
    return result();
  }
  const std::int64_t limit = INT_MAX;
  if (N > limit || M > limit || dk > limit || dv > limit || H * dv > limit)
    throw Error("attention: sizes beyond the BLAS 32-bit range");

  const torch::Tensor q = blas_readable(q_in), k = blas_readable(k_in), v = blas_readable(v_in);
  const std::int64_t ldq = row_stride(q), ldk = row_stride(k), ldv = row_stride(v), ldo = H * dv;
  const float* qp = q.data_ptr<float>();
  const float* kp = k.data_ptr<float>();
  const float* vp = v.data_ptr<float>();
  float* op = out.data_ptr<float>();
  std::int64_t Tq = options.tile_rows > 0 ? options.tile_rows : default_tile_rows(M);
  // At least two tasks when there are two rows: a lone task would run outside the OpenMP region,
  // where OpenBLAS threads the product itself and rounds differently from the one-thread run.
  if (B * H == 1 && N >= 2 && Tq >= N) Tq = (N + 1) / 2;
  const std::int64_t tiles = (N + Tq - 1) / Tq;
  const std::int64_t ldS = (M + 15) / 16 * 16;  // 64-byte aligned rows of scores
  const float alpha = static_cast<float>(scale);

  parallel_tasks(B * H * tiles, [&](std::int64_t begin, std::int64_t end) {
    auto scores = aligned_floats(Tq * ldS);
    auto inv = aligned_floats(Tq);
    for (std::int64_t task = begin; task < end; ++task) {
      const std::int64_t bh = task / tiles, tile = task % tiles, b = bh / H, h = bh % H;
      const std::int64_t r0 = tile * Tq, rows = std::min(Tq, N - r0);
      const float* qt = qp + b * q.stride(0) + h * q.stride(1) + r0 * q.stride(2);
      const float* kt = kp + b * k.stride(0) + h * k.stride(1);
      const float* vt = vp + b * v.stride(0) + h * v.stride(1);
      float* ot = op + ((b * N + r0) * H + h) * dv;
      float* S = scores.get();
      gemm(sgemm, rows, M, dk, alpha, {qt, ldq}, {kt, ldk}, /*b_transposed=*/true, S, ldS);
      for (std::int64_t r = 0; r < rows; ++r) {
        float* s = S + r * ldS;
        inv[r] = 1.0f / exp_shift_sum(s, M, row_max(s, M, isa), isa);
      }
      gemm(sgemm, rows, dv, M, 1.0f, {S, ldS}, {vt, ldv}, /*b_transposed=*/false, ot, ldo);
      for (std::int64_t r = 0; r < rows; ++r) {
        float* o = ot + r * ldo;
        const float w = inv[r];
        for (std::int64_t j = 0; j < dv; ++j) o[j] *= w;
      }
    }
  });
  return result();
}

}  // namespace detail

bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  const bool autograd = torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (autograd || !q.device().is_cpu() || !k.device().is_cpu() || !v.device().is_cpu()) return false;
  const auto t = q.scalar_type();
  if (k.scalar_type() != t || v.scalar_type() != t) return false;
  return t == torch::kFloat32 || (t == torch::kBFloat16 && bf16_kernel_available());
}

namespace {
bool use_fused(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, AttentionKernel kernel) {
  check_shapes(q, k, v);
  switch (kernel) {
    case AttentionKernel::reference: return false;
    case AttentionKernel::fused: return true;
    case AttentionKernel::automatic: return fused_attention_applies(q, k, v);
  }
  return false;
}
}  // namespace

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                        AttentionKernel kernel) {
  if (use_fused(q, k, v, kernel)) return detail::fused_attention(q, k, v, scale, /*merged_heads=*/false);
  return reference_attention(q, k, v, scale);
}

torch::Tensor attention_from_qkv(const torch::Tensor& qkv, std::int64_t heads, double scale, AttentionKernel kernel) {
  if (qkv.dim() != 3 || heads <= 0 || qkv.size(2) % (3 * heads) != 0)
    throw Error("attention: qkv " + c10::str(qkv.sizes()) + " is not [B, N, 3 * heads * d] for " +
                std::to_string(heads) + " heads");
  if (kernel != AttentionKernel::reference && bf16_training_applies(qkv))
    return Bf16AttentionTrain::apply(qkv, heads, scale);
  const std::int64_t B = qkv.size(0), N = qkv.size(1), d = qkv.size(2) / (3 * heads);
  // unbind, not [0..2]: the backward of three selects fills three zero tensors of qkv's size and
  // adds them; unbind's stacks the three gradients once.
  const std::vector<torch::Tensor> p = qkv.view({B, N, 3, heads, d}).permute({2, 0, 3, 1, 4}).unbind(0);
  return attention_merged_heads(p[0], p[1], p[2], scale, kernel);
}

torch::Tensor attention_merged_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     double scale, AttentionKernel kernel) {
  if (use_fused(q, k, v, kernel)) return detail::fused_attention(q, k, v, scale, /*merged_heads=*/true);
  const std::int64_t B = q.size(0), H = q.size(1), N = q.size(2), dv = v.size(3);
  return reference_attention(q, k, v, scale).transpose(1, 2).reshape({B, N, H * dv});
}

}  // namespace cx::model
