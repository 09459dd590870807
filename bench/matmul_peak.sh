# Sourced by the bench scripts: matmul_peak DTYPE prints the matmul peak in GFLOP/s measured now, the
# best of a 2048 and a 4096 square product through torch (the same OpenBLAS / oneDNN LibTorch uses)
# with $threads threads, so a figure can be divided by a peak from the same run.
matmul_peak() {  # float32 | bfloat16
  "${py:-/usr/bin/python3}" -c "
import time, torch
torch.set_num_threads($threads)
best = 0.0
for n in (2048, 4096):
    a, b = torch.randn(n, n).to(torch.$1), torch.randn(n, n).to(torch.$1)
    torch.mm(a, b)
    for _ in range(3):
        t = time.perf_counter(); torch.mm(a, b); best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
print(round(best, 1))"
}
