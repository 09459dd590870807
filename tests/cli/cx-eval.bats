#!/usr/bin/env bats
# cx-eval: usage, '-', each exit code, bad inputs named, >/dev/full, numbers against scikit-learn and
# NLTK on small tables, masks from streams and folders, and the real IU reports end to end.
# Self-contained (PATH must hold build/bin; ctest sets it, by hand: PATH=$PWD/build-eval/bin:$PATH).

bats_require_minimum_version 1.5.0
PY=/usr/bin/python3

setup() {
  SRC=${CX_SOURCE:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
  SHARED=${CX_SHARED:-$SRC/../shared}
  T=$BATS_TEST_TMPDIR
  # 12 records, two labels; Effusion has a blank and an uncertain cell; scores with ties.
  printf 'key\tEdema\tEdema.score\tEffusion\tEffusion.score\n' > "$T/one.tsv"
  i=0
  for row in "1 0.9 1 0.8" "0 0.1 0 0.3" "1 0.7 0 0.3" "0 0.7 1 0.9" "1 0.4 -1 0.5" "0 0.2 0 0.2" \
             "1 0.9 1 0.6" "0 0.5 0 0.6" "1 0.6 X 0.1" "0 0.3 1 0.7" "1 0.8 0 0.4" "0 0.6 0 0.35"; do
    set -- $row
    e=$3; [ "$e" = X ] && e=""
    printf 'k%02d\t%s\t%s\t%s\t%s\n' "$i" "$1" "$2" "$e" "$4" >> "$T/one.tsv"
    i=$((i + 1))
  done
  cut -f1,2,4 "$T/one.tsv" > "$T/truth.tsv"
  # Separate prediction table: plain label names hold the scores, rows in another order.
  { printf 'key\tEdema\tEffusion\n'; tail -n +2 "$T/one.tsv" | cut -f1,3,5 | sort -r; } > "$T/pred.tsv"
}

have_sklearn() { "$PY" -c 'import sklearn' 2>/dev/null || skip "no scikit-learn under $PY"; }

@test "--help and --version exit 0; a missing or unknown metric is a usage error (exit 2)" {
  run cx-eval --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"auroc"* && "$output" == *"chexpert-f1"* && "$output" == *"Exit status"* ]]
  run cx-eval --version
  [ "$status" -eq 0 ]
  [[ "$output" == cx-eval\ cx\ * ]]
  run cx-eval
  [ "$status" -eq 2 ]
  run cx-eval roc-thing "$T/one.tsv"
  [ "$status" -eq 2 ]
  [[ "$output" == *"cx-eval: unknown metric 'roc-thing'"* ]]
  run cx-eval auroc --ci 120 "$T/one.tsv"
  [ "$status" -eq 2 ]
}

@test "a terminal on stdin and no input prints usage and exits 2" {
  command -v script >/dev/null || skip "no script(1) to give cx-eval a terminal"
  run script -qec "cx-eval auroc" /dev/null
  [ "$status" -eq 2 ]
  [[ "$output" == *"no input given and standard input is a terminal"* ]]
}

@test "auroc per label and macro match scikit-learn; '-' reads standard input" {
  have_sklearn
  run cx-eval auroc --json --bootstrap 0 "$T/one.tsv"
  [ "$status" -eq 0 ]
  echo "$output" > "$T/out.json"
  "$PY" - "$T/one.tsv" "$T/out.json" <<'PY'
import csv, json, sys
from sklearn.metrics import roc_auc_score
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
got = {r["label"]: r for r in json.load(open(sys.argv[2]))["rows"]}
want = {}
for label in ("Edema", "Effusion"):
    keep = [r for r in rows if r[label] in ("0", "1")]  # blank and -1 excluded (--uncertain ignore)
    want[label] = roc_auc_score([int(r[label]) for r in keep], [float(r[label + ".score"]) for r in keep])
    assert got[label]["n"] == len(keep), (label, got[label]["n"], len(keep))
    assert abs(got[label]["estimate"] - want[label]) < 1e-12, (label, got[label], want[label])
assert abs(got["macro"]["estimate"] - sum(want.values()) / 2) < 1e-12
PY
  run cx-eval auroc --bootstrap 50 "$T/one.tsv"
  expected=$output
  run sh -c "cat '$T/one.tsv' | cx-eval auroc --bootstrap 50 -"
  [ "$status" -eq 0 ]
  [ "$output" = "$expected" ]
  run sh -c "cat '$T/one.tsv' | cx-eval auroc --bootstrap 50"
  [ "$output" = "$expected" ]
}

