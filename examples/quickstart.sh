#!/bin/sh
# The whole toolkit end to end on the embedded default data (what `make demo` runs), on the CPU in a
# few minutes: phantoms and the real samples -> cx-ingest -> a short `tiny` pretraining (cx-pretrain)
# -> embeddings (cx-embed) -> a classification probe (cx-classify), a segmentation decoder
# (cx-segment) and a report decoder (cx-report) -> cx-eval with bootstrap CIs -> one results table
# laid out like the CXformer paper's (task, metric, median [95% CI]) and pictures in demo-out/: ROC
# curves, mask overlays, the pretraining loss curve.
# Each step prints one line: what it did and how long it took. Everything else goes to demo-out/log.
# The encoder is pretrained here for a few dozen steps only (no weights can be downloaded): the
# figures show the pipeline working, not CXformer's accuracy.
# Usage: sh examples/quickstart.sh [BUILD_DIR]   (environment: CX_DEMO_DIR (demo-out), CX_SAMPLES,
#        CX_DEMO_STEPS (pretraining steps, 200), CX_THREADS)
set -eu
build=${1:-build}
bin=$(cd "$build/bin" && pwd)
PATH="$bin:$PATH"
export PATH
here=$(cd "$(dirname "$0")" && pwd)
out=${CX_DEMO_DIR:-demo-out}
steps=${CX_DEMO_STEPS:-200}
samples=${CX_SAMPLES:-$here/../../shared/samples}
rm -rf "$out"
mkdir -p "$out"
log=$out/log
: > "$log"
t_all=$(date +%s)

# step "what it did" command...: runs the command with its chatter in the log, then one line.
step() {
  what=$1
  shift
  t0=$(date +%s)
  if ! "$@" >> "$log" 2>&1; then
    echo "quickstart: failed: $what (see $log)" >&2
    tail -5 "$log" >&2
    exit 1
  fi
  printf '%-78s %4ss\n' "$what" "$(($(date +%s) - t0))"
}

phantoms() {
  cx-phantom -n 300 --size 112 --seed 1 --p-cardiomegaly 0.4 -q -o "$out/train.cx"
  cx-phantom -n 60 --size 112 --seed 2 --p-cardiomegaly 0.4 -q -o "$out/val.cx"
  cx-phantom -n 100 --size 112 --seed 3 --p-cardiomegaly 0.4 -q -o "$out/test.cx"
}
step "phantoms: 300 training, 60 validation, 100 test (findings, lung/heart masks, reports)" phantoms

