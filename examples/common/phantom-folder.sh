#!/bin/sh
# phantom-folder.sh STREAM DIR: unpack a cx-phantom stream into the shape of a downloaded dataset,
# so that the examples run their real first step (cx-ingest) on phantoms:
#   DIR/images/KEY.png       the radiographs (a folder dataset: cx-ingest --dataset folder DIR/images)
#   DIR/masks/KEY.mask.png   the lung/heart label maps (cx-ingest --masks DIR/masks)
#   DIR/labels.tsv           key, then one column per label, 1/0 (cx-ingest --labels)
# DIR appears whole or not at all (built under a temporary name, then renamed).
set -eu
[ $# -eq 2 ] || { echo "usage: phantom-folder.sh STREAM DIR" >&2; exit 2; }
stream=$1
dir=$2
tmp=$dir.tmp.$$
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM
rm -rf "$tmp"
mkdir -p "$tmp/all" "$tmp/images" "$tmp/masks"
tar -xf "$stream" -C "$tmp/all"
# One mv each (not one per file); a stream of zero records leaves both folders empty.
set -- "$tmp"/all/*.mask.png
[ -e "$1" ] && mv "$@" "$tmp/masks/"
set -- "$tmp"/all/*.png
[ -e "$1" ] && mv "$@" "$tmp/images/"
# Each record's json is one line; its "labels" object holds every label (phantoms know their truth).
# The header row takes the label names in the order of the first record.
awk 'BEGIN { FS = "\n" }
  {
    if (!match($0, /"id":"[^"]*"/)) { print FILENAME ": no id" > "/dev/stderr"; exit 1 }
    id = substr($0, RSTART + 6, RLENGTH - 7)
    if (!match($0, /"labels":\{[^}]*\}/)) { print FILENAME ": no labels" > "/dev/stderr"; exit 1 }
    n = split(substr($0, RSTART + 10, RLENGTH - 11), kv, ",")
    head = "key"; row = id
    for (i = 1; i <= n; i++) {
      split(kv[i], p, ":"); name = p[1]; gsub(/"/, "", name)
      head = head "\t" name; row = row "\t" p[2]
    }
    if (NR == 1) print head
    print row
  }' "$tmp"/all/*.json > "$tmp/labels.tsv"
rm -rf "$tmp/all"
rm -rf "$dir"
mv "$tmp" "$dir"
