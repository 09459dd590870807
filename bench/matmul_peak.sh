# Sourced by the bench scripts: matmul_peak DTYPE [SOURCE] prints the matmul peak in GFLOP/s measured
# now, the best of a 2048 and a 4096 square product with $threads threads, so a figure can be divided
# by a peak from the same run. SOURCE:
#   torch   torch.mm, what Debian's LibTorch runs: OpenBLAS for float32, oneDNN's matmul for bfloat16
#   onednn  oneDNN's GEMM called directly (dnnl_sgemm / dnnl_gemm_bf16bf16f32 from the libdnnl LibTorch
#           loads), which cx calls for float32 products (lib/cx/model/gemm.hpp) and bf16 attention
#   best    (default) the higher of the two: the machine's peak as far as the libraries at hand reach it
# On a CPU where oneDNN's JIT sgemm outruns OpenBLAS (2x on a 2-core AVX-512 EPYC) a torch-only peak
# would let a figure exceed 100% of "the peak"; the best of both keeps the fraction honest.
matmul_peak() {  # float32 | bfloat16, then torch | onednn | best
  "${py:-/usr/bin/python3}" -c "
import ctypes, time, torch
torch.set_num_threads($threads)
dtype, source = '$1', '${2:-best}'
c = ctypes
def torch_mm(n):
    a, b = torch.randn(n, n).to(getattr(torch, dtype)), torch.randn(n, n).to(getattr(torch, dtype))
    return lambda: torch.mm(a, b)
def onednn(n):
    try:
        lib = c.CDLL('libdnnl.so.2')
    except OSError:
        return None
    a, b = torch.randn(n, n).to(getattr(torch, dtype)), torch.randn(n, n).to(getattr(torch, dtype))
    out = torch.empty(n, n)
    fn = lib.dnnl_sgemm if dtype == 'float32' else lib.dnnl_gemm_bf16bf16f32
    i64, f32, vp = c.c_int64, c.c_float, c.c_void_p
    fn.argtypes = [c.c_char, c.c_char, i64, i64, i64, f32, vp, i64, vp, i64, f32, vp, i64]
    args = (b'N', b'N', n, n, n, 1.0, a.data_ptr(), n, b.data_ptr(), n, 0.0, out.data_ptr(), n)
    return lambda: (a, b, out, fn(*args))
best = 0.0
for make in ([torch_mm] if source == 'torch' else [onednn] if source == 'onednn' else [torch_mm, onednn]):
    for n in (2048, 4096):
        f = make(n)
        if f is None:
            continue
        f()
        for _ in range(3):
            t = time.perf_counter(); f(); best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
print(round(best, 1))"
}