if [ -d "$samples" ]; then
  real() {
    set -- "$samples"/nih/*.png "$samples"/siim/*.dcm "$samples"/nema/*.dcm
    ls "$samples"/shenzhen/images/* > /dev/null 2>&1 && set -- "$@" "$samples"/shenzhen/images/*
    cx-ingest --size 112 --skip-bad -o "$out/samples.cx" "$@" || [ $? -eq 3 ]
  }
  step "real radiographs (NIH PNG, SIIM JPEG DICOM, JPEG 2000 CR, Shenzhen) -> cx-ingest" real
  n_real=$(tar tf "$out/samples.cx" | grep -c '\.png$' || true)
  pretrain_inputs="$out/train.cx $out/samples.cx"
else
  echo "quickstart: no samples at $samples (set CX_SAMPLES): phantoms only"
  n_real=0
  pretrain_inputs="$out/train.cx"
fi

# shellcheck disable=SC2086
step "pretraining: cx-pretrain --recipe tiny, $steps steps on phantoms + $n_real real images" \
  cx-pretrain train --recipe tiny --max-steps "$steps" -q -o "$out/run" $pretrain_inputs
step "export: the teacher as a Hugging Face Dinov2WithRegistersModel folder" \
  cx-pretrain export "$out/run" -o "$out/encoder"

embed() {
  for s in train val test; do
    cx-embed --model "$out/encoder" --emit cls,cx5,patch,patch4,reg $([ $s = test ] && echo --keep-image) -q \
      -o "$out/$s.emb.cx" "$out/$s.cx"
  done
  if [ -f "$out/samples.cx" ]; then cx-embed --model "$out/encoder" --emit cls -q -o "$out/samples.emb.cx" "$out/samples.cx"; fi
}
step "embeddings: cls, cx5, patch, patch4 and register tokens of every image" embed

classify() {
  cx-classify train "$out/train.emb.cx" --val "$out/val.emb.cx" --labels Cardiomegaly,Effusion,Nodule,Pneumothorax -q -o "$out/head"
  cx-classify predict "$out/head" "$out/test.emb.cx" -q -o "$out/test.pred.tsv"
  cx-eval auroc --bootstrap 500 --plot "$out/roc.svg" -q -o "$out/auroc.tsv" "$out/test.pred.tsv"
}
step "classification: linear probe on cx5 -> AUROC, 500 bootstrap resamples, ROC curves" classify

segment() {
  cx-segment train "$out/train.emb.cx" --val "$out/val.emb.cx" --feature patch4 --head conv --hidden 64 --epochs 15 --stride 4 \
    -q -o "$out/seghead"
  cx-segment predict "$out/seghead" "$out/test.emb.cx" --overlay "$out/overlays" -q -o "$out/test.seg.cx"
  cx-eval dice --group lung=1,2 --bootstrap 500 -q -o "$out/dice.tsv" "$out/test.cx" "$out/test.seg.cx"
}
step "segmentation: conv decoder on patch4 -> Dice (lung, heart), overlays" segment

report() {
  cx-report train --d-model 96 --layers 2 --heads 4 --ffn 256 --epochs 12 --batch 16 --lr 1e-3 --vocab 400 \
    --val "$out/val.emb.cx" -q -o "$out/decoder" "$out/train.emb.cx"
  cx-report generate "$out/decoder" "$out/test.emb.cx" -q -o "$out/generated.tsv"
  cx-report references "$out/test.emb.cx" -q -o "$out/references.tsv"
  cx-eval report --bootstrap 500 -q -o "$out/report.tsv" "$out/references.tsv" "$out/generated.tsv"
}
step "reports: small decoder on patch + register tokens -> BLEU, ROUGE-L, CheXpert F1" report

# The pretraining loss as SVG: log.tsv's step and loss columns as a polyline.
loss_svg() {
  awk -F '\t' '
    BEGIN { n = 0 }
    NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    { s[n] = $(c["step"]) + 0; l[n] = $(c["loss"]) + 0; if (n == 0 || l[n] > hi) hi = l[n]; if (n == 0 || l[n] < lo) lo = l[n]; n++ }
    END {
      if (n < 2) exit 1
      w = 640; h = 360; m = 50; if (hi == lo) hi = lo + 1
      printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", w, h
      printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
      printf "<text x=\"%d\" y=\"20\">cx-pretrain: total loss per step (DINO + iBOT + KoLeo)</text>\n", m
      printf "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", m, h - m, w - 10, h - m
      printf "<line x1=\"%d\" y1=\"30\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", m, m, h - m
      printf "<text x=\"%d\" y=\"%d\">step %d</text><text x=\"5\" y=\"40\">%.2f</text><text x=\"5\" y=\"%d\">%.2f</text>\n", w - 80, h - m + 20, s[n-1], hi, h - m, lo
      printf "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\""
      for (i = 0; i < n; i++) printf "%.1f,%.1f ", m + (w - 10 - m) * (s[i] - s[0]) / (s[n-1] - s[0] + (s[n-1] == s[0])), 30 + (h - m - 30) * (hi - l[i]) / (hi - lo)
      printf "\"/>\n</svg>\n"
    }' "$out/run/log.tsv" > "$out/pretrain-loss.svg.tmp" && mv "$out/pretrain-loss.svg.tmp" "$out/pretrain-loss.svg"
}
step "pictures: ROC curves, mask overlays, the pretraining loss curve (SVG)" loss_svg

# One table, as the paper lays its results out: task, metric, median [95% CI].
{
  printf '\n%-16s %-34s %s\n' task metric "median [95% CI]"
  printf '%-16s %-34s %s\n' ---------------- ---------------------------------- ------------------------
  awk -F '\t' 'NR > 1 { printf "%-16s %-34s %.3f [%.3f, %.3f]\n", "classification", "AUROC " $2, $6, $7, $8 }' "$out/auroc.tsv"
  awk -F '\t' 'NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
    $c["metric"] == "dice" { printf "%-16s %-34s %.3f [%.3f, %.3f]\n", "segmentation", "Dice " $c["label"], $c["median"], $c["ci_low"], $c["ci_high"] }' "$out/dice.tsv"
  awk -F '\t' '$1 == "bleu-4" || $1 == "rouge-l" || ($1 == "chexpert-f1" && ($2 == "macro" || $2 == "micro")) {
    name = $1 == "chexpert-f1" ? "CheXpert F1 (" $2 ")" : toupper($1)
    printf "%-16s %-34s %.3f [%.3f, %.3f]\n", "report", name, $6, $7, $8 }' "$out/report.tsv"
} | tee "$out/results.txt"
printf '\npictures: %s/roc.svg, %s/overlays/ (%s images), %s/pretrain-loss.svg; all outputs in %s (%ss in all)\n' \
  "$out" "$out" "$(ls "$out/overlays" | wc -l)" "$out" "$out" "$(($(date +%s) - t_all))"
