#!/bin/sh
# check.sh: the assertions of the examples' `test` targets, on TSV tables with a header row (what
# cx-eval and cx-classify write). Each prints one line saying what held, or fails (exit 1) saying
# what was expected and what was found.
#   check.sh column TABLE COL V1,V2,...     column COL holds exactly V1, V2, ... in this order
#   check.sh min TABLE COL=VAL[,COL=VAL] FIELD FLOOR  the row so selected has FIELD >= FLOOR
#   check.sh max TABLE COL=VAL[,COL=VAL] FIELD CEIL   the row so selected has FIELD <= CEIL
#   (exactly one row must match the selection)
#   check.sh rows TABLE N                   N rows below the header
set -eu
[ $# -ge 3 ] || { echo "usage: check.sh column|min|max|rows TABLE ..." >&2; exit 2; }
what=$1 table=$2
shift 2
[ -r "$table" ] || { echo "check: $table: no such table" >&2; exit 1; }
case $what in
column)
  awk -F '\t' -v col="$1" -v want="$2" -v table="$table" '
    NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i
              if (!c) { print "check: " table ": no column " col > "/dev/stderr"; exit 1 }
              next }
    { got = got (NR > 2 ? "," : "") $c }
    END { if (c && got != want) { print "check: " table ": column " col " is " got ", expected " want > "/dev/stderr"; exit 1 }
          if (c) print "check: " table ": " col " = " got }' "$table" ;;
min|max)
  awk -F '\t' -v select="$1" -v field="$2" -v bound="$3" -v how="$what" -v table="$table" '
    NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i
              ns = split(select, pairs, ",")
              for (k = 1; k <= ns; k++) {
                eq = index(pairs[k], "="); name = substr(pairs[k], 1, eq - 1); want[k] = substr(pairs[k], eq + 1)
                if (!(name in col)) { print "check: " table ": no column " name > "/dev/stderr"; bad = 1; exit 1 }
                at[k] = col[name] }
              if (!(field in col)) { print "check: " table ": no column " field > "/dev/stderr"; bad = 1; exit 1 }
              f = col[field]; next }
    { for (k = 1; k <= ns; k++) if ($at[k] != want[k]) next
      found++; x = $f }
    END { if (bad) exit 1
          if (found != 1) { print "check: " table ": " found + 0 " rows with " select ", expected one" > "/dev/stderr"; exit 1 }
          ok = (x ~ /^-?[0-9.eE+-]+$/) && (how == "min" ? x + 0 >= bound + 0 : x + 0 <= bound + 0)
          rel = (how == "min" ? ">= " : "<= ")
          if (!ok) { print "check: " table ": " field " of " select " is " x ", expected " rel bound > "/dev/stderr"; exit 1 }
          print "check: " table ": " field " of " select " = " x " (" rel bound ")" }' "$table" ;;
rows)
  n=$(($(wc -l < "$table") - 1))
  [ "$n" -eq "$1" ] || { echo "check: $table: $n rows, expected $1" >&2; exit 1; }
  echo "check: $table: $n rows" ;;
*) echo "check.sh: unknown check $what" >&2; exit 2 ;;
esac
