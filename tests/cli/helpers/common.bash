# Shared helpers for the tools' Bats files. In tests/cli/<tool>.bats:
#
#   load helpers/common
#   setup() { cx_setup; }
#
# cx_setup sets SRC (the source tree), SHARED (../shared fixtures and samples), T (a fresh
# per-test temporary folder) and checks that the tool under test is on PATH (ctest puts the
# build's bin first; by hand: PATH=$PWD/build/bin:$PATH bats tests/cli/<tool>.bats).

# Debian's python3, with numpy and Pillow; the first python3 on PATH may have neither.
PY=/usr/bin/python3

cx_setup() {
  SRC=${CX_SOURCE:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
  SHARED=${CX_SHARED:-$SRC/../shared}
  T=$BATS_TEST_TMPDIR
  local tool
  tool=$(basename "$BATS_TEST_FILENAME" .bats)
  case $tool in
    cx-*) command -v "$tool" >/dev/null || { echo "$tool is not on PATH ($PATH)" >&2; return 1; } ;;
  esac
}

# Skips the test unless $PY can import every module named.
require_python_module() {
  local m
  for m in "$@"; do
    "$PY" -c "import $m" 2>/dev/null || skip "no Python module '$m' under $PY"
  done
}

# Skips the test unless the shared path (relative to $SHARED) exists.
require_shared() {
  [ -e "$SHARED/$1" ] || skip "no $1 under $SHARED"
}

# Runs "$@" with stdin from a pseudo-terminal, for the usage-on-terminal rule; skips when
# script(1) is missing. Sets status and output as `run` does (stderr and stdout merged).
run_on_terminal() {
  command -v script >/dev/null || skip "script(1) not installed"
  local cmd
  printf -v cmd '%q ' "$@"
  run script -qec "$cmd" /dev/null
}

# Prints a summary of a cx stream FILE ("-": stdin) read with Python's tarfile only (no cx code),
# as JSON: {"members": [names in order], "header": __cx__, "end": __end__,
# "records": {key: [fields in order]}, "keys": [keys in order]}, grouping members by WebDataset's
# rule (key = the name up to the first '.' of its base name, directory kept).
stream_summary() {
  local script
  # the script comes as an argument: stdin may be the stream
  IFS= read -r -d '' script <<'PY' || true
import json, os, sys, tarfile
src = sys.argv[1]
tf = tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") if src == "-" else tarfile.open(src)
out = {"members": [], "header": None, "end": None, "records": {}, "keys": []}
for m in tf:
    out["members"].append(m.name)
    data = tf.extractfile(m).read()
    if m.name == "__cx__":
        out["header"] = json.loads(data)
    elif m.name == "__end__":
        out["end"] = json.loads(data)
    else:
        d, base = os.path.split(m.name)
        key, field = base.split(".", 1)
        key = os.path.join(d, key)
        if key not in out["records"]:
            out["keys"].append(key)
        out["records"].setdefault(key, []).append(field)
print(json.dumps(out))
PY
  "$PY" -c "$script" "$1"
}
