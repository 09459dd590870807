#!/bin/sh
# Lung segmentation on real radiographs: the Shenzhen images and their anti-aliased lung masks
# (../shared/samples/shenzhen) -> cx-ingest --masks (threshold 128) -> cx-embed (patch tokens of a
# tiny random-init encoder: no weights can be downloaded here; give MODEL=CXformer-small where you
# have it) -> cx-segment train on 5 images -> predict the other 3 as label maps, CheXmask RLE and
# overlays -> cx-eval Dice / IoU / HD95 with bootstrap CIs.
# Usage: sh examples/segment-shenzhen.sh [BUILD_DIR]
set -eu
build=${1:-build}
bin=$(cd "$build/bin" && pwd)
PATH="$bin:$PATH"
samples=${CX_SHARED:-$(dirname "$0")/../../shared}/samples/shenzhen
[ -d "$samples/masks" ] || { echo "segment-shenzhen: no Shenzhen samples at $samples" >&2; exit 1; }
out=${CX_DEMO_DIR:-$build/segment-shenzhen}
rm -rf "$out"
mkdir -p "$out"
say() { printf '\n== %s\n' "$*" >&2; }

model=${MODEL:-}
if [ -z "$model" ]; then
  say "encoder: cx-model init --preset tiny, input 224 x 224 (a 16 x 16 patch grid)"
  cx-model init --preset tiny --seed 0 "$out/encoder"
  sed 's/"shortest_edge": 112/"shortest_edge": 224/; s/"height": 112/"height": 224/; s/"width": 112/"width": 224/' \
    "$out/encoder/preprocessor_config.json" > "$out/pp.json"
  mv "$out/pp.json" "$out/encoder/preprocessor_config.json"
  model=$out/encoder
fi

say "ingest: images with their masks binarised at 128; 5 to train, 3 to test"
set -- "$samples"/images/*.png
ingest() { cx-ingest --masks "$samples/masks" --mask-threshold 128 --mask-classes lung --size 256 -q "$@"; }
ingest "$1" "$2" "$3" "$4" "$5" | cx-embed --model "$model" --emit patch4 -q > "$out/train.cx"
shift 5
ingest "$@" | cx-embed --model "$model" --emit patch4 --keep-image -q > "$out/test.cx"

say "a conv decoder on the last 4 blocks' tokens"
cx-segment train "$out/train.cx" --feature patch4 --head conv --hidden 64 --epochs 40 --stride 4 -o "$out/head"
cx-segment predict "$out/head" "$out/test.cx" -o "$out/pred.cx" --rle "$out/pred.csv" --png-dir "$out/masks" \
  --overlay "$out/overlays"

say "Dice, IoU, HD95 (pixels of the 256-px images) on the 3 test images"
cx-eval seg --bootstrap 200 "$out/test.cx" "$out/pred.cx"
say "done: label maps in $out/masks, CheXmask RLE in $out/pred.csv, overlays in $out/overlays"
