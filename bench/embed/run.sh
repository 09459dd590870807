#!/bin/sh
# bench/embed: cx's DINOv2 ViT-S/14 encoder (4 registers, 518 x 518, random weights in a temporary
# Hugging Face folder) against the same architecture in Python (reference.py, Debian's torch 1.13),
# same weights, threads, batch and image count, in one run. Prints the matmul peak measured now, a
# sanity line (cx's last_hidden_state against the reference on one image), images/s of each side,
# their ratio, the FLOPs per image, cx's fraction of the peak, and cx's max RSS for N and 2N images.
#
#   sh bench/embed/run.sh [BUILD] [all|attention|allocators]
#     BUILD      a configured cx build folder (default: build); its cx_torch is brought up to date
#     attention  only the attention micro-bench (reference vs fused kernel, tile sizes)
#     allocators glibc malloc with its defaults, glibc tuned at start-up (cx::model's fallback) and
#                tcmalloc (what the tools link), for inference and for training (forward + backward),
#                side by side: images/s, minor page faults per image, max RSS
#     precision  f32 and bf16 only, side by side (library forward twice each, alternating, and
#                cx-embed on the same phantoms: images/s and every CLS's cosine to f32)
# Every cx timing reports its minor page faults per image (getrusage; /usr/bin/time for the CLI),
# and, where the CPU has bf16 units, cx-embed --precision bf16 is timed beside f32 with the cosine
# of every CLS to f32's.
#   environment: IMAGES (16), BATCH (4), THREADS (2), CX_SHARED (../shared), KEEP=1 keeps the temp folder
#
# cx is timed through `cx-phantom | cx-embed --preprocess cxformer` when both tools build (process
# start and preprocessing included, a one-batch run subtracted as warm-up), and always through
# embed_bench (bench/embed/embed_bench.cpp: the library's forward on random pixel values), with the
# fused attention kernel (vit.cpp's default on CPU) and with the reference one.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
mode=${2:-all}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
py=/usr/bin/python3
shared=${CX_SHARED:-$root/../shared}
config=$shared/fixtures/hf/configs/dinov2-with-registers-small.config.json
images=${IMAGES:-16}
batch=${BATCH:-4}
threads=${THREADS:-2}
[ -f "$config" ] || { echo "bench/embed: $config: not found (set CX_SHARED)" >&2; exit 1; }

# --- the C++ drivers, built against this build folder's libraries ---
cmake --build "$build" --target cx_torch >/dev/null
if [ "$mode" != attention ] && [ -f "$root/tools/cx-embed.cpp" ]; then
  cmake --build "$build" --target cx-embed cx-phantom >/dev/null 2>"$build/bench-embed.tools.log" ||
    echo "bench/embed: cx-embed/cx-phantom did not build (see $build/bench-embed.tools.log); library figures only"
fi
cmake -S "$here" -B "$build/bench-embed" -G Ninja -DCX_BUILD="$build" >/dev/null
cmake --build "$build/bench-embed" >/dev/null
bench=$build/bench-embed

if [ "$mode" = attention ]; then
  exec "$bench/attention_bench" --threads "$threads" --batch "$batch"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/cx-bench-embed.XXXXXX")
trap '[ "${KEEP:-0}" = 1 ] || rm -rf "$tmp"' EXIT INT TERM
model=$tmp/vit-s14

echo "bench/embed: ViT-S/14 + 4 registers at 518 x 518, $images images, batch $batch, $threads threads"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
     "load average $(cut -d' ' -f1-3 /proc/loadavg) at start"
$py "$here/reference.py" make-model "$model" --config "$config" --seed 0

if [ "$mode" = precision ]; then
  for round in 1 2; do
    for p in f32 bf16; do
      "$bench/embed_bench" --model "$model" --images "$images" --batch "$batch" --threads "$threads" \
        --precision "$p" > "$tmp/prec.$p.$round.json"
      echo "$(cut -d' ' -f1 /proc/loadavg)" > "$tmp/prec.$p.$round.load"
    done
  done
  "$build/bin/cx-phantom" -n "$images" --size 518 > "$tmp/phantoms.tar"
  for p in f32 bf16; do
    /usr/bin/time -f "%e" -o "$tmp/cli.$p.time" "$build/bin/cx-embed" -v --model "$model" --batch "$batch" \
      --threads "$threads" --preprocess cxformer --precision "$p" < "$tmp/phantoms.tar" > "$tmp/cls.$p.cx" 2>"$tmp/cli.$p.err"
    grep "compute:" "$tmp/cli.$p.err" || true
  done
  $py - "$tmp" <<'EOF'
