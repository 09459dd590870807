#!/bin/sh
# bench/eval: cx-eval's bootstrap against the same bootstrap written with scikit-learn, in one run.
# 500 resamples of macro AUROC over 100,000 records x 14 labels, 2 cores each side (--threads 2 /
# 2 worker processes). Prints both times and the ratio. Target: cx-eval >= 20x faster.
#   sh bench/eval/run.sh [BUILD]              (BUILD defaults to build)
#   SKLEARN_RESAMPLES=50 sh bench/eval/run.sh  the Python side runs fewer resamples and its time is
#                                             scaled to 500 (printed as such); the default runs all 500
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
cxeval="$build/bin/cx-eval"
[ -x "$cxeval" ] || { echo "bench/eval: $cxeval not built (cmake --build $build --target cx-eval)" >&2; exit 1; }
py=/usr/bin/python3
n=${N:-100000}
labels=${LABELS:-14}
resamples=500
sk_resamples=${SKLEARN_RESAMPLES:-$resamples}
threads=2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

$py "$here/make_table.py" "$work/table.tsv" "$n" "$labels"

# Wall time and CPU time (user + system, children included) of one command: "wall cpu".
timed() {
  $py -c '
import resource, subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True)
wall = time.perf_counter() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {ru.ru_utime + ru.ru_stime:.3f}")' "$@"
}

# cx-eval: the whole command (read, join, sort, bootstrap, print), and its load share (--bootstrap 0).
set -- $(timed "$cxeval" auroc --bootstrap $resamples --threads $threads --seed 1 -o "$work/cx.tsv" "$work/table.tsv")
cx_total=$1 cx_cpu=$2
set -- $(timed "$cxeval" auroc --bootstrap 0 --threads $threads -o /dev/null "$work/table.tsv")
cx_load=$1 cx_load_cpu=$2
cx_macro=$(awk -F'\t' '$1=="auroc" && $2=="macro" {print $5, $6, $7, $8}' "$work/cx.tsv")

set -- $(timed $py "$here/sklearn_bootstrap.py" "$work/table.tsv" --resamples "$sk_resamples" --processes $threads -o "$work/sk.txt")
sk_cpu=$2
set -- $(cat "$work/sk.txt")
sk_load=$1 sk_boot=$2 sk_used=$3
sk_macro="$4 $5 $6 $7"

$py - "$cx_total" "$cx_load" "$sk_load" "$sk_boot" "$sk_resamples" "$resamples" "$cx_macro" "$sk_macro" "$n" "$labels" \
    "$cx_cpu" "$cx_load_cpu" "$sk_cpu" <<'PY'
import sys
cx_total, cx_load, sk_load, sk_boot = map(float, sys.argv[1:5])
sk_res, res = int(sys.argv[5]), int(sys.argv[6])
cx_macro, sk_macro, n, labels = sys.argv[7], sys.argv[8], sys.argv[9], sys.argv[10]
cx_cpu, cx_load_cpu, sk_cpu = map(float, sys.argv[11:14])
scale = res / sk_res
sk_boot_500 = sk_boot * scale
cx_boot = max(cx_total - cx_load, 1e-3)
print(f"bench/eval: {res} bootstrap resamples of macro AUROC, {int(n):,} records x {labels} labels, 2 cores each")
print(f"  cx-eval   wall {cx_total:8.2f} s (read+sort {cx_load:.2f} s, bootstrap {cx_boot:.2f} s)   cpu {cx_cpu:8.2f} s")
note = "" if sk_res == res else f"   [{sk_res} resamples measured ({sk_boot:.2f} s), times scaled x{scale:g}]"
sk_cpu_500 = sk_cpu if sk_res == res else sk_cpu * scale  # approximate: start-up is scaled too
print(f"  sklearn   wall {sk_load + sk_boot_500:8.2f} s (read+workers {sk_load:.2f} s, bootstrap {sk_boot_500:.2f} s)   "
      f"cpu {sk_cpu_500:8.2f} s{note}")
print(f"  ratio     wall {(sk_load + sk_boot_500) / cx_total:6.1f}x   bootstrap only {sk_boot_500 / cx_boot:6.1f}x   "
      f"cpu {sk_cpu_500 / cx_cpu:6.1f}x   (target >= 20x)")
print(f"  macro AUROC estimate median low high:  cx-eval {cx_macro}   sklearn {sk_macro}")
PY