@test "TSV when piped: header, one row per label and the macro, point estimate inside its CI" {
  run cx-eval auroc "$T/one.tsv"
  [ "$status" -eq 0 ]
  [ "${lines[0]}" = "$(printf 'metric\tlabel\tn\tpositives\testimate\tmedian\tci_low\tci_high\tresamples\tskipped')" ]
  [ "${#lines[@]}" -eq 4 ]
  echo "$output" | awk -F'\t' 'NR > 1 { if (!($7 <= $5 && $5 <= $8) || $9 + $10 != 500) exit 1 }'
}

@test "--truth/--pred joined on the key give the same numbers as the one-table form" {
  run cx-eval cls --seed 4 "$T/one.tsv"
  [ "$status" -eq 0 ]
  one=$output
  run cx-eval cls --seed 4 --truth "$T/truth.tsv" --pred "$T/pred.tsv"
  [ "$status" -eq 0 ]
  [ "$output" = "$one" ]
  run cx-eval cls --seed 4 "$T/truth.tsv" "$T/pred.tsv"
  [ "$output" = "$one" ]
}

@test "same seed, same bytes whatever the thread count; another seed, other intervals" {
  a=$(cx-eval auroc --seed 7 --threads 1 "$T/one.tsv")
  b=$(cx-eval auroc --seed 7 --threads 2 "$T/one.tsv")
  c=$(cx-eval auroc --seed 8 --threads 2 "$T/one.tsv")
  [ "$a" = "$b" ]
  [ "$a" != "$c" ]
}

@test "missing keys are named (exit 1); --skip-bad names each, scores the rest (exit 3)" {
  grep -v -e '^k03' -e '^k07' "$T/pred.tsv" > "$T/pred_missing.tsv"
  run cx-eval auroc --truth "$T/truth.tsv" --pred "$T/pred_missing.tsv"
  [ "$status" -eq 1 ]
  [[ "$output" == *"pred_missing.tsv: no row for 2 keys of $T/truth.tsv: k03, k07"* ]]
  run --separate-stderr cx-eval auroc --skip-bad --truth "$T/truth.tsv" --pred "$T/pred_missing.tsv"
  [ "$status" -eq 3 ]
  [[ "$stderr" == *"no row for key 'k03'"*"skipped"* ]]
  [[ "$stderr" == *"no row for key 'k07'"*"skipped"* ]]
  [ "$(echo "$output" | awk -F'\t' '$2 == "Edema" { print $3 }')" = 10 ]
}

@test "-q silences chatter, never a skipped input: each is named on stderr (exit 3)" {
  grep -v -e '^k03' -e '^k07' "$T/pred.tsv" > "$T/pred_missing.tsv"
  run --separate-stderr cx-eval auroc -q --skip-bad --truth "$T/truth.tsv" --pred "$T/pred_missing.tsv"
  [ "$status" -eq 3 ]
  [[ "$stderr" == *"cx-eval: $T/pred_missing.tsv: no row for key 'k03' of $T/truth.tsv (skipped)"* ]]
  [[ "$stderr" == *"cx-eval: $T/pred_missing.tsv: no row for key 'k07' of $T/truth.tsv (skipped)"* ]]
  sed 's/^k05\t0\t0.2/k05\t0\tnan/' "$T/one.tsv" > "$T/nan.tsv"
  run --separate-stderr cx-eval auroc -q --skip-bad "$T/nan.tsv"
  [ "$status" -eq 3 ]
  [[ "$stderr" == *"nan.tsv: line 7: column Edema.score: NaN score refused"*"(skipped)"* ]]
}

@test "a NaN score is refused by name (exit 1); with --skip-bad that cell is skipped (exit 3)" {
  sed 's/^k05\t0\t0.2/k05\t0\tnan/' "$T/one.tsv" > "$T/nan.tsv"
  run cx-eval auroc "$T/nan.tsv"
  [ "$status" -eq 1 ]
  [[ "$output" == *"nan.tsv: line 7: column Edema.score: NaN score refused"* ]]
  run cx-eval auroc --skip-bad "$T/nan.tsv"
  [ "$status" -eq 3 ]
}

