#!/bin/sh
# The default linear probe (cx-classify train: L-BFGS, L2 chosen on held-out records) against
# scikit-learn's LogisticRegression (C = 1, lbfgs) on the same standardised features, at several
# training sizes, plus the time and memory of one fit on a large synthetic stream.
#   sh bench/probe/run.sh BUILD [SIZES] [SYNTH_N]
# Phantoms embedded (cx5) by a seeded random tiny encoder (`cx-model init --preset tiny`), as issue 11
# measured it; a fixed held-out test set of 600 phantoms. Prints TSV: n, ours, sklearn, ours - sklearn.
set -eu
build=${1:-build}
sizes=${2:-"100 300 1200 3000"}
synth_n=${3:-100000}
here=$(cd "$(dirname "$0")/../.." && pwd)
PATH=$(cd "$build" && pwd)/bin:$PATH
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
threads=${THREADS:-2}
cx-model init --preset tiny --seed 7 "$T/enc" >/dev/null
# Phantoms are a pure function of (seed, index): the first n of seed 11 are the same for every n.
cx-phantom -n 600 --size 112 --seed 12 --threads "$threads" | cx-embed --model "$T/enc" --emit cx5 --threads "$threads" -o "$T/test.cx"
printf 'n\tcx-classify\tscikit-learn\tdifference\tcx-classify seconds\n'
for n in $sizes; do
  cx-phantom -n "$n" --size 112 --seed 11 --threads "$threads" | cx-embed --model "$T/enc" --emit cx5 --threads "$threads" -o "$T/train$n.cx"
  start=$(date +%s.%N)
  cx-classify train "$T/train$n.cx" --threads "$threads" -o "$T/head$n" 2>/dev/null
  end=$(date +%s.%N)
  ours=$(cx-classify predict "$T/head$n" "$T/test.cx" | cx-eval auroc --bootstrap 0 - | awk -F'\t' '$2 == "macro" { print $5 }')
  ref=$("$PY" "$here/tests/cli/helpers/sklearn_probe.py" auroc "$T/train$n.cx" "$T/test.cx" | awk -F'\t' '$1 == "macro" { print $2 }')
  awk -v n="$n" -v a="$ours" -v b="$ref" -v s="$start" -v e="$end" 'BEGIN { printf "%d\t%.4f\t%.4f\t%+.4f\t%.1f\n", n, a, b, a - b, e - s }'
done
if [ "$synth_n" -gt 0 ]; then
  "$PY" "$here/tests/cli/helpers/sklearn_probe.py" synth "$synth_n" 320 5 1 "$T/synth.tar"
  "$PY" "$here/tests/cli/helpers/sklearn_probe.py" synth 20000 320 5 2 "$T/synth-test.tar"
  /usr/bin/time -f "%e s wall, %U s user, %M KiB peak RSS" cx-classify train "$T/synth.tar" --labels L0,L1,L2,L3,L4 --threads "$threads" -o "$T/synth-head" 2> "$T/time.txt" || cat "$T/time.txt"
  ours=$(cx-classify predict --ignore-encoder "$T/synth-head" "$T/synth-test.tar" | cx-eval auroc --bootstrap 0 - | awk -F'\t' '$2 == "macro" { print $5 }')
  ref=$("$PY" "$here/tests/cli/helpers/sklearn_probe.py" auroc "$T/synth.tar" "$T/synth-test.tar" | awk -F'\t' '$1 == "macro" { print $2 }')
  printf 'synthetic %d x 320 x 5: cx-classify %s, scikit-learn %s; cx-classify train: %s\n' "$synth_n" "$ours" "$ref" "$(tail -1 "$T/time.txt")"
fi
