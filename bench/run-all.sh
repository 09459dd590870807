#!/bin/sh
# Runs every benchmark under bench/*/run.sh against the build folder given (default: build).
set -eu
build=${1:-build}
here=$(cd "$(dirname "$0")" && pwd)
for b in "$here"/*/run.sh; do
  [ -f "$b" ] || continue
  echo "== $(basename "$(dirname "$b")")"
  sh "$b" "$build"
done