@test "a label with one class is reported as NA with a warning, not a crash" {
  awk -F'\t' 'BEGIN { OFS = "\t" } NR > 1 { $2 = 1 } { print }' "$T/one.tsv" > "$T/oneclass.tsv"
  run --separate-stderr cx-eval auroc "$T/oneclass.tsv"
  [ "$status" -eq 0 ]
  [[ "$stderr" == *"Edema: one class only (12 positive, 0 negative)"* ]]
  [ "$(echo "$output" | awk -F'\t' '$2 == "Edema" { print $5, $10 }')" = "NA 500" ]
  # The macro is the mean over the labels that are defined: here Effusion alone.
  [ "$(echo "$output" | awk -F'\t' '$2 == "macro" { print $5 }')" = "$(echo "$output" | awk -F'\t' '$2 == "Effusion" { print $5 }')" ]
}

@test "--uncertain ones and zeros code -1 instead of leaving it out" {
  n_ignore=$(cx-eval auroc --bootstrap 0 "$T/one.tsv" | awk -F'\t' '$2 == "Effusion" { print $3, $4 }')
  n_ones=$(cx-eval auroc --bootstrap 0 --uncertain ones "$T/one.tsv" | awk -F'\t' '$2 == "Effusion" { print $3, $4 }')
  n_zeros=$(cx-eval auroc --bootstrap 0 --uncertain zeros "$T/one.tsv" | awk -F'\t' '$2 == "Effusion" { print $3, $4 }')
  [ "$n_ignore" = "10 4" ]
  [ "$n_ones" = "11 5" ]
  [ "$n_zeros" = "11 4" ]
}

@test "threshold metrics at Youden's J name the threshold" {
  run cx-eval threshold --threshold youden --bootstrap 20 "$T/one.tsv"
  [ "$status" -eq 0 ]
  [[ "${lines[0]}" == *$'\tthreshold' ]]
  # Edema: J = TPR - FPR is 0.5 first at threshold 0.8 (3 of 6 positives at or above it, no negative).
  [ "$(echo "$output" | awk -F'\t' '$1 == "sensitivity" && $2 == "Edema" { print $5, $11 }')" = "0.500000 0.800000" ]
  [ "$(echo "$output" | awk -F'\t' '$1 == "specificity" && $2 == "Edema" { print $5 }')" = "1.000000" ]
  run cx-eval f1 --threshold 0.5 --bootstrap 0 "$T/one.tsv"
  [ "$(echo "$output" | awk -F'\t' 'NR > 1 { print $1 }' | sort -u)" = f1 ]
  run cx-eval f1 --threshold half "$T/one.tsv"
  [ "$status" -eq 2 ]
}

@test "--paired: the difference of two models, its CI and p-value" {
  awk -F'\t' 'BEGIN { OFS = "\t"; srand(3) } NR == 1 { print; next } { $3 = rand(); $5 = rand(); print }' "$T/one.tsv" > "$T/noise.tsv"
  run cx-eval auroc --paired "$T/one.tsv" "$T/noise.tsv"
  [ "$status" -eq 0 ]
  [[ "${lines[0]}" == *$'\testimate_a\testimate_b\tdifference\t'*$'\tp_value\t'* ]]
  run cx-eval auroc --json --paired "$T/one.tsv" "$T/one.tsv"
  [ "$status" -eq 0 ]
  echo "$output" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
assert d["paired"] is True
for r in d["rows"]:
    assert r["estimate"] == 0 and r["p_value"] == 1.0, r'
}

@test "--plot writes an SVG with a band and a curve per label; .png needs a rasteriser" {
  run cx-eval auroc --bootstrap 50 --plot "$T/roc.svg" "$T/one.tsv"
  [ "$status" -eq 0 ]
  if command -v xmllint >/dev/null; then xmllint --noout "$T/roc.svg"; fi
  [ "$(grep -c '<polygon' "$T/roc.svg")" -eq 2 ]
  [ "$(grep -c '<polyline' "$T/roc.svg")" -eq 2 ]
  grep -q '>Effusion<' "$T/roc.svg"
  run cx-eval auroc --bootstrap 20 --plot "$T/roc.png" "$T/one.tsv"
  if [ "$status" -eq 0 ]; then
    [ "$(head -c 4 "$T/roc.png" | od -An -c | tr -d ' ')" = "211PNG" ]
  else
    [ "$status" -eq 1 ]
    [[ "$output" == *"no SVG rasteriser found"* ]]
    [ ! -e "$T/roc.png" ]
  fi
  run cx-eval dice --plot "$T/x.svg" "$T/one.tsv" "$T/one.tsv"
  [ "$status" -eq 2 ]
}

