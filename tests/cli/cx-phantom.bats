#!/usr/bin/env bats
# cx-phantom: the stream as tar(1) and Python's tarfile see it, the records' fields decoded with
# Pillow, determinism (seed, threads, CX_SEED), exit codes 0/1/2 with their messages, >/dev/full,
# a quiet SIGPIPE, atomic -o (also when killed midway), -q/-v. cx-phantom reads no input, so the
# usage-on-terminal rule does not apply to it.

bats_require_minimum_version 1.5.0
load helpers/common

setup() { cx_setup; }
# A test that mounts a small tmpfs (a full disk) unmounts it whatever happens.
teardown() { if [ -n "${SMALL:-}" ] && mountpoint -q "$SMALL"; then umount "$SMALL"; fi; }

@test "tar tvf lists __cx__, 8 records of 4 members in order, then __end__" {
  cx-phantom -n 8 > "$T/s.cx"
  run tar tf "$T/s.cx"
  [ "$status" -eq 0 ]
  expected="__cx__"
  for i in 0 1 2 3 4 5 6 7; do
    for f in json png mask.png txt; do expected="$expected
phantom-00000$i.$f"; done
  done
  expected="$expected
__end__"
  [ "$output" = "$expected" ]
  # the verbose listing works from a pipe too: regular files, mode 0644
  run bash -c 'cx-phantom -n 8 | tar tvf -'
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | wc -l)" -eq 34 ]
  [ "$(echo "$output" | grep -c '^-rw-r--r--')" -eq 34 ]
}

@test "Python tarfile reads every member; WebDataset grouping gives 8 records of json/png/mask.png/txt" {
  cx-phantom -n 8 --size 96 > "$T/s.cx"
  run stream_summary "$T/s.cx"
  [ "$status" -eq 0 ]
  echo "$output" | "$PY" -c '
import json, sys
s = json.load(sys.stdin)
assert s["members"][0] == "__cx__" and s["members"][-1] == "__end__", s["members"]
assert s["end"] == {"records": 8}, s["end"]
assert s["keys"] == ["phantom-%06d" % i for i in range(8)], s["keys"]
for k, fields in s["records"].items():
    assert fields == ["json", "png", "mask.png", "txt"], (k, fields)
h = s["header"]
assert h["format"] == "cx-stream" and h["version"].startswith("1."), h
assert h["labels"] == ["Cardiomegaly", "Effusion", "Nodule", "Pneumothorax", "No Finding"], h["labels"]
assert set(h["fields"]) == {"json", "png", "mask.png", "txt"}, h["fields"]
assert h["fields"]["mask.png"]["classes"] == ["background", "left lung", "right lung", "heart"]
assert h["provenance"][0]["tool"] == "cx-phantom" and "--size" in h["provenance"][0]["args"], h["provenance"]
'
}

@test "record fields decode: 8-bit gray images, label maps 0-3, json labels and a report" {
  require_python_module PIL numpy
  cx-phantom -n 6 --size 80 --p-cardiomegaly 1 > "$T/s.cx"
  "$PY" - "$T/s.cx" <<'PY'
import io, json, sys, tarfile
import numpy as np
from PIL import Image
recs = {}
with tarfile.open(sys.argv[1]) as tf:
    for m in tf:
        if m.name.startswith("__"):
            continue
        key, field = m.name.split(".", 1)
        recs.setdefault(key, {})[field] = tf.extractfile(m).read()
assert len(recs) == 6
for key, r in recs.items():
    meta = json.loads(r["json"])
    assert meta["id"] == key and meta["dataset"] == "phantom" and meta["view"] == "PA", meta
    assert meta["size"] == [80, 80] and meta["labels"]["Cardiomegaly"] == 1 and meta["ctr"] > 0.5, meta
    assert set(meta["labels"]) == {"Cardiomegaly", "Effusion", "Nodule", "Pneumothorax", "No Finding"}
    assert all(v in (0, 1) for v in meta["labels"].values())
    im = Image.open(io.BytesIO(r["png"]))
    assert im.mode == "L" and im.size == (80, 80), (im.mode, im.size)
    mask = np.array(Image.open(io.BytesIO(r["mask.png"])))
    assert mask.shape == (80, 80) and set(np.unique(mask)) <= {0, 1, 2, 3}, np.unique(mask)
    assert {1, 2, 3} <= set(np.unique(mask))
    text = r["txt"].decode()
    assert text.startswith("FINDINGS: ") and "\nIMPRESSION: " in text and "ardiomegaly" in text, text
PY
}

