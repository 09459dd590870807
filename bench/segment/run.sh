#!/bin/sh
# bench/segment: where segmentation prediction spends its time, on real-size radiographs: the
# encoder (cx-embed, ViT-S/14 with 4 registers at 518, random weights, --emit patch4) against
# cx-segment predict (conv decoder on patch4, and the linear head on patch) writing every output
# (the stream, --png-dir, --rle, --overlay). The head's share of the prediction is the figure:
# the issue asks that the encoder, not the head or mask I/O, dominates.
#   sh bench/segment/run.sh [BUILD]      BUILD defaults to build
#   N=16 sh bench/segment/run.sh          N images (the 8 Shenzhen radiographs, about 750 x 735, repeated)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
bin="$build/bin"
for t in cx-ingest cx-model cx-embed cx-segment; do
  [ -x "$bin/$t" ] || { echo "bench/segment: $bin/$t not built" >&2; exit 1; }
done
shared=${CX_SHARED:-$root/../shared}
sz="$shared/samples/shenzhen"
[ -d "$sz/masks" ] || { echo "bench/segment: $sz not found (set CX_SHARED)" >&2; exit 1; }
n=${N:-16}
threads=2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
PATH="$bin:$PATH"

mkdir -p "$work/img" "$work/mask"
set -- "$sz"/images/*.png
i=0
while [ $i -lt "$n" ]; do
  eval "src=\${$((i % $# + 1))}"
  b=$(basename "$src" .png)
  cp "$src" "$work/img/$(printf 'i%04d' $i).png"
  cp "$sz/masks/${b}_mask.png" "$work/mask/$(printf 'i%04d' $i)_mask.png"
  i=$((i + 1))
done
cx-model init --preset small --seed 0 "$work/vits" 2>/dev/null
cx-ingest --masks "$work/mask" --mask-threshold 128 --mask-classes lung -q "$work/img" > "$work/in.cx"

now() { date +%s.%N; }
t0=$(now)
cx-embed --model "$work/vits" --emit patch,patch4 --keep-image --threads $threads --batch 4 -q "$work/in.cx" > "$work/emb.cx"
t1=$(now)
enc=$(echo "$t1 - $t0" | bc -l)
cx-segment train "$work/emb.cx" --feature patch4 --head conv --epochs 2 --stride 4 --threads $threads -q -o "$work/dec"
cx-segment train "$work/emb.cx" --epochs 2 --stride 4 --threads $threads -q -o "$work/lin"

predict() {  # head -> "wall head_s resample_s outputs_s"
  rm -rf "$work/png" "$work/ov"
  s=$(now)
  cx-segment predict "$1" "$work/emb.cx" -o "$work/pred.cx" --png-dir "$work/png" --rle "$work/pred.csv" \
    --overlay "$work/ov" --threads $threads -v 2> "$work/log"
  e=$(now)
  line=$(grep 'predicted' "$work/log")
  h=$(echo "$line" | sed 's/.*: head \([0-9.]*\) s.*/\1/')
  r=$(echo "$line" | sed 's/.*resample + argmax \([0-9.]*\) s.*/\1/')
  o=$(echo "$line" | sed 's/.*outputs \([0-9.]*\) s.*/\1/')
  echo "$(echo "$e - $s" | bc -l) $h $r $o"
}
report() {  # name "wall head resample outputs"
  set -- "$1" $2
  awk -v name="$1" -v w="$2" -v h="$3" -v r="$4" -v o="$5" -v enc="$enc" -v n="$n" 'BEGIN {
    total = enc + w
    printf "%-22s predict %.2f s (head %.3f s, resample+argmax %.3f s, outputs %.3f s, start-up and reading %.2f s)\n", name, w, h, r, o, w - h - r - o
    printf "%-22s of encoder + predict (%.2f s, %.0f ms/image): encoder %.1f%%, head %.2f%%, resample+argmax %.2f%%, mask I/O %.2f%%\n", "", total, 1000 * total / n, 100 * enc / total, 100 * h / total, 100 * r / total, 100 * o / total
  }'
}
echo "bench/segment: $n Shenzhen radiographs ($(cd "$work/img" && /usr/bin/python3 -c 'import sys; from PIL import Image; print("x".join(map(str, Image.open(sys.argv[1]).size)))' i0000.png) and similar), ViT-S/14 4 registers at 518, $threads threads"
printf 'encoder (cx-embed)     %.2f s, %.0f ms/image\n' "$enc" "$(echo "1000 * $enc / $n" | bc -l)"
report "conv decoder, patch4" "$(predict "$work/dec")"
report "linear head, patch" "$(predict "$work/lin")"