@test "--plot .png: rsvg-convert draws it; without one on PATH, or when it fails, no file is left" {
  bin=$(dirname "$(command -v cx-eval)")
  mkdir -p "$T/fakebin" "$T/plots"
  run env PATH="$bin" cx-eval auroc --bootstrap 10 --plot "$T/plots/roc.png" "$T/one.tsv"
  [ "$status" -eq 1 ]
  [[ "$output" == *"roc.png: no SVG rasteriser found (rsvg-convert)"* ]]
  printf '#!/bin/sh\nexit 1\n' > "$T/fakebin/rsvg-convert"
  chmod +x "$T/fakebin/rsvg-convert"
  run env PATH="$T/fakebin:$bin" cx-eval auroc --bootstrap 10 --plot "$T/plots/roc.png" "$T/one.tsv"
  [ "$status" -eq 1 ]
  [[ "$output" == *"roc.png: rsvg-convert failed to rasterise the plot"* ]]
  [ -z "$(ls -A "$T/plots")" ]
  command -v rsvg-convert >/dev/null || skip "no rsvg-convert"
  run cx-eval auroc --bootstrap 10 --plot "$T/plots/roc.png" "$T/one.tsv"
  [ "$status" -eq 0 ]
  [ "$(head -c 4 "$T/plots/roc.png" | od -An -c | tr -d ' ')" = "211PNG" ]
  [ "$(ls -A "$T/plots")" = roc.png ]
}

@test "an aligned table on a terminal, JSON on request" {
  command -v script >/dev/null || skip "no script(1) to give cx-eval a terminal"
  run script -qec "cx-eval auroc --bootstrap 30 '$T/one.tsv'" /dev/null
  [ "$status" -eq 0 ]
  [[ "$output" == *"30 bootstrap resamples (seed 0), percentile 95% CI"* ]]
  [[ "$output" == *"95% CI"* && "$output" == *"["*", "*"]"* ]]
  run cx-eval auroc --json --bootstrap 10 "$T/one.tsv"
  echo "$output" | "$PY" -c 'import json, sys; d = json.load(sys.stdin); assert d["bootstrap"]["resamples"] == 10 and len(d["rows"]) == 3'
}

@test "writing to a full disk fails with exit 1; -o writes a file" {
  [ -w /dev/full ] || skip "no /dev/full"
  run sh -c "cx-eval auroc '$T/one.tsv' > /dev/full"
  [ "$status" -eq 1 ]
  [[ "$output" == *"write error"* ]]
  run cx-eval auroc -o "$T/m.tsv" "$T/one.tsv"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  [ "$(wc -l < "$T/m.tsv")" -eq 4 ]
}