@test "the same seed gives the same bytes; another seed, or CX_SEED, changes them; threads do not" {
  # --no-provenance: the header's provenance records the arguments, which differ here
  cx-phantom -n 5 --size 64 --seed 7 --threads 1 --no-provenance > "$T/a.cx"
  cx-phantom -n 5 --size 64 --seed 7 --threads 3 --no-provenance > "$T/b.cx"
  cx-phantom -n 5 --size 64 --seed 8 --no-provenance > "$T/c.cx"
  CX_SEED=7 cx-phantom -n 5 --size 64 --threads 2 --no-provenance > "$T/d.cx"
  cmp "$T/a.cx" "$T/b.cx"
  cmp "$T/a.cx" "$T/d.cx"
  run cmp -s "$T/a.cx" "$T/c.cx"
  [ "$status" -eq 1 ]
  # record i does not depend on how many records follow it
  cx-phantom -n 2 --size 64 --seed 7 > "$T/g.cx"
  mkdir "$T/a" "$T/g"
  tar xf "$T/a.cx" -C "$T/a" phantom-000001.png phantom-000001.json
  tar xf "$T/g.cx" -C "$T/g" phantom-000001.png phantom-000001.json
  cmp "$T/a/phantom-000001.png" "$T/g/phantom-000001.png"
  cmp "$T/a/phantom-000001.json" "$T/g/phantom-000001.json"
}

@test "--no-provenance leaves the chain empty" {
  cx-phantom -n 1 --size 64 --no-provenance | stream_summary - > "$T/s.json"
  "$PY" -c 'import json, sys; assert json.load(open(sys.argv[1]))["header"]["provenance"] == []' "$T/s.json"
}

@test "-n 0 writes a valid empty stream" {
  run bash -c 'cx-phantom -n 0 | tar tf -'
  [ "$status" -eq 0 ]
  [ "$output" = "__cx__
__end__" ]
}

@test "--version and --help exit 0; the version names the git revision" {
  run cx-phantom --version
  [ "$status" -eq 0 ]
  [[ "$output" =~ ^cx-phantom\ cx\ [0-9]+\.[0-9]+\.[0-9]+\ \(git\ [0-9a-f]{7,} ]]
  run cx-phantom --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"--p-pneumothorax"* ]]
  [[ "$output" == *"Exit status"* ]]
}

@test "usage errors exit 2 with a message prefixed cx-phantom: and write no data" {
  run --separate-stderr cx-phantom --no-such-option
  [ "$status" -eq 2 ]
  [ -z "$output" ]
  [[ "$stderr" == "cx-phantom: "*"--no-such-option"* ]]
  run --separate-stderr cx-phantom -n -1
  [ "$status" -eq 2 ]
  [ -z "$output" ]
  [[ "$stderr" == "cx-phantom: --count: "* ]]
  run --separate-stderr cx-phantom --size 10
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-phantom: --size: "* ]]
  run --separate-stderr cx-phantom --size 4096
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-phantom: --size: "* ]]
  run --separate-stderr cx-phantom --p-nodule 1.5
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-phantom: --p-nodule: "* ]]
  run --separate-stderr cx-phantom -n two
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-phantom: "* ]]
  run --separate-stderr cx-phantom extra-argument
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-phantom: "* ]]
  # counts are checked on their text: no saturation to 2^63-1, the range in plain numbers
  run --separate-stderr cx-phantom -n 99999999999999999999
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-phantom: --count: must be an integer from 0 to 1000000000000, not 99999999999999999999"* ]]
  run --separate-stderr cx-phantom -n 2 --threads 100000
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-phantom: --threads: "*"100000"* ]]
}

@test "a full disk on standard output is an error: exit 1, naming standard output" {
  [ -w /dev/full ] || skip "no /dev/full"
  run --separate-stderr bash -c 'cx-phantom -n 4 --size 64 > /dev/full'
  [ "$status" -eq 1 ]
  [[ "$stderr" == "cx-phantom: standard output: "* ]]
}

@test "an output folder that does not exist is an error: exit 1, naming the file" {
  run --separate-stderr cx-phantom -n 1 --size 64 -o "$T/no/such/dir/out.cx"
  [ "$status" -eq 1 ]
  [[ "$stderr" == "cx-phantom: $T/no/such/dir/out.cx: "* ]]
}

@test "a broken pipe ends it quietly: SIGPIPE (141), nothing on stderr" {
  run bash -c 'set -o pipefail; cx-phantom -n 200 --size 128 2> "$0/err" | head -c 1 > /dev/null' "$T"
  [ "$status" -eq 141 ]
  [ ! -s "$T/err" ]
}

