#!/bin/sh
# bench/report: tokens/s of batched greedy generation with the KV cache, cx (report_bench: the
# library's LlamaDecoder + generate()) against reference.py (our PyTorch port of the same Llama
# numerics under Debian's torch 1.13, the same cat-grown cache loop), on the same random weights
# (written by reference.py into a temporary Hugging Face folder), batch, prompt, thread count.
#
#   sh bench/report/run.sh [BUILD]
#     BUILD   a configured cx build folder (default: build); its cx_torch is brought up to date
#   environment: BATCH (4), NEW (128 tokens per row), PROMPT (32), THREADS (2), REPEAT (3),
#                LAYERS (8), HIDDEN (512), DEVICE (cpu; cuda for a GPU, cx side only), DTYPE (f32|bf16),
#                KEEP=1 keeps the temporary folder
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
py=/usr/bin/python3
batch=${BATCH:-4}
new=${NEW:-128}
prompt=${PROMPT:-32}
threads=${THREADS:-2}
repeat=${REPEAT:-3}
layers=${LAYERS:-8}
hidden=${HIDDEN:-512}
device=${DEVICE:-cpu}
dtype=${DTYPE:-f32}

cmake --build "$build" --target cx_torch >/dev/null
cmake -S "$here" -B "$build/bench-report" -G Ninja -DCX_BUILD="$build" >/dev/null
cmake --build "$build/bench-report" >/dev/null

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cx-bench-report.XXXXXX")
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$tmp"' EXIT INT TERM
model=$tmp/llama

echo "bench/report: Llama $layers layers, hidden $hidden (8 heads, 4 KV heads), vocab 32000, random weights;"\
     "batch $batch (left-padded prompts of up to $prompt tokens), $new new tokens per row, greedy, KV cache, $threads threads"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
# The matmul peak in the same run (bench/matmul_peak.sh), to set the figures below against.
. "$here/../matmul_peak.sh"
echo "matmul peak (torch mm 2048/4096, $threads threads, now): float32 $(matmul_peak float32) GFLOP/s"
$py "$here/reference.py" make-model "$model" --seed 0 --layers "$layers" --hidden "$hidden"

"$build/bench-report/report_bench" --model "$model" --batch "$batch" --prompt "$prompt" --new "$new" \
  --threads "$threads" --repeat "$repeat" --device "$device" --dtype "$dtype" > "$tmp/cx.json"
if [ "$device" = cpu ] && [ "$dtype" = f32 ]; then
  $py "$here/reference.py" run "$model" --batch "$batch" --prompt "$prompt" --new "$new" --threads "$threads" \
    --repeat "$repeat" > "$tmp/ref.json"
else
  echo '{"tokens_per_s": 0, "row0": []}' > "$tmp/ref.json"  # the reference runs on the CPU in float32 only
fi

$py - "$tmp/cx.json" "$tmp/ref.json" "$device" "$dtype" <<'PY'
import json, sys
cx, ref = (json.load(open(p)) for p in sys.argv[1:3])
device, dtype = sys.argv[3:5]
print("cx        %9.1f tokens/s  (%.3f s, %s %s)" % (cx["tokens_per_s"], cx["seconds"], device, dtype))
if ref["tokens_per_s"]:
    print("reference %9.1f tokens/s  (%.3f s, PyTorch %s threads)" % (ref["tokens_per_s"], ref["seconds"], ref["threads"]))
    print("ratio cx / reference: %.2fx" % (cx["tokens_per_s"] / ref["tokens_per_s"]))
    same = sum(1 for a, b in zip(cx["row0"], ref["row0"]) if a == b)
    print("sanity: row 0's first %d greedy ids agree in %d places" % (len(cx["row0"]), same))
PY
