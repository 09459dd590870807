#!/bin/sh
# Runs the libFuzzer targets built in BUILD (make fuzz / make fuzz-smoke; fuzz/README.md).
#   sh fuzz/run.sh BUILD SECONDS [TARGET...]          fuzz each target SECONDS, one after the other
#   sh fuzz/run.sh --smoke BUILD SECONDS [TARGET...]  the committed seeds only, then SECONDS each
# Targets are named without "fuzz_" (png, adapter_nih ...); none given: all of them.
# Per target: the corpus grows in BUILD/fuzz-corpus/T/ (seeded from fuzz/corpus/T/, committed, and
# from ../shared/samples files of T's kind, linked in place from BUILD/fuzz-samples/T/); findings
# (crash-*, leak-*, oom-*, timeout-*) land in BUILD/findings/T/ with the log. Exit status 1 when
# any target had a finding. A summary table goes to stdout and BUILD/findings/summary.tsv.
set -u
smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi
build=${1:?usage: run.sh [--smoke] BUILD SECONDS [TARGET...]}
seconds=${2:?usage: run.sh [--smoke] BUILD SECONDS [TARGET...]}
shift 2
src=$(cd "$(dirname "$0")" && pwd)
samples=${CX_SHARED:-$src/../../shared}/samples
bin="$build/fuzz"
if [ $# -eq 0 ]; then
  set -- $(cd "$bin" && ls fuzz_* | sed 's/^fuzz_//')
fi

# The real samples each target also starts from (read in place; never copied into the repo).
samples_of() {
  case "$1" in
    png) echo "$samples/nih/*.png $samples/shenzhen/masks/*.png" ;;
    image_file) echo "$samples/nih/*.png $samples/shenzhen/masks/*.png $samples/siim/*.dcm" ;;
    dicom) echo "$samples/siim/*.dcm $samples/nema/*.dcm" ;;
    adapter_chexpert) echo "$samples/labels/chexpert_train.csv.gz" ;;
    adapter_nih) echo "$samples/labels/Data_Entry_2017_v2020.csv.gz" ;;
    adapter_vindr) echo "$samples/labels/vinbigdata-train.csv.gz" ;;
    csv|table) echo "$samples/labels/*.csv.gz" ;;
  esac
}
# Input size bound: images and DICOM up to the samples' size; text and configs smaller (label
# files in place are read up to this many bytes: the gzip is then cut, which the reader reports).
max_len_of() {
  case "$1" in
    dicom) echo 1048576 ;;
    png|image_file|jpeg|j2k) echo 262144 ;;
    adapter_*|csv|table|stream|safetensors|npy) echo 65536 ;;
    *) echo 8192 ;;
  esac
}

# The limits (README): a parser of any input stays under 2 GB; one input may take 30 s.
limits="-rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=30"
status=0
mkdir -p "$build/findings"
summary="$build/findings/summary.tsv"
[ $smoke -eq 1 ] && summary="$build/findings/smoke.tsv"
printf 'target\tseconds\texecs\texec/s\tcorpus\tfindings\tstarts\n' > "$summary"
for t in "$@"; do
  exe="$bin/fuzz_$t"
  [ -x "$exe" ] || { echo "run.sh: no $exe (make fuzz-build?)" >&2; status=1; continue; }
  corpus="$build/fuzz-corpus/$t" findings="$build/findings/$t" linked="$build/fuzz-samples/$t"
  mkdir -p "$corpus" "$findings" "$linked"
  rm -f "$linked"/*
  for f in $(samples_of "$t"); do [ -f "$f" ] && ln -sf "$f" "$linked/"; done
  seeds="$src/corpus/$t"
  [ -d "$seeds" ] || seeds=""
  log="$findings/log.txt"
  echo "== fuzz_$t: ${seconds}s" >&2
  start=$(date +%s)
  stamp="$findings/.started"
  touch "$stamp"
  if [ $smoke -eq 1 ]; then
    # A throw-away corpus: the seeds are replayed once, then fuzzed for a short while.
    corpus="$build/fuzz-smoke/$t"
    rm -rf "$corpus"
    mkdir -p "$corpus"
  fi
  # -close_fd_mask=2: the libraries' own warnings (DCMTK, libpng) stay out of the log; a crash
  # report is printed after the descriptors come back, so it is still there. After a finding the
  # target starts again for the time left (at most 5 starts), so one bug does not end its run.
  : > "$log"
  execs=0 rc_all=0 starts=0
  while :; do
    left=$(( seconds - ($(date +%s) - start) ))
    [ $left -ge 1 ] || left=1
    "$exe" -max_total_time="$left" -max_len="$(max_len_of "$t")" $limits -print_final_stats=1 \
      -artifact_prefix="$findings/" -close_fd_mask=2 "$corpus" $seeds "$linked" >> "$log" 2>&1
    rc=$?
    starts=$((starts + 1))
    n=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    sed -i 's/^stat::number_of_executed_units:/stat::counted_executed_units:/' "$log"
    execs=$((execs + ${n:-0}))
    [ $rc -ne 0 ] && rc_all=$rc
    [ $rc -eq 0 ] || [ $smoke -eq 1 ] || [ $starts -ge 5 ] && break
    [ $(( $(date +%s) - start )) -lt $((seconds - 2)) ] || break
  done
  took=$(( $(date +%s) - start ))
  rate=$(( execs / (took > 0 ? took : 1) ))
  size=$(ls "$corpus" | wc -l)
  found=$(find "$findings" -maxdepth 1 -newer "$stamp" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'oom-*' \
           -o -name 'timeout-*' \) | wc -l)
  if [ $rc_all -ne 0 ] || [ "$found" -ne 0 ]; then
    status=1
    echo "run.sh: fuzz_$t: exit $rc_all, $found finding(s) in $findings (log: $log)" >&2
    grep -E 'ERROR: |FINDING|runtime error' "$log" | sort | uniq -c | head -5 >&2
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$took" "$execs" "$rate" "$size" "$found" "$starts" >> "$summary"
done
column -t -s "$(printf '\t')" "$summary" 2>/dev/null || cat "$summary"
exit $status
