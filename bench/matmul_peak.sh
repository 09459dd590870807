# Sourced by the bench scripts (which set $here to their own folder and $threads): matmul_peak DTYPE
# [SOURCE] prints the matmul peak in GFLOP/s measured now, the best of a 2048 and a 4096 square
# product with $threads threads, so a figure can be divided by a peak from the same run. It is
# bench/embed/reference.py's `peak`; SOURCE:
#   torch   torch.mm, what Debian's LibTorch runs: OpenBLAS for float32, oneDNN's matmul for bfloat16
#   onednn  oneDNN's GEMM called directly (dnnl_sgemm / dnnl_gemm_bf16bf16f32 from the libdnnl LibTorch
#           loads), which cx calls for float32 products (lib/cx/model/gemm.hpp) and bf16 attention
#   best    (default) the higher of the two: the machine's peak as far as the libraries at hand reach it
# On a CPU where oneDNN's JIT sgemm outruns OpenBLAS (2x on a 2-core AVX-512 EPYC) a torch-only peak
# would let a figure exceed 100% of "the peak"; the best of both keeps the fraction honest.
matmul_peak() {  # float32 | bfloat16, then torch | onednn | best
  "${py:-/usr/bin/python3}" "$here/../embed/reference.py" peak --threads "$threads" --sizes 2048 4096 \
    --dtype "$1" --source "${2:-best}" | "${py:-/usr/bin/python3}" -c 'import json, sys; print(round(json.load(sys.stdin)["gflops"], 1))'
}
