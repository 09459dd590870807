#!/bin/sh
# bench/ingest/png_decode.sh: decode time per image of cx's own PNG fast path against libspng
# (libspng-dev) on the real radiograph PNGs of ../shared/samples (NIH, Shenzhen); same bytes checked.
#   sh bench/ingest/png_decode.sh [BUILD]      REPS=20 by default
# Compiled here against BUILD/libcx_core.a (libspng is not a dependency of cx itself).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-build}
case $build in /*) ;; *) build="$root/$build" ;; esac
shared=${CX_SHARED:-$root/../shared}
[ -f "$build/libcx_core.a" ] || { echo "png_decode: $build/libcx_core.a not built" >&2; exit 1; }
pkg-config --exists spng || { echo "png_decode: libspng not found (apt-get install libspng-dev)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
${CXX:-g++} -O3 -DNDEBUG -std=c++17 -I"$root/lib" "$here/png_decode.cpp" "$build/libcx_core.a" \
  $(pkg-config --cflags --libs spng libdeflate libpng zlib) -o "$work/png_decode"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for set in nih shenzhen/images; do
  printf '%s: ' "$set"
  "$work/png_decode" "${REPS:-20}" "$shared/samples/$set"/*.png
done