@test "-o writes atomically: the complete file and no temporary left" {
  mkdir "$T/out"
  run --separate-stderr cx-phantom -n 3 --size 64 -o "$T/out/s.cx"
  [ "$status" -eq 0 ]
  [ -z "$output" ]
  [ "$(ls -A "$T/out")" = "s.cx" ]
  cx-phantom -n 3 --size 64 > "$T/ref.cx"
  # the same records (the provenance differs by the -o argument)
  run stream_summary "$T/out/s.cx"
  [ "$status" -eq 0 ]
  [[ "$output" == *'"end": {"records": 3}'* ]]
  cx-phantom -n 3 --size 64 --no-provenance -o "$T/out/p.cx"
  cx-phantom -n 3 --size 64 --no-provenance -o - > "$T/p.cx"
  cmp "$T/out/p.cx" "$T/p.cx"
}

@test "-o killed midway leaves no file under the target name" {
  mkdir "$T/k"
  cx-phantom -n 1000000 --size 256 --threads 1 -o "$T/k/big.cx" 2>/dev/null &
  pid=$!
  # wait until it is midway: its temporary holds a few records
  partial=
  for _ in $(seq 1 200); do
    partial=$(find "$T/k" -name '.big.cx.tmp.*' -size +100k 2>/dev/null)
    [ -n "$partial" ] && break
    sleep 0.1
  done
  [ -n "$partial" ]
  [ ! -e "$T/k/big.cx" ]
  kill -TERM "$pid"
  st=0
  wait "$pid" || st=$?
  [ "$st" -eq 143 ]  # ended by the signal, as without a handler
  [ ! -e "$T/k/big.cx" ]
}

@test "SIGINT, SIGTERM and SIGHUP remove the temporary file: nothing is left in the folder" {
  # job control on: a non-interactive shell starts background jobs with SIGINT ignored
  set -m
  for sig in INT TERM HUP; do
    mkdir "$T/$sig"
    cx-phantom -n 1000000 --size 256 --threads 1 -o "$T/$sig/big.cx" 2>/dev/null &
    pid=$!
    partial=
    for _ in $(seq 1 200); do
      partial=$(find "$T/$sig" -name '.big.cx.tmp.*' -size +100k 2>/dev/null)
      [ -n "$partial" ] && break
      sleep 0.1
    done
    [ -n "$partial" ]
    kill -"$sig" "$pid"
    wait "$pid" || true
    run ls -A "$T/$sig"
    [ "$output" = "" ] || { echo "$sig left: $output"; false; }
  done
  set +m
}

@test "-o onto a FIFO writes into it; onto a symlink replaces its target and keeps the link" {
  mkfifo "$T/fifo"
  cat "$T/fifo" > "$T/from-fifo.cx" &
  reader=$!
  cx-phantom --no-provenance -n 2 --size 64 -o "$T/fifo"
  wait "$reader"
  [ -p "$T/fifo" ]
  cx-phantom --no-provenance -n 2 --size 64 > "$T/direct.cx"
  cmp "$T/from-fifo.cx" "$T/direct.cx"
  # a symlink (relative, in a chain) leads to a regular file: the file is replaced, the links stay
  mkdir "$T/real"
  echo old > "$T/real/target.cx"
  ln -s real/target.cx "$T/link1"
  ln -s link1 "$T/link2"
  cx-phantom --no-provenance -n 2 --size 64 -o "$T/link2"
  [ -L "$T/link2" ] && [ -L "$T/link1" ]
  cmp "$T/real/target.cx" "$T/direct.cx"
  # a dangling symlink creates its target
  ln -s made.cx "$T/dangling"
  cx-phantom --no-provenance -n 2 --size 64 -o "$T/dangling"
  [ -L "$T/dangling" ]
  cmp "$T/made.cx" "$T/direct.cx"
  # a folder is refused by name
  run cx-phantom --no-provenance -n 2 --size 64 -o "$T/real"
  [ "$status" -eq 1 ]
  [ "$output" = "cx-phantom: $T/real: is a folder" ]
}

@test "-o onto a character device writes into it and never replaces the node" {
  mknod "$T/null" c 1 3 2>/dev/null || skip "cannot make a device node here (not root, or no CAP_MKNOD)"
  cx-phantom -n 2 --size 64 -o "$T/null"
  [ -c "$T/null" ]
  mknod "$T/full" c 1 7 || skip "cannot make /dev/full's node"
  run cx-phantom -n 2 --size 64 -o "$T/full"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$T/full: write failed: No space left on device"* ]]
  [ -c "$T/full" ]
}

