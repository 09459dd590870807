#!/bin/sh
# bench/ingest: cx-ingest against the pydicom + Pillow equivalent (python_ingest.py), images per
# second on the same DICOM and PNG inputs, side by side in one run; cx-ingest with 2 threads, Python
# as one process (how such a script is written). Then cx-ingest's peak memory (max RSS, from
# /usr/bin/time -v) for N and 4N inputs: it must not grow with the input's length.
# Target: cx-ingest >= 4x the Python figure.
#   sh bench/ingest/run.sh [BUILD]        BUILD defaults to build
#   N=100 SIZE=512 sh bench/ingest/run.sh  N inputs per format (default 100), SIZE the --size (0 keeps)
# Inputs (../shared/samples): the SIIM JPEG-baseline CR (1024x1024 8-bit DICOM) and the eight
# Shenzhen PNGs (about 750x730 8-bit gray), copied to N files each.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
cx="$build/bin/cx-ingest"
[ -x "$cx" ] || { echo "bench/ingest: $cx not built (cmake --build $build --target cx-ingest)" >&2; exit 1; }
py=/usr/bin/python3
shared=${CX_SHARED:-$root/../shared}
n=${N:-100}
size=${SIZE:-512}
threads=2
[ -x /usr/bin/time ] || { echo "bench/ingest: /usr/bin/time (GNU time) is needed for the memory figure" >&2; exit 1; }
dcm="$shared/samples/siim/siim_cr_jpeg_baseline.dcm"
[ -f "$dcm" ] || { echo "bench/ingest: $dcm not found (set CX_SHARED)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

mkdir -p "$work/dcm" "$work/png"
i=0
while [ $i -lt $((4 * n)) ]; do
  cp "$dcm" "$work/dcm/$(printf 'd%05d' $i).dcm"
  i=$((i + 1))
done
set -- "$shared"/samples/shenzhen/images/*.png
i=0
while [ $i -lt "$n" ]; do
  eval "src=\${$((i % $# + 1))}"
  cp "$src" "$work/png/$(printf 'p%05d' $i).png"
  i=$((i + 1))
done
ls "$work"/dcm/*.dcm | head -n "$n" > "$work/dcm.list"
ls "$work"/png/*.png > "$work/png.list"

# Each side runs as a whole command under GNU time: wall seconds (images/s) and user+system CPU
# seconds (CPU ms per image: on a machine shared with other work the wall time swings, the CPU
# time much less). Both include process start-up (Python's imports, about 0.3 s).
timed() {  # out-file command... -> "wall cpu"
  out=$1
  shift
  /usr/bin/time -f '%e %U %S' -o "$work/time" "$@" > "$out"
  awk '{printf "%s %.3f\n", $1, $2 + $3}' "$work/time"
}
run_cx() { timed "$work/cx.tar" sh -c "xargs '$cx' --threads $threads --size '$size' -q < '$1'"; }
run_py() { timed /dev/null sh -c "xargs $py '$here/python_ingest.py' '$work/py.tar' '$size' < '$1'"; }

# warm-up: both sides then read their inputs from the page cache
cat "$work"/dcm/*.dcm "$work"/png/*.png > /dev/null
cx_dcm=$(run_cx "$work/dcm.list")
py_dcm=$(run_py "$work/dcm.list")
# one image from each side, for the record: the two pipelines must agree
tar xOf "$work/cx.tar" d00000.png > "$work/cx0.png"
tar xOf "$work/py.tar" d00000.png > "$work/py0.png"
diff_dcm=$($py -c "
import numpy as np, sys; from PIL import Image
a = np.asarray(Image.open(sys.argv[1])).astype(int); b = np.asarray(Image.open(sys.argv[2])).astype(int)
print(f'{a.shape[1]}x{a.shape[0]}, max |cx - python| = {np.abs(a - b).max()}')" "$work/cx0.png" "$work/py0.png")
cx_png=$(run_cx "$work/png.list")
py_png=$(run_py "$work/png.list")

# Peak memory for N and 4N DICOM inputs.
ls "$work"/dcm/*.dcm > "$work/dcm4.list"
rss() { /usr/bin/time -v sh -c "xargs '$cx' --threads $threads --size '$size' -q < '$1' > /dev/null" 2>&1 |
        awk '/Maximum resident set size/ {print $6}'; }
rss1=$(rss "$work/dcm.list")
rss4=$(rss "$work/dcm4.list")

$py - "$n" "$size" "$cx_dcm" "$py_dcm" "$cx_png" "$py_png" "$rss1" "$rss4" "$diff_dcm" "$(cat /proc/loadavg)" <<'PY'
import sys
n, size = int(sys.argv[1]), int(sys.argv[2])
cx_dcm, py_dcm, cx_png, py_png = (tuple(map(float, a.split())) for a in sys.argv[3:7])
rss1, rss4 = int(sys.argv[7]), int(sys.argv[8])
print(f"bench/ingest: {n} inputs per format, --size {size}, cx-ingest --threads 2 vs pydicom+Pillow (1 process)")
print(f"  load average at the end: {sys.argv[10].split()[0]} (wall figures need a quiet machine; CPU figures less so)")
for name, c, p in (("DICOM (SIIM CR, JPEG baseline 1024x1024)", cx_dcm, py_dcm),
                   ("PNG (Shenzhen, 8-bit ~750x730)", cx_png, py_png)):
    print(f"  {name}")
    print(f"    wall: cx-ingest {n / c[0]:7.1f} images/s   python {n / p[0]:7.1f} images/s   ratio {p[0] / c[0]:5.2f}x")
    print(f"    CPU:  cx-ingest {1000 * c[1] / n:7.1f} ms/image  python {1000 * p[1] / n:7.1f} ms/image  ratio {p[1] / c[1]:5.2f}x"
          f"  (with both cores free, the 2 threads make the wall ratio up to {2 * p[1] / c[1]:.1f}x)")
print(f"  first DICOM record: {sys.argv[9]}")
print(f"  cx-ingest peak RSS: {rss1 / 1024:.1f} MiB for {n} inputs, {rss4 / 1024:.1f} MiB for {4 * n} inputs "
      f"(ratio {rss4 / rss1:.2f})")
print("  target: >= 4x; peak memory independent of the input's length")
PY