import io, json, sys, tarfile, numpy as np
tmp = sys.argv[1]
for rnd in (1, 2):
    r = {p: json.load(open(f"{tmp}/prec.{p}.{rnd}.json")) for p in ("f32", "bf16")}
    load = {p: open(f"{tmp}/prec.{p}.{rnd}.load").read().strip() for p in ("f32", "bf16")}
    cpu = {p: r[p]["cpu_seconds"] / r[p]["images"] for p in r}
    print(f"round {rnd}: library f32 {r['f32']['images_per_s']:.3f} images/s, cpu {cpu['f32']:.2f} s/image (load {load['f32']}); "
          f"bf16 {r['bf16']['images_per_s']:.3f} images/s, cpu {cpu['bf16']:.2f} s/image (load {load['bf16']}): "
          f"{r['bf16']['images_per_s'] / r['f32']['images_per_s']:.2f}x by wall time, {cpu['f32'] / cpu['bf16']:.2f}x by cpu time (target >= 2x)")
def cls(path):
    with tarfile.open(path) as t:
        return {m.name: np.load(io.BytesIO(t.extractfile(m).read())).astype(np.float64)
                for m in t.getmembers() if m.name.endswith("cls.npy")}
a, b = cls(f"{tmp}/cls.f32.cx"), cls(f"{tmp}/cls.bf16.cx")
cos = [float(a[k] @ b[k] / np.linalg.norm(a[k]) / np.linalg.norm(b[k])) for k in a]
t = {p: float(open(f"{tmp}/cli.{p}.time").read()) for p in ("f32", "bf16")}
print(f"cx-embed on {len(cos)} phantoms: f32 {t['f32']:.1f} s, bf16 {t['bf16']:.1f} s (process start and"
      f" preprocessing included); CLS cosine to f32: min {min(cos):.6f}, mean {np.mean(cos):.6f} (target >= 0.9999)")
EOF
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  exit 0
fi

if [ "$mode" = allocators ]; then
  # Same program, same run: the allocator is the only difference. Training: TRAIN_IMAGES (4) images
  # in batches of TRAIN_BATCH (2), forward + backward through the reference attention.
  timg=${TRAIN_IMAGES:-4}
  tbatch=${TRAIN_BATCH:-2}
  for task in inference training; do
    if [ "$task" = inference ]; then args="--images $images --batch $batch"; else args="--images $timg --batch $tbatch --train 1"; fi
    for alloc in glibc-default glibc-tuned tcmalloc; do
      case $alloc in
        glibc-default) prog=$bench/embed_bench_glibc; envs="CX_GLIBC_MALLOC=default" ;;
        glibc-tuned) prog=$bench/embed_bench_glibc; envs="CX_GLIBC_MALLOC=tuned" ;;
        tcmalloc) prog=$bench/embed_bench; envs="CX_GLIBC_MALLOC=tuned" ;;
      esac
      # shellcheck disable=SC2086
      env $envs /usr/bin/time -f "%M" -o "$tmp/rss.$task.$alloc" "$prog" --model "$model" $args \
        --threads "$threads" > "$tmp/alloc.$task.$alloc.json"
      cut -d' ' -f1 /proc/loadavg > "$tmp/load.$task.$alloc"
    done
  done
  $py - "$tmp" <<'EOF'
import json, sys
tmp = sys.argv[1]
for task in ("inference", "training"):
    print(f"{task}:")
    base = None
    for alloc in ("glibc-default", "glibc-tuned", "tcmalloc"):
        r = json.load(open(f"{tmp}/alloc.{task}.{alloc}.json"))
        rss = int(open(f"{tmp}/rss.{task}.{alloc}").read()) / 1024
        load = open(f"{tmp}/load.{task}.{alloc}").read().strip()
        base = base or r["images_per_s"]
        print(f"  {alloc:<14} {r['images_per_s']:6.3f} images/s ({r['images_per_s'] / base:4.2f}x)"
              f"  cpu {r['cpu_seconds'] / r['images']:5.2f} s/image"
              f"  {r['minor_faults'] / r['images']:9.0f} minor faults/image  max RSS {rss:5.0f} MiB"
              f"  [{r['allocator']}; load {load}]")
EOF
  echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
  exit 0
fi

# --- the machine's matmul peak (the better of torch.mm and oneDNN's sgemm), same threads ---
$py "$here/reference.py" peak --threads "$threads" > "$tmp/peak.json"

# --- sanity: the same image through cx and the reference ---
"$bench/embed_bench" --model "$model" --images 0 --batch 1 --threads "$threads" \
  --attention automatic --attention reference --check-dir "$tmp"
$py "$here/reference.py" run --model "$model" --pixel-values "$tmp/pixel_values.npy" --out "$tmp/reference.npy" \
  --threads "$threads"
