#pragma once
// Scaled dot-product attention without a mask: softmax(q k^T * scale) v, per batch and head.
//   q [B, H, N, dk], k [B, H, M, dk], v [B, H, M, dv]  ->  [B, H, N, dv]
// Any strides with the last dimension contiguous are read in place (e.g. the q/k/v views of one
// fused qkv projection, [B, N, 3, H, d].permute(2, 0, 3, 1, 4)); others are copied first.
//
// Kernels:
//   reference  matmul, softmax in float32, matmul: exactly Hugging Face's eager attention (float32 CPU
//              products on oneDNN's sgemm through model::matmul, gemm.hpp; autograd through it).
//   fused      CPU float32, inference only. Per (batch, head, tile of Tq queries): the tile's scores
//              against every key with one sgemm (oneDNN's where LibTorch loaded it, gemm.hpp, else
//              the BLAS LibTorch calls), an in-cache row softmax with a vectorised exp (AVX-512 /
//              AVX2+FMA / portable, chosen at run time), then the tile times V with a second sgemm;
//              the N x M score matrix is never materialised. Tiles run in parallel over
//              at::parallel_for (LibTorch's thread count);
//              each output row is computed by one task in a fixed order, so the result does not
//              depend on the number of threads. It differs from `reference` by float32 rounding
//              only (summation order; its exp is within 2.5e-7 relative of the exact exp).
//              bfloat16 (CPU autocast, --precision bf16): the same tiling with oneDNN's bf16 GEMM
//              (dnnl_gemm_bf16bf16f32, the libdnnl LibTorch loads) for both products, bf16 operands
//              with f32 accumulation; the scores, row maximum, exp and sum stay f32, the
//              unnormalised probabilities are rounded to bf16 for P V and the output once, after
//              1 / sum is applied in f32. Needs AVX-512 and that symbol (detail::bf16_gemm_available).
//   automatic  fused where it applies (all on CPU, all float32 or all bfloat16 with the bf16 GEMM
//              available, and no autograd: grad mode off or no input requiring grad), reference
//              everywhere else (CUDA, other dtypes, training; its softmax runs in float32), except
//              that attention_from_qkv() trains CPU bf16 on a kernel of its own (below).
// The fused result of attention() is a [B, H, N, dv] view of a [B, N, H, dv] buffer, so
// `out.transpose(1, 2).reshape({B, N, H * dv})` is free; attention_merged_heads() returns that
// [B, N, H * dv] tensor directly (for the reference kernel it does the transpose + copy).
#include <cstdint>

#include <torch/torch.h>

namespace cx::model {

enum class AttentionKernel { automatic, reference, fused };

torch::Tensor attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                        AttentionKernel kernel = AttentionKernel::automatic);

// The same attention with the heads merged back: [B, N, H * dv], what the output projection reads.
torch::Tensor attention_merged_heads(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     double scale, AttentionKernel kernel = AttentionKernel::automatic);

// Self-attention from one fused projection: qkv [B, N, 3 * heads * d] (the q, k and v blocks, heads
// within each, as x W_qkv^T lays them out) -> [B, N, heads * d]. With autograd on a CPU bf16 qkv
// (CPU autocast training) and a kernel other than `reference`: a trainable bf16 kernel, forward
// and backward per (batch, head) on oneDNN's bf16 GEMM with f32 accumulation, the softmax in f32,
// its probabilities rounded to bf16 once (autocast's eager attention, without its N x N float
// passes and the copies of strided q, k, v), gradients written into qkv's layout directly.
// Everywhere else: the q, k, v views of qkv through attention_merged_heads().
torch::Tensor attention_from_qkv(const torch::Tensor& qkv, std::int64_t heads, double scale,
                                 AttentionKernel kernel = AttentionKernel::automatic);

// Whether `automatic` picks the fused kernel for these inputs.
bool fused_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

namespace detail {

// Internals exposed so that tests and benchmarks can reach each code path.
enum class Isa { automatic, scalar, avx2, avx512 };
bool isa_supported(Isa isa);  // by this CPU and OS (scalar always)
Isa best_isa();

struct FusedOptions {
  Isa isa = Isa::automatic;
  bool use_blas = true;       // tile products on oneDNN's sgemm (gemm.hpp), else the BLAS's sgemm_;
                              // false (or no sgemm_ found): at::addmm_out on views
  std::int64_t tile_rows = 0; // queries per tile; 0 = chosen from the key count
};
bool blas_sgemm_available();
bool bf16_gemm_available();  // oneDNN's bf16 GEMM found and AVX-512 (the fused bf16 kernel runs)

// The fused kernel (throws cx::Error unless all inputs are CPU float32, or all bfloat16, 4-D tensors of
// matching shapes); bfloat16 ignores use_blas.
torch::Tensor fused_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                              bool merged_heads, const FusedOptions& options = {});

// y[i] = exp(x[i]) for x[i] <= 0 (the softmax range, after the row maximum is subtracted), with the
// named implementation: relative error <= 2.5e-7 (~2 ulp) against the exact exp for x >= -87.33;
// below that 0 where expf gives a subnormal (< 1.2e-38). NaN stays NaN. Returns the float32 sum of y.
float exp_nonpositive(const float* x, float* y, std::int64_t n, Isa isa);

}  // namespace detail
}  // namespace cx::model