@test "dice/iou/hd95 from two streams: class names from the header, numbers by hand" {
  "$PY" - "$SRC/tests" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from eval_reference import write_stream
t = sys.argv[2]
classes = ["background", "lung", "heart"]
# Record a: lung 4 px truth, 3 px predicted, 3 shared -> Dice 6/7, IoU 3/4.
# Record b: heart 2 px truth, 1 px predicted, 1 shared -> Dice 2/3, IoU 1/2; lung absent in both.
write_stream(t + "/truth.cx", [("a", [".11.", ".11."]), ("b", ["22..", "...."])], classes)
write_stream(t + "/pred.cx", [("a", ["..1.", ".11."]), ("b", ["2...", "...."])], classes)
write_stream(t + "/cut.cx", [("a", [".11.", ".11."])], classes, end=False)
# Class names from the records' json instead of the header (no "background" entry: value 1 is "lung").
write_stream(t + "/truth_json.cx", [("a", [".11.", ".11."]), ("b", ["22..", "...."])], json_classes=["lung", "heart"])
PY
  run cx-eval seg --bootstrap 0 "$T/truth.cx" "$T/pred.cx"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | awk -F'\t' '$1 == "dice" { print $2, $5 }' | tr '\n' ' ')" = "lung 0.857143 heart 0.666667 mean 0.761905 " ]
  [ "$(echo "$output" | awk -F'\t' '$1 == "iou" { print $2, $5 }' | tr '\n' ' ')" = "lung 0.750000 heart 0.500000 mean 0.625000 " ]
  # hd95, lung of record a: every pixel of both masks is boundary; truth -> pred distances 1,0,0,0
  # (the unpredicted pixel is 1 away), pred -> truth 0,0,0; numpy's 95th percentile of the seven
  # sorted values {0,0,0,0,0,0,1} sits at index 5.7: 0.7.
  [ "$(echo "$output" | awk -F'\t' '$1 == "hd95" && $2 == "lung" { print $5 }')" = "0.700000" ]
  run cx-eval dice --bootstrap 0 "$T/truth_json.cx" "$T/pred.cx"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | awk -F'\t' 'NR > 1 { print $2 }' | tr '\n' ' ')" = "lung heart mean " ]
  # The predictions from standard input, the truth named by --truth.
  run sh -c "cx-eval dice --bootstrap 0 --truth '$T/truth.cx' < '$T/pred.cx'"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | awk -F'\t' '$2 == "mean" { print $5 }')" = "0.761905" ]
  run cx-eval dice "$T/truth.cx" "$T/cut.cx"
  [ "$status" -eq 1 ]
  [[ "$output" == *"cut.cx: truncated stream"* ]]
}

@test "dice from folders of PNG label maps; a missing mask is named (exit 1, exit 3 with --skip-bad)" {
  mkdir -p "$T/gt" "$T/pr"
  "$PY" - "$SRC/tests" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from eval_reference import write_label_map
t = sys.argv[2]
write_label_map(t + "/gt/x1.png", ["111.", "111.", "...."])
write_label_map(t + "/pr/x1.png", [".11.", ".11.", ".11."])   # 4 of 6 shared: Dice 8/12
write_label_map(t + "/gt/x2.png", ["1...", "....", "...."])
PY
  run cx-eval dice --classes lung --bootstrap 0 "$T/gt" "$T/pr"
  [ "$status" -eq 1 ]
  [[ "$output" == *"pr: no row for 1 key of $T/gt: x2"* ]]
  run cx-eval dice --classes lung --bootstrap 0 --skip-bad "$T/gt" "$T/pr"
  [ "$status" -eq 3 ]
  [ "$(echo "$output" | awk -F'\t' '$2 == "lung" { print $5 }')" = "0.666667" ]
}

