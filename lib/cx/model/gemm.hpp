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
// autocast off (under autocast at::linear casts to bf16 and runs oneDNN's bf16 matmul already), and
// the symbol found. Everywhere else (CUDA, other dtypes, autocast, no libdnnl) it is at::linear.
// Results differ from at::linear by float32 rounding (summation order) only; for a given thread count
// they are the same on every call.
#include <cstdint>

#include <torch/torch.h>

namespace cx::model {

torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& bias = {});

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
// Force the at::linear / torch::matmul paths (tests compare the two; benchmarks measure each). Process-wide.
void set_onednn_linear_enabled(bool enabled);
}  // namespace detail

}  // namespace cx::model
