#!/bin/sh
# bench/pretrain/evidence.sh: does the tiny recipe learn? On 2 CPU cores: pretrain on unlabelled
# phantoms, then compare the encoder at its initialisation (the same run at step 0) with the pretrained
# teacher on held-out phantoms: a linear probe (cx-classify, AUROC per finding, paired bootstrap of the
# difference), a segmentation decoder and a linear segmentation probe (cx-segment, Dice). Prints the loss at the start and the end of
# pretraining, the wall time of each step, and the cx-eval tables.
#
#   sh bench/pretrain/evidence.sh [BUILD]
#   environment: PRETRAIN (600 phantoms), PROBE (300 labelled phantoms to train the probes on),
#                DRAWS (3: independent draws of PROBE labelled phantoms for the linear probe; a probe
#                on a few hundred labels moves by a few hundredths of AUROC from draw to draw),
#                TEST (1000 held-out phantoms to score them on), SIZE (128), THREADS (2),
#                EPOCHS (default: the tiny recipe's), OUT (BUILD/pretrain-evidence)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
[ -d "$build" ] || build=$root/$build
build=$(cd "$build" && pwd)
PATH=$build/bin:$PATH
out=${OUT:-$build/pretrain-evidence}
threads=${THREADS:-2}
size=${SIZE:-128}
n_pre=${PRETRAIN:-600}
n_probe=${PROBE:-300}
n_test=${TEST:-1000}
draws=${DRAWS:-3}
epochs=${EPOCHS:-}   # empty: the recipe's
rm -rf "$out"
mkdir -p "$out"
step() {  # label command...
  label=$1; shift
  t0=$(date +%s.%N)
  "$@"
  printf '%-58s %7.1f s\n' "$label" "$(echo "$(date +%s.%N) $t0" | awk '{print $1 - $2}')" >&2
}

step "phantoms: $n_pre to pretrain on, $n_probe to train probes on, $n_test to score them on" sh -c "
  cx-phantom -q -n $n_pre --size $size --seed 101 -o '$out/pre.cx' &&
  cx-phantom -q -n $n_probe --size $size --seed 102 -o '$out/train.cx' &&
  cx-phantom -q -n $n_test --size $size --seed 103 -o '$out/test.cx'"
step "the encoder at its initialisation (--max-steps 0)" \
  cx-pretrain train -q --threads "$threads" --recipe tiny ${epochs:+optim.epochs=$epochs} -o "$out/run0" --max-steps 0 "$out/pre.cx"
step "cx-pretrain train --recipe tiny ${epochs:+optim.epochs=$epochs}" \
  cx-pretrain train -q --threads "$threads" --recipe tiny ${epochs:+optim.epochs=$epochs} -o "$out/run" "$out/pre.cx"
cx-pretrain export "$out/run0" -o "$out/enc0"
cx-pretrain export "$out/run" -o "$out/enc"
awk -F'\t' 'function row() { printf "  step %4d  loss %.4f  (dino local %.4f global %.4f koleo %.4f ibot %.4f)  %.1f images/s\n", $1, $3, $4, $5, $6, $7, $14 }
  NR == 2 || (NR > 1 && NR % 200 == 1) { row(); shown = NR } END { if (NR != shown) row() }' "$out/run/log.tsv" >&2

for e in enc0 enc; do
  step "embed with $e (cx5, patch, patch4)" sh -c "
    cx-embed -q --threads $threads --model '$out/$e' --emit cx5,patch,patch4 -o '$out/train.$e.cx' '$out/train.cx' &&
    cx-embed -q --threads $threads --model '$out/$e' --emit cx5,patch,patch4 --keep-image -o '$out/test.$e.cx' '$out/test.cx'"
  step "segmentation decoder ($e)" sh -c "
    cx-segment train -q '$out/train.$e.cx' --feature patch4 --head conv --hidden 64 --epochs 15 -o '$out/seg.$e' &&
    cx-segment predict -q '$out/seg.$e' '$out/test.$e.cx' -o '$out/seg.$e.cx'"
  # DINOv2's linear segmentation protocol: a 1x1 convolution on the frozen last-layer patch tokens,
  # where the encoder's features, not the decoder, have to carry the masks.
  step "segmentation linear probe ($e)" sh -c "
    cx-segment train -q '$out/train.$e.cx' --feature patch --head linear --epochs 15 -o '$out/segl.$e' &&
    cx-segment predict -q '$out/segl.$e' '$out/test.$e.cx' -o '$out/segl.$e.cx'"
done

# The linear probe on each draw of labelled phantoms (draw 1 is train.cx, which the segmentation
# heads above were trained on), scored on the same held-out phantoms.
i=1
while [ "$i" -le "$draws" ]; do
  tr=$out/train
  if [ "$i" -gt 1 ]; then
    tr=$out/train$i
    cx-phantom -q -n "$n_probe" --size "$size" --seed $((100 + 2 * i)) -o "$tr.cx"
  fi
  for e in enc0 enc; do
    step "linear probe ($e, draw $i of $n_probe labelled phantoms)" sh -c "
      { [ -f '$tr.$e.cx' ] || cx-embed -q --threads $threads --model '$out/$e' --emit cx5 -o '$tr.$e.cx' '$tr.cx'; } &&
      cx-classify train -q '$tr.$e.cx' --feature cx5 -o '$out/head$i.$e' &&
      cx-classify predict -q '$out/head$i.$e' '$out/test.$e.cx' -o '$out/pred$i.$e.tsv'"
  done
  cx-eval auroc --paired "$out/pred$i.enc.tsv" "$out/pred$i.enc0.tsv" > "$out/paired$i.tsv"
  i=$((i + 1))
done

echo "== AUROC, initialisation (draw 1)"; cx-eval auroc "$out/pred1.enc0.tsv"
echo "== AUROC, pretrained (draw 1)"; cx-eval auroc "$out/pred1.enc.tsv"
echo "== AUROC, pretrained - initialisation (draw 1, paired bootstrap)"; cat "$out/paired1.tsv"
echo "== macro AUROC of each draw: initialisation, pretrained, difference [95% CI], p"
i=1
while [ "$i" -le "$draws" ]; do
  awk -F'\t' -v i="$i" '$2 == "macro" { printf "  draw %d: %.3f  %.3f  %+.3f [%+.3f, %+.3f]  p %s\n", i, $6, $5, $7, $9, $10, $11 }' \
    "$out/paired$i.tsv"
  i=$((i + 1))
done
echo "== Dice, initialisation"; cx-eval dice "$out/test.cx" "$out/seg.enc0.cx"
echo "== Dice, pretrained"; cx-eval dice "$out/test.cx" "$out/seg.enc.cx"
echo "== Dice of the linear probe, initialisation"; cx-eval dice "$out/test.cx" "$out/segl.enc0.cx"
echo "== Dice of the linear probe, pretrained"; cx-eval dice "$out/test.cx" "$out/segl.enc.cx"