cli_check=""
if [ -x "$build/bin/cx-embed" ] && [ -x "$build/bin/cx-phantom" ]; then
  # cx-embed's own preprocessing: compare on the pixel_values it reports.
  if "$build/bin/cx-phantom" -n 1 --size 518 2>/dev/null |
       "$build/bin/cx-embed" --model "$model" --threads "$threads" --preprocess cxformer \
         --emit last_hidden_state,pixel_values \
         > "$tmp/one.tar" 2>"$tmp/cli.err" &&
     $py - "$tmp" <<'EOF'
import io, sys, tarfile, numpy as np
tmp = sys.argv[1]
with tarfile.open(tmp + "/one.tar") as t:
    got = {m.name.split(".", 1)[1]: np.load(io.BytesIO(t.extractfile(m).read()))
           for m in t.getmembers() if m.name.endswith(".npy")}
np.save(tmp + "/cli_pixel_values.npy", got["pixel_values.npy"])
np.save(tmp + "/cli.npy", got["last_hidden_state.npy"])
EOF
  then
    $py "$here/reference.py" run --model "$model" --pixel-values "$tmp/cli_pixel_values.npy" \
      --out "$tmp/cli_reference.npy" --threads "$threads"
    cli_check=1
  else
    echo "sanity (cx-embed): skipped, the CLI run failed: $(head -c 300 "$tmp/cli.err")"
  fi
fi
$py - "$tmp" "$cli_check" <<'EOF'
import sys, numpy as np
tmp, cli = sys.argv[1], sys.argv[2]
ref = np.load(tmp + "/reference.npy")
pairs = [("cx library, fused attention", "automatic", "reference"),
         ("cx library, reference attention", "reference", "reference")]
if cli:
    pairs.insert(0, ("cx-embed", "cli", "cli_reference"))
bad = False
for label, name, against in pairs:
    got, want = np.load(f"{tmp}/{name}.npy"), np.load(f"{tmp}/{against}.npy")
    if got.size == want.size:  # cx-embed writes [N, D] per record, the reference [1, N, D]
        got = got.reshape(want.shape)
    d = float(np.abs(got.astype(np.float64) - want).max()) if got.shape == want.shape else float("inf")
    ok = d <= 1e-4
    bad |= not ok
    print(f"sanity: {label}: max |cx - reference| on last_hidden_state {list(got.shape)} = {d:.2e}"
          f" ({'ok' if ok else 'FAIL'}, limit 1e-4)")
sys.exit(1 if bad else 0)
EOF

# --- timings: reference, then cx, each one process, warm-up batch first ---
$py "$here/reference.py" time --model "$model" --images "$images" --batch "$batch" --threads "$threads" \
  > "$tmp/reference.json"
/usr/bin/time -f "%M" -o "$tmp/rss1" "$bench/embed_bench" --model "$model" --images "$images" --batch "$batch" \
  --threads "$threads" --attention automatic > "$tmp/fused.json"
/usr/bin/time -f "%M" -o "$tmp/rss2" "$bench/embed_bench" --model "$model" --images $((2 * images)) \
  --batch "$batch" --threads "$threads" --attention automatic > /dev/null
"$bench/embed_bench" --model "$model" --images "$images" --batch "$batch" --threads "$threads" \
  --attention reference > "$tmp/model.json"
echo '{}' > "$tmp/cli.json"
no_bf16=${NO_BF16:-}
if [ -x "$build/bin/cx-embed" ] && [ -x "$build/bin/cx-phantom" ]; then
  # Two runs, one batch and N + one batch: the difference is N images at steady state.
  for n in "$batch" $((images + batch)) $((2 * images + batch)); do
    "$build/bin/cx-phantom" -n "$n" --size 518 > "$tmp/phantoms.$n.tar"
    /usr/bin/time -f "%e %M %R" -o "$tmp/cli.$n" \
      "$build/bin/cx-embed" -q --model "$model" --batch "$batch" --threads "$threads" --preprocess cxformer \
        < "$tmp/phantoms.$n.tar" > "$tmp/cls.f32.$n.cx"
    # bf16 beside f32, same inputs, where the CPU has the units (cx-embed refuses with exit 2 otherwise).
    if [ -z "$no_bf16" ] && /usr/bin/time -f "%e %M %R" -o "$tmp/cli_bf16.$n" \
         "$build/bin/cx-embed" -q --model "$model" --batch "$batch" --threads "$threads" --preprocess cxformer \
           --precision bf16 < "$tmp/phantoms.$n.tar" > "$tmp/cls.bf16.$n.cx" 2>"$tmp/bf16.err"; then
      :
    else
      no_bf16=1
    fi
  done
  [ -z "$no_bf16" ] || echo "cx-embed --precision bf16: not timed: $(head -c 300 "$tmp/bf16.err" 2>/dev/null)"
  $py - "$tmp" "$batch" "$images" "$no_bf16" <<'EOF'