@test "a stream is never written onto a terminal: exit 2 with a hint, nothing written" {
  run_on_terminal cx-phantom -n 2 --size 64
  [ "$status" -eq 2 ]
  [[ "$output" == *"cx-phantom: standard output is a terminal"* ]]
  [[ "$output" != *"__cx__"* ]]
}

@test "--help and --version into a full disk are an error (exit 1)" {
  [ -w /dev/full ] || skip "no /dev/full"
  run bash -c 'cx-phantom --help > /dev/full'
  [ "$status" -eq 1 ]
  [[ "$output" == *"standard output: write error"* ]]
  run bash -c 'cx-phantom --version > /dev/full'
  [ "$status" -eq 1 ]
}

@test "-q prints nothing on stderr; -v says what was written" {
  run --separate-stderr cx-phantom -q -n 2 --size 64
  [ "$status" -eq 0 ]
  [ -z "$stderr" ]
  run --separate-stderr cx-phantom -v -n 2 --size 64
  [ "$status" -eq 0 ]
  [[ "$stderr" == *"cx-phantom: 2 records written"* ]]
  run --separate-stderr cx-phantom -q -v -n 1 --size 64
  [ "$status" -eq 2 ]
}

@test "every finding shows up in its labels and in the report's impression" {
  run bash -c 'cx-phantom -n 3 --size 64 --p-cardiomegaly 1 --p-effusion 1 --p-nodule 1 --p-pneumothorax 1 | tar xOf - --wildcards "*.txt"'
  [ "$status" -eq 0 ]
  for w in ardiomegaly effusion nodule pneumothorax; do
    [ "$(echo "$output" | grep '^IMPRESSION' | grep -ci "$w")" -eq 3 ]
  done
  run bash -c 'cx-phantom -n 3 --size 64 --p-cardiomegaly 0 --p-effusion 0 --p-nodule 0 --p-pneumothorax 0 | tar xOf - --wildcards "*.json"'
  [ "$status" -eq 0 ]
  [ "$(echo "$output" | grep -c '"No Finding":1')" -eq 3 ]
}

@test "when the system refuses threads, the pool goes on with those started, or fails cleanly: never an abort (issue 08 defect 10)" {
  [ -z "${CX_SANITIZED:-}" ] || skip "address-space limits (ulimit -v) do not fit a sanitizer's shadow memory"
  # Under a 1 GiB address-space limit only some of 1024 thread stacks (8 MiB each) can be mapped.
  run --separate-stderr bash -c 'ulimit -v 1000000; exec cx-phantom -n 4 --size 64 --threads 1024 -o "$0"' "$T/t.cx"
  [ "$status" -ne 134 ]                      # std::terminate before the fix
  [[ "$stderr" != *"terminate called"* ]]
  [[ "$stderr" == *"cx-phantom: warning: started "*" of 1024 worker threads"* ]]
  if [ "$status" -eq 0 ]; then
    cx-phantom -n 4 --size 64 --threads 1 -o "$T/one.cx"
    cmp <(tar xOf "$T/t.cx" phantom-000003.png) <(tar xOf "$T/one.cx" phantom-000003.png)
  else
    [ "$status" -eq 1 ]
    [ ! -e "$T/t.cx" ]
  fi
}

@test "a full disk (a 256 KiB tmpfs): every tool says so, exit 1, and leaves no file behind" {
  command -v cx-model >/dev/null && command -v cx-embed >/dev/null || skip "cx-model and cx-embed not built here"
  SMALL=$T/small
  mkdir -p "$SMALL"
  mount -t tmpfs -o size=256k tmpfs "$SMALL" 2>/dev/null || skip "cannot mount a tmpfs here (not root, or no privilege)"
  run -1 --separate-stderr cx-phantom -n 100 --size 128 -o "$SMALL/out.cx"
  [ "$stderr" = "cx-phantom: $SMALL/out.cx: write failed: No space left on device" ]
  [ -z "$(ls -A "$SMALL")" ]
  # Through a pipeline: the writer at the end fails; the tools before it end on the broken pipe.
  cx-model init --preset tiny "$T/m" 2>/dev/null
  run -1 --separate-stderr bash -o pipefail -c 'cx-phantom -n 100 --size 128 | cx-embed --model "$1" --emit patch -o "$0/emb.cx"' "$SMALL" "$T/m"
  [[ "$stderr" == *"cx-embed: $SMALL/emb.cx: write failed: No space left on device"* ]]
  [ -z "$(ls -A "$SMALL")" ]
  # A folder output (a model) on the full disk.
  run -1 --separate-stderr cx-model init --preset small "$SMALL/model"
  [[ "$stderr" == *"No space left on device"* ]]
  [ -z "$(ls -A "$SMALL")" ]
  umount "$SMALL"
}