@test "--group scores left and right lung as one lung (CXformer's table: Lung, Heart)" {
  mkdir -p "$T/gt" "$T/pr"
  "$PY" - "$SRC/tests" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
from eval_reference import write_label_map
t = sys.argv[2]
# left lung 1, right lung 2, heart 3. Truth lungs: 4 + 2 px; predicted 1s where the truth has 2s and
# the other way round: per lung Dice 0, as one lung 6 px shared of 6 + 6: Dice 1. Heart 2 of 2 + 3.
write_label_map(t + "/gt/a.png", ["11.22", "11.33", "....."])
write_label_map(t + "/pr/a.png", ["22.11", "22.33", "...3."])
PY
  run cx-eval dice --classes "left lung,right lung,heart" --bootstrap 0 "$T/gt" "$T/pr"
  [ "$(echo "$output" | awk -F'	' 'NR > 1 { print $2, $5 }' | tr '
' ' ')" = "left lung 0.000000 right lung 0.000000 heart 0.800000 mean 0.266667 " ]
  run cx-eval dice --classes "left lung,right lung,heart" --group lung=1,2 --bootstrap 0 "$T/gt" "$T/pr"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | awk -F'	' 'NR > 1 { print $2, $5 }' | tr '
' ' ')" = "lung 1.000000 heart 0.800000 mean 0.900000 " ]
  run cx-eval dice --classes "left lung,right lung,heart" --group lung=1,4 "$T/gt" "$T/pr"
  [ "$status" -eq 2 ]
  [[ "$output" == *"--group lung=1,4: value 4 is not one of the classes 1..3"* ]]
  run cx-eval dice --classes "left lung,right lung" --group lung=1,2 "$T/gt" "$T/pr"
  [ "$status" -eq 1 ]
  [[ "$output" == *"value 3 is outside the classes 0..2"* ]]
}

@test "shenzhen lung masks: the real mask against itself shifted, binarized at 128" {
  m=$SHARED/samples/shenzhen/masks
  [ -d "$m" ] || skip "no shared Shenzhen masks at $m"
  mkdir -p "$T/sz_gt" "$T/sz_pr"
  "$PY" - "$m" "$T" <<'PY'
import glob, os, sys
import numpy as np
from PIL import Image
from scipy.ndimage import binary_erosion, distance_transform_edt, generate_binary_structure
files = sorted(glob.glob(sys.argv[1] + "/*.png"))[:3]
dices, hds = [], []
fp = generate_binary_structure(2, 1)
def sd(a, b):
    ab = a ^ binary_erosion(a, structure=fp); bb = b ^ binary_erosion(b, structure=fp)
    return distance_transform_edt(~bb)[ab]
for f in files:
    a = np.array(Image.open(f).convert("L"))
    b = np.roll(a, (6, -4), axis=(0, 1))
    key = os.path.basename(f).split(".")[0]
    Image.fromarray(a).save(f"{sys.argv[2]}/sz_gt/{key}.png")
    Image.fromarray(b).save(f"{sys.argv[2]}/sz_pr/{key}.png")
    x, y = a >= 128, b >= 128
    dices.append(2 * (x & y).sum() / (x.sum() + y.sum()))
    hds.append(np.percentile(np.hstack((sd(y, x), sd(x, y))), 95))
print(f"{np.mean(dices):.6f} {np.mean(hds):.6f}", file=open(sys.argv[2] + "/sz_expected", "w"))
PY
  run cx-eval seg --binarize 128 --classes lung --bootstrap 20 "$T/sz_gt" "$T/sz_pr"
  [ "$status" -eq 0 ]
  got="$(echo "$output" | awk -F'\t' '$2 == "lung" && ($1 == "dice" || $1 == "hd95") { printf "%s ", $5 }')"
  [ "$got" = "$(cat "$T/sz_expected") " ]
}

@test "bleu and rouge on two small report tables; BLEU equals NLTK's corpus_bleu on the same tokens" {
  "$PY" -c 'import nltk' 2>/dev/null || skip "no nltk under $PY"
  printf 'key\ttext\na\tThe heart size is normal. No pleural effusion or pneumothorax.\nb\tMild cardiomegaly with small bilateral effusions and vascular congestion.\nc\tRight PICC line tip in the SVC; no pneumothorax is seen.\n' > "$T/ref.tsv"
  printf 'key\ttext\nc\tRight-sided PICC with tip in the SVC. No pneumothorax.\na\tHeart size is normal. There is no pleural effusion or pneumothorax.\nb\tCardiomegaly with pulmonary vascular congestion and small bilateral pleural effusions.\n' > "$T/gen.tsv"
  run cx-eval bleu --json --bootstrap 0 "$T/ref.tsv" "$T/gen.tsv"
  [ "$status" -eq 0 ]
  echo "$output" > "$T/bleu.json"
  "$PY" - "$SRC/tests" "$T" <<'PY'
import csv, json, sys
sys.path.insert(0, sys.argv[1])
from eval_reference import coco_tokenize
from nltk.translate.bleu_score import corpus_bleu
t = sys.argv[2]
ref = {r["key"]: r["text"] for r in csv.DictReader(open(t + "/ref.tsv"), delimiter="\t")}
gen = {r["key"]: r["text"] for r in csv.DictReader(open(t + "/gen.tsv"), delimiter="\t")}
keys = list(ref)
refs = [[coco_tokenize(ref[k])] for k in keys]
hyps = [coco_tokenize(gen[k]) for k in keys]
got = {r["metric"]: r["estimate"] for r in json.load(open(t + "/bleu.json"))["rows"]}
for n in range(1, 5):
    want = corpus_bleu(refs, hyps, weights=(1.0 / n,) * n)
    # pycocoevalcap's 1e-15/1e-9 guards move BLEU by ~1e-9 relative; 1e-8 is that and no more.
    assert abs(got[f"bleu-{n}"] - want) < 1e-8, (n, got, want)
PY
  run cx-eval rouge --bootstrap 100 "$T/ref.tsv" "$T/gen.tsv"
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | awk -F'\t' 'NR > 1 { print $1, $2, $3 }')" = "rouge-l corpus 3" ]
}

