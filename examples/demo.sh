#!/bin/sh
# The main job on the embedded default data, end to end on the CPU in about a minute:
# synthetic chest radiographs (cx-phantom) -> a ViT encoder (a tiny random-init one: no weights
# can be downloaded here) -> embeddings (cx-embed) -> a linear probe (cx-classify) -> AUROC with
# bootstrap 95% CIs (cx-eval); patch tokens -> a lung/heart decoder (cx-segment) -> Dice with CIs.
# Real samples, when ../shared/samples is there, go through cx-ingest.
# Usage: sh examples/demo.sh [BUILD_DIR]   (make demo runs it on build/)
set -eu
build=${1:-build}
bin=$(cd "$build/bin" && pwd)
PATH="$bin:$PATH"
out=${CX_DEMO_DIR:-$build/demo}
rm -rf "$out"
mkdir -p "$out"
say() { printf '\n== %s\n' "$*" >&2; }

say "phantoms: 160 for training, 80 for testing (half with an enlarged heart)"
cx-phantom -n 160 --size 112 --seed 1 --p-cardiomegaly 0.5 -o "$out/train.cx"
cx-phantom -n 80 --size 112 --seed 2 --p-cardiomegaly 0.5 -o "$out/test.cx"
tar tvf "$out/test.cx" | head -n 6 >&2

say "encoder: cx-model init --preset tiny (4 layers, width 64, 4 registers, 112 x 112)"
cx-model init --preset tiny --seed 0 "$out/encoder"

say "embeddings: cls, CXformer's cx5 feature, and the last 4 blocks' patch tokens (patch4)"
cx-embed --model "$out/encoder" --emit cls,cx5,patch4 -o "$out/train.emb.cx" "$out/train.cx"
cx-embed --model "$out/encoder" --emit cls,cx5,patch4 --keep-image -o "$out/test.emb.cx" "$out/test.cx"

if command -v cx-classify >/dev/null 2>&1; then
  say "linear probe on cx5, predictions on the test phantoms"
  cx-classify train "$out/train.emb.cx" --feature cx5 --labels Cardiomegaly,Effusion,Nodule,Pneumothorax \
    -o "$out/head"
  cx-classify predict "$out/head" "$out/test.emb.cx" -o "$out/test.pred.tsv"
  say "AUROC per finding, bootstrap median and 95% CI (500 resamples)"
  cx-eval auroc "$out/test.pred.tsv"
else
  say "cx-classify is not built: the embeddings are in $out/*.emb.cx"
fi

if command -v cx-segment >/dev/null 2>&1; then
  say "segmentation: a conv decoder on patch4 (lungs, heart), masks and overlays for the test phantoms"
  cx-segment train "$out/train.emb.cx" --feature patch4 --head conv --hidden 64 --epochs 15 --stride 4 -o "$out/seghead"
  cx-segment predict "$out/seghead" "$out/test.emb.cx" -o "$out/test.seg.cx" --overlay "$out/overlays"
  say "Dice, IoU, HD95 per structure, bootstrap median and 95% CI (overlays in $out/overlays)"
  cx-eval seg "$out/test.cx" "$out/test.seg.cx"
  say "the same with both lungs as one structure (CXformer reports Lung and Heart): cx-eval --group lung=1,2"
  cx-eval dice --group lung=1,2 "$out/test.cx" "$out/test.seg.cx"
fi

samples=${CX_SHARED:-$(dirname "$0")/../../shared}/samples
if [ -d "$samples" ]; then
  say "real radiographs: NIH PNG, SIIM JPEG DICOM, NEMA JPEG 2000 DICOM -> cx-ingest -> cx-embed"
  cx-ingest --size 224 "$samples/nih/00000001_000.png" "$samples/siim/siim_cr_jpeg_baseline.dcm" \
    "$samples/nema/RG1_J2KI.dcm" | cx-embed --model "$out/encoder" --emit cls -o "$out/samples.emb.cx"
  tar tf "$out/samples.emb.cx" >&2
fi
say "done: outputs in $out"
