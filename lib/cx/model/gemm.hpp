#pragma once
// Matrix products whose float32 CPU work runs on oneDNN's sgemm: linear() (y = x W^T + b, as
// at::linear) and matmul() (batched a @ b, as torch::matmul for equal batch shapes), forward and backward.
//
// Debian's LibTorch (built without MKL) runs a float32 at::linear / at::mm on OpenBLAS. oneDNN's
// sgemm (dnnl_sgemm, from the libdnnl LibTorch itself loads for its bf16 and convolution kernels)
// JIT-compiles for the CPU it runs on: on a 2-core AMD EPYC with AVX-512 it runs a ViT's shapes
// (4176 x 384 x 1152 and the like) at ~390 GFLOP/s against OpenBLAS 0.3.21's ~185, the same float32
// arithmetic (bench/pretrain prints both peaks). linear() uses it, forward and backward (dX = dY W,
// dW = dY^T X, db = column sums of dY), where it applies: all tensors on the CPU and float32, CPU
// autocast off, and the symbol found. Under CPU bf16 autocast it runs oneDNN's bf16 GEMM instead
// (linear() below). Everywhere else (CUDA, other dtypes, no libdnnl) it is at::linear.
// Results differ from at::linear by float32 rounding (summation order) only; for a given thread count
// they are the same on every call.
#include <cstdint>

#include <torch/torch.h>

namespace cx::model {

// What linear() returns under CPU bf16 autocast. as_autocast: bf16, as at::linear there. float32: the
// product's float32 accumulators, unrounded, for a caller that goes on in float32 (a residual
// stream, normalisation, a loss): one rounding and one cast pass less. Outside CPU bf16 autocast,
// and where its bf16 path does not apply, both return what at::linear returns.
enum class LinearOutput { as_autocast, float32 };

// Under CPU bf16 autocast (and the conditions of detail::bf16_linear_applies) linear() runs on
// oneDNN's bf16 GEMM with float32 accumulation and output (dnnl_gemm_bf16bf16f32), forward and
// backward: x and W rounded to bf16 as autocast rounds them; dX and dW come out in float32 (the
// float32 master weights' gradient, unrounded), where at::linear under autocast rounds dW and dX
// to bf16 and casts them back. db sums dY in float32. The GEMM runs the same shapes at 10-25% more
// FLOP/s than at::linear's oneDNN matmul primitive on a 2-core AVX-512 EPYC (bench/pretrain).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {},
                     LinearOutput output = LinearOutput::as_autocast);

// a [..., M, K] @ b [..., K, N] -> [..., M, N], both with the same batch dimensions (no broadcasting),
// as torch::matmul. On the oneDNN path (the conditions of linear()) each matrix of the batch is one
// single-threaded sgemm, the batch spread over LibTorch's threads (at::parallel_for), so the result
// does not depend on the thread count; operands are read in place where one of their two last strides
// is 1 (e.g. q, k and v as views of one fused qkv projection, or k transposed). Its gradients
// (ga = gc b^T, gb = a^T gc) run the same way. Torch's float32 bmm loops over the batch calling the
// BLAS per matrix with a tensor select each: ~4x slower on attention's 261 x 261 x 64 products.
torch::Tensor matmul(const torch::Tensor& a, const torch::Tensor& b);

namespace detail {
bool onednn_sgemm_available();  // dnnl_sgemm found in the process
// Row-major C[m, n] = alpha op(A) op(B) + beta C on oneDNN's sgemm ('N' or 'T' per operand; inside an
// OpenMP parallel region it runs on the calling thread). False, touching nothing, without oneDNN;
// throws cx::Error if oneDNN reports a failure.
bool onednn_sgemm(char transa, char transb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha, const float* a,
                  std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c, std::int64_t ldc);
// Whether linear() takes the oneDNN path for these tensors (false: at::linear).
bool onednn_linear_applies(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);
bool onednn_matmul_applies(const torch::Tensor& a, const torch::Tensor& b);
// Whether linear() takes the bf16 path (CPU autocast to bf16, x float32 or bf16 on the CPU, W and b
// float32 or bf16, the GEMM found and AVX-512; false: at::linear).
bool bf16_linear_applies(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias);
// oneDNN's row-major C[m, n] = alpha op(A) op(B) + beta C with bf16 A and B (raw bits) and float32
// C (dnnl_gemm_bf16bf16f32); 0 on success. Null where the process has no libdnnl. Inside an OpenMP
// parallel region it runs on the calling thread.
using GemmBf16Fn = int (*)(char transa, char transb, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                           const std::uint16_t* a, std::int64_t lda, const std::uint16_t* b, std::int64_t ldb,
                           float beta, float* c, std::int64_t ldc);
GemmBf16Fn onednn_gemm_bf16();
// Found, and a CPU with AVX-512 to run it on (the condition of every bf16 kernel here).
bool onednn_gemm_bf16_usable();
// Force the at::linear / torch::matmul paths (tests compare the two; benchmarks measure each), the
// float32 and the bf16 ones alike. Process-wide.
void set_onednn_linear_enabled(bool enabled);
}  // namespace detail

}  // namespace cx::model