@test "chexpert-f1 names the rule-based labeller; --labels-out writes its labels" {
  printf 'key\ttext\na\tSmall left pleural effusion. No pneumothorax.\nb\tNormal chest.\nc\tPneumothorax cannot be excluded.\n' > "$T/ref.tsv"
  printf 'key\ttext\na\tLeft pleural effusion.\nb\tPossible pneumonia.\nc\tNo pneumothorax.\n' > "$T/gen.tsv"
  run cx-eval chexpert-f1 --json --bootstrap 10 --labels-out "$T/labels.tsv" "$T/ref.tsv" "$T/gen.tsv"
  [ "$status" -eq 0 ]
  [[ "$output" == *'"labeller": "rule-based CheXpert-style labeller"'* ]]
  [[ "$output" != *CheXbert* ]]
  # Columns: key, source, then the 14 labels: $10 Pneumonia, $12 Pneumothorax, $13 Pleural Effusion.
  [ "$(awk -F'\t' '$1 == "a" && $2 == "truth" { print $13, $12 }' "$T/labels.tsv")" = "1 0" ]
  [ "$(awk -F'\t' '$1 == "c" && $2 == "truth" { print $12 }' "$T/labels.tsv")" = "-1" ]
  [ "$(awk -F'\t' '$1 == "b" && $2 == "pred" { print $10 }' "$T/labels.tsv")" = "-1" ]
  run cx-eval chexpert-f1 --bootstrap 0 "$T/ref.tsv" "$T/gen.tsv"
  [ "$(echo "$output" | awk -F'\t' '$2 == "Pleural Effusion" { print $5 }')" = "1.000000" ]
  # No Finding: truth b only; predicted a only (c's labels are negative) -> tp 0, fp 1, fn 1: F1 0.
  [ "$(echo "$output" | awk -F'\t' '$2 == "No Finding" { print $5 }')" = "0.000000" ]
}

