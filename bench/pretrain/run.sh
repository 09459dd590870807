#!/bin/sh
# bench/pretrain: one training step of the cxformer-small recipe (ViT-S/14 + 4 registers, separate
# DINO/iBOT heads of 16,384 prototypes) at reduced crops — 2 global 224 + 8 local 96, batch 8 — on the
# CPU with THREADS threads, cx-pretrain against our PyTorch reference step (reference_step.py, Debian's
# torch 1.13, same shapes, same threads), side by side in one run, in f32 and (where the CPU has bf16
# units) bf16. Prints the matmul peak measured now, images/s of each side and their ratio, FLOPs per step
# (forward + backward of the student, forward of the teacher, heads included) and the fraction of the
# peak, and each side's peak RSS.
#
#   sh bench/pretrain/run.sh [BUILD]
#   environment: STEPS (3: the first is warm-up and not timed), THREADS (2), BATCH (8), KEEP=1
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
py=/usr/bin/python3
steps=${STEPS:-3}
threads=${THREADS:-2}
batch=${BATCH:-8}
cmake --build "$build" --target cx-pretrain cx-phantom >/dev/null
PATH=$build/bin:$PATH

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cx-bench-pretrain.XXXXXX")
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$tmp"' EXIT INT TERM

echo "bench/pretrain: cxformer-small at 224/96 crops, batch $batch, $threads threads, $steps steps (first untimed)"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "$(grep -o -w -m1 'avx512_bf16' /proc/cpuinfo || echo 'no avx512_bf16')"
# The matmul peak in the same run (bench/matmul_peak.sh), in float32 and in bfloat16; each precision's
# figures divide by its own.
. "$here/../matmul_peak.sh"
peak_fp32=$(matmul_peak float32)
echo "matmul peak float32 (2048/4096, $threads threads, now): $peak_fp32 GFLOP/s, the best of torch.mm" \
     "$(matmul_peak float32 torch) and oneDNN's sgemm $(matmul_peak float32 onednn)"

cx-phantom -q -n $((batch * (steps + 1))) --size 256 --seed 1 -o "$tmp/data.cx"
common="crops.global_crops_size=224 crops.local_crops_size=96 train.batch_size_per_gpu=$batch train.shuffle_buffer=$batch
        train.OFFICIAL_EPOCH_LENGTH=100 optim.epochs=100 crops.hist_equalize=false"
# The ViT-S config the recipe builds, for the reference and the FLOP count.
cx-pretrain train -q --threads "$threads" --recipe cxformer-small -o "$tmp/init" $common --max-steps 0 "$tmp/data.cx"
cx-pretrain export "$tmp/init" -o "$tmp/enc"

flops=$("$py" -c "
import json, sys
sys.path.insert(0, '$root/bench/embed')
import reference as R
cfg = json.load(open('$tmp/enc/config.json'))
B, n_local, K, bott, hid, D = $batch, 8, 16384, 384, 2048, cfg['hidden_size']
g, l = R.flops_per_image(cfg, 224, 224), R.flops_per_image(cfg, 96, 96)
head = 2 * (D * hid + hid * hid + hid * bott + bott * K)  # per row, forward
patches = (224 // cfg['patch_size']) ** 2
masked = 2 * B * 0.5 * 0.3 * patches  # DINOv2's mean: half the global crops, ratio 0.1-0.5
student = 3 * (2 * B * g + n_local * B * l + (2 * B + n_local * B + masked) * head)  # forward + backward
teacher = 2 * B * g + (2 * B + masked) * head
print(student + teacher)")
echo "FLOPs per step: $(echo "$flops" | awk '{printf "%.1f", $1 / 1e9}') GFLOP (student forward + backward = 3x forward, teacher forward, heads)"

result() {  # name images/s rss peak
  printf '  %-34s %8.4f images/s  %6.1f%% of the matmul peak  peak RSS %6.0f MiB\n' "$1" "$2" \
    "$(echo "$2 $flops $batch $4" | awk '{print 100 * $1 / $3 * $2 / 1e9 / $4}')" "$3"
}

for precision in fp32 bf16; do
  if [ "$precision" = bf16 ] && ! grep -q -w avx512_bf16 /proc/cpuinfo; then
    echo "bf16: this CPU has no bf16 units; skipped"
    continue
  fi
  cx-pretrain train -q --threads "$threads" --recipe cxformer-small -o "$tmp/run-$precision" $common \
    train.precision=$precision --max-steps "$steps" "$tmp/data.cx"
  # images/s over the timed steps (rows 2..), peak RSS of the last row
  cx=$(awk -F'\t' -v b="$batch" 'NR > 2 { s += $16; n++ } END { print b * n / s }' "$tmp/run-$precision/log.tsv")
  cx_rss=$(tail -n 1 "$tmp/run-$precision/log.tsv" | cut -f 15)
  flag=""; peak=$peak_fp32
  if [ "$precision" = bf16 ]; then
    flag=--bf16; peak=$(matmul_peak bfloat16)
    echo "matmul peak bfloat16 (same way, now): $peak GFLOP/s, the best of torch.mm $(matmul_peak bfloat16 torch)" \
         "and oneDNN's bf16 GEMM $(matmul_peak bfloat16 onednn)"
  fi
  ref=$("$py" "$here/reference_step.py" --config "$tmp/enc/config.json" --batch "$batch" --global-size 224 \
        --local-size 96 --local-crops 8 --prototypes 16384 --bottleneck 384 --hidden 2048 --steps "$steps" \
        --threads "$threads" $flag)
  ref_ips=$(echo "$ref" | "$py" -c 'import json, sys; print(json.load(sys.stdin)["images_per_s"])')
  ref_rss=$(echo "$ref" | "$py" -c 'import json, sys; print(json.load(sys.stdin)["peak_rss_mib"])')
  echo "$precision:"
  result "cx-pretrain (data loading included)" "$cx" "$cx_rss" "$peak"
  result "PyTorch reference step" "$ref_ips" "$ref_rss" "$peak"
  echo "  ratio cx / reference: $(echo "$cx $ref_ips" | awk '{printf "%.2f", $1 / $2}')x"
done