import io, json, sys, tarfile, numpy as np
tmp, batch, images, no_bf16 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def timing(prefix):
    t = {n: open(f"{tmp}/{prefix}.{n}").read().split() for n in (batch, images + batch, 2 * images + batch)}
    seconds = float(t[images + batch][0]) - float(t[batch][0])
    faults = int(t[images + batch][2]) - int(t[batch][2])
    return {"images": images, "seconds": seconds, "images_per_s": images / seconds, "minor_faults": faults,
            "rss_kb": int(t[images + batch][1]), "rss2_kb": int(t[2 * images + batch][1])}
json.dump(timing("cli"), open(f"{tmp}/cli.json", "w"))
if not no_bf16:
    r = timing("cli_bf16")
    def cls(path):
        with tarfile.open(path) as t:
            return {m.name: np.load(io.BytesIO(t.extractfile(m).read())).astype(np.float64)
                    for m in t.getmembers() if m.name.endswith("cls.npy")}
    a, b = cls(f"{tmp}/cls.f32.{2 * images + batch}.cx"), cls(f"{tmp}/cls.bf16.{2 * images + batch}.cx")
    cos = [float(a[k] @ b[k] / np.linalg.norm(a[k]) / np.linalg.norm(b[k])) for k in a]
    r["cls_cosine_min"] = min(cos)
    r["cls_count"] = len(cos)
    json.dump(r, open(f"{tmp}/cli_bf16.json", "w"))
EOF
fi

$py - "$tmp" "$images" <<'EOF'
import json, sys
tmp, images = sys.argv[1], int(sys.argv[2])
load = lambda name: json.load(open(f"{tmp}/{name}.json"))
import os
peak, ref, fused, model, cli = load("peak"), load("reference"), load("fused"), load("model"), load("cli")
cli_bf16 = load("cli_bf16") if os.path.exists(f"{tmp}/cli_bf16.json") else {}
flops = ref["flops_per_image"]
peak_gf = peak["gflops"]
print(f"matmul peak: {peak_gf:.1f} GFLOP/s ({peak['sizes'][0]}^3 sgemm, best of 3, {peak['threads']} threads: the better of torch.mm "
      f"{peak['torch_gflops']:.1f} and oneDNN's sgemm {peak.get('onednn_gflops', float('nan')):.1f})")
print(f"FLOPs per image: {flops / 1e9:.2f} GFLOP = 12 layers x (qkv 2*N*D*3D + out 2*N*D*D + mlp 2*2*N*D*4D"
      f" + attention 2*2*N*N*D) + patch conv 2*P*3*14*14*D, N = 1374 tokens, P = 1369 patches, D = 384")
def line(label, r):
    ips = r["images_per_s"]
    frac = ips * flops / 1e9 / peak_gf
    extra = f", cpu {r['cpu_seconds'] / r['images']:.2f} s/image" if "cpu_seconds" in r else ""
    if "minor_faults" in r:
        extra += f", {r['minor_faults'] / r['images']:.0f} minor faults/image"
    print(f"{label:<38} {ips:6.3f} images/s  {ips * flops / 1e9:6.1f} GFLOP/s  {100 * frac:5.1f}% of peak{extra}")
    return ips, frac
r_ips, _ = line("reference (Python, HF architecture)", ref)
rows = []
if cli:
    rows.append(("cx-embed (CLI, phantoms)", cli))
rows += [("cx library, fused attention", fused), ("cx library, reference attention", model)]
for label, r in rows:
    ips, frac = line(label, r)
    print(f"{'':<38} ratio to reference {ips / r_ips:.2f}x (target >= 1.5x), {100 * frac:.0f}% of peak (target >= 60%)")
if cli_bf16:
    ips, _ = line("cx-embed --precision bf16", cli_bf16)
    print(f"{'':<38} {ips / cli['images_per_s']:.2f}x cx-embed's f32 (target >= 2x; % of the f32 peak);"
          f" min CLS cosine to f32 over {cli_bf16['cls_count']} images {cli_bf16['cls_cosine_min']:.6f} (target >= 0.9999)")
rss1, rss2 = int(open(f"{tmp}/rss1").read()), int(open(f"{tmp}/rss2").read())
print(f"max RSS, cx library fused: {rss1 / 1024:.0f} MiB for {images} images, {rss2 / 1024:.0f} MiB for {2 * images}"
      f" ({'flat' if rss2 <= rss1 * 1.05 else 'GROWS'})")
if cli:
    print(f"max RSS, cx-embed: {cli['rss_kb'] / 1024:.0f} MiB for {images} images + warm-up, "
          f"{cli['rss2_kb'] / 1024:.0f} MiB for {2 * images} ({'flat' if cli['rss2_kb'] <= cli['rss_kb'] * 1.05 else 'GROWS'})")
EOF
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end (a busy machine lowers every figure, the ratio less)"