@test "IU X-ray reports: FINDINGS against IMPRESSION through bleu, rouge and chexpert-f1" {
  tgz=$SHARED/samples/reports/NLMCXR_reports.tgz
  [ -f "$tgz" ] || skip "no IU reports at $tgz"
  "$PY" -c 'import nltk' 2>/dev/null || skip "no nltk under $PY"
  mkdir -p "$T/iu"
  tar -xzf "$tgz" -C "$T/iu"
  "$PY" - "$SRC/tests" "$T" <<'PY'
import glob, os, sys
sys.path.insert(0, sys.argv[1])
from eval_reference import coco_tokenize, iu_sections
t = sys.argv[2]
with open(t + "/findings.tsv", "w") as f, open(t + "/impression.tsv", "w") as g:
    f.write("key\ttext\n")
    g.write("key\ttext\n")
    for path in sorted(glob.glob(t + "/iu/*/*.xml")):
        findings, impression = iu_sections(path)
        # Generated = IMPRESSION with at least 4 tokens: for shorter ones NLTK counts an n-gram
        # denominator of 1 where pycocoevalcap counts 0, and the comparison below is with NLTK.
        if not findings or not impression or len(coco_tokenize(impression)) < 4:
            continue
        key = os.path.basename(path)[:-4]
        f.write(f"{key}\t{findings}\n")
        g.write(f"{key}\t{impression}\n")
PY
  n=$(($(wc -l < "$T/findings.tsv") - 1))
  [ "$n" -gt 1000 ]
  run cx-eval report --json --bootstrap 100 --threads 2 "$T/findings.tsv" "$T/impression.tsv"
  [ "$status" -eq 0 ]
  echo "$output" > "$T/iu.json"
  "$PY" - "$SRC/tests" "$T" "$n" <<'PY'
import csv, json, sys
sys.path.insert(0, sys.argv[1])
from eval_reference import coco_tokenize
from nltk.translate.bleu_score import corpus_bleu
t, n = sys.argv[2], int(sys.argv[3])
csv.field_size_limit(1 << 24)
ref = list(csv.DictReader(open(t + "/findings.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE))
gen = list(csv.DictReader(open(t + "/impression.tsv"), delimiter="\t", quoting=csv.QUOTE_NONE))
refs = [[coco_tokenize(r["text"])] for r in ref]
hyps = [coco_tokenize(g["text"]) for g in gen]
d = json.load(open(t + "/iu.json"))
assert d["labeller"] == "rule-based CheXpert-style labeller"
rows = {(r["metric"], r["label"]): r for r in d["rows"]}
for k in range(1, 5):
    r = rows[(f"bleu-{k}", "corpus")]
    want = corpus_bleu(refs, hyps, weights=(1.0 / k,) * k)
    assert abs(r["estimate"] - want) < 1e-8, (k, r["estimate"], want)
    assert r["n"] == n and r["ci_low"] <= r["estimate"] <= r["ci_high"]
rl = rows[("rouge-l", "corpus")]
assert 0.05 < rl["estimate"] < 0.6 and rl["ci_low"] < rl["ci_high"], rl
f1 = rows[("chexpert-f1", "macro")]
assert 0 < f1["estimate"] < 1, f1
assert len([k for k in rows if k[0] == "chexpert-f1"]) == 14 + 2  # 14 labels, micro, macro
PY
}

@test "one table: a repeated key and a header-only table are errors, not metrics (issue 08 defect 11)" {
  printf 'key\tCardiomegaly\tCardiomegaly.score\na\t1\t0.9\nb\t0\t0.2\na\t1\t0.8\nc\t1\t0.3\n' > "$T/dup.tsv"
  run -1 --separate-stderr cx-eval auroc "$T/dup.tsv"
  [ "$stderr" = "cx-eval: $T/dup.tsv: line 4: key 'a' appears twice" ]
  [ -z "$output" ]
  printf 'key\tCardiomegaly\tCardiomegaly.score\n' > "$T/empty.tsv"
  run -1 --separate-stderr cx-eval auroc "$T/empty.tsv"
  [ "$stderr" = "cx-eval: $T/empty.tsv: no rows (only a header)" ]
  run -1 --separate-stderr cx-eval auroc "$T/empty.tsv" "$T/empty.tsv"
  [ "$stderr" = "cx-eval: $T/empty.tsv: no rows (only a header)" ]
}

@test "dice: a mask of the wrong size is the first and only line on stderr (issue 08 defect 12)" {
  cx-phantom -n 2 --size 64 -o "$T/a.cx"
  cx-phantom -n 2 --size 96 --seed 5 -o "$T/b.cx"
  run -1 --separate-stderr cx-eval dice "$T/a.cx" "$T/b.cx"
  [ "${#stderr_lines[@]}" -eq 1 ]
  [ "$stderr" = "cx-eval: $T/b.cx: key 'phantom-000000': mask is 96x96, the truth is 64x64" ]
  [ -z "$output" ]
}

@test "chexpert-f1 --labels: a subset (chexpert5: the five competition labels), micro and macro over it; an unknown label is a usage error" {
  printf 'key\ttext\na\tSmall left pleural effusion. The heart is enlarged.\nb\tNormal chest.\nc\tNo pneumothorax. Atelectasis at the left base.\n' > "$T/ref.tsv"
  printf 'key\ttext\na\tLeft pleural effusion.\nb\tCardiomegaly.\nc\tPneumothorax. Left basal atelectasis.\n' > "$T/gen.tsv"
  run cx-eval chexpert-f1 --bootstrap 0 --labels chexpert5 "$T/ref.tsv" "$T/gen.tsv"
  [ "$status" -eq 0 ]
  # rows: the five labels, micro, macro (no other label, no No Finding, no Pneumothorax)
  [ "$(echo "$output" | awk -F'\t' 'NR > 1 { print $2 }' | paste -sd, -)" = "Atelectasis,Cardiomegaly,Consolidation,Edema,Pleural Effusion,micro,macro" ]
  # Cardiomegaly: truth a, predicted b -> F1 0; Pleural Effusion and Atelectasis 1; micro: tp 2, fp 1, fn 1 -> 2/3.
  [ "$(echo "$output" | awk -F'\t' '$2 == "Cardiomegaly" { print $5 }')" = "0.000000" ]
  [ "$(echo "$output" | awk -F'\t' '$2 == "Atelectasis" { print $5 }')" = "1.000000" ]
  [ "$(echo "$output" | awk -F'\t' '$2 == "micro" { print $5 }')" = "0.666667" ]
  run cx-eval chexpert-f1 --bootstrap 0 --labels "Edema,Heart" "$T/ref.tsv" "$T/gen.tsv"
  [ "$status" -eq 2 ]
  [[ "$output" == *"--labels Heart: not a label of the labeller"* ]]
}
