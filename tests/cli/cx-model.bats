#!/usr/bin/env bats
# cx-model: new folders load in cx-embed and read in Python exactly; info; usage and errors.

bats_require_minimum_version 1.5.0

setup() {
  T=$BATS_TEST_TMPDIR
  SHARED=${CX_SHARED:-$BATS_TEST_DIRNAME/../../../shared}
}

@test "init writes a folder whose weights Python reads back with HF key names; same seed, same bytes" {
  cx-model init --preset tiny --seed 3 "$T/a"
  cx-model init --preset tiny --seed 3 "$T/b"
  cx-model init --preset tiny --seed 4 "$T/c"
  cmp "$T/a/model.safetensors" "$T/b/model.safetensors"
  ! cmp -s "$T/a/model.safetensors" "$T/c/model.safetensors"
  [ -f "$T/a/preprocessor_config.json" ]
  /usr/bin/python3 -c 'import numpy' 2>/dev/null || skip "needs /usr/bin/python3 with numpy"
  run /usr/bin/python3 - "$T/a" <<'PY'
import json, struct, sys
d = sys.argv[1]
cfg = json.load(open(d + "/config.json"))
assert cfg["model_type"] == "dinov2_with_registers" and cfg["hidden_size"] == 64 and cfg["num_hidden_layers"] == 4
raw = open(d + "/model.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
assert h["embeddings.register_tokens"]["shape"] == [1, 4, 64], h["embeddings.register_tokens"]
assert h["encoder.layer.3.mlp.fc2.weight"]["shape"] == [64, 256]
assert "layernorm.weight" in h
pp = json.load(open(d + "/preprocessor_config.json"))
assert pp["crop_size"] == {"height": 112, "width": 112}
print(len([k for k in h if k != "__metadata__"]))
PY
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" -eq 80 ]   # 6 embedding + 2 final-norm tensors, 18 per block x 4
}

@test "info prints shape, parameter count and the sha256 of the weights" {
  cx-model init --preset tiny "$T/m"
  run cx-model info "$T/m"
  echo "$output"
  [ "$status" -eq 0 ]
  sha=$(sha256sum "$T/m/model.safetensors" | cut -d' ' -f1)
  [[ "$output" == *"\"sha256\": \"$sha\""* ]]
  [[ "$output" == *"\"hidden_size\": 64"* ]]
}

@test "a new tiny model embeds phantoms end to end" {
  command -v cx-phantom >/dev/null || skip "cx-phantom not built"
  cx-model init --preset tiny "$T/m"
  cx-phantom -n 2 --size 128 | cx-embed --model "$T/m" --emit cls,patch > "$T/e.cx"
  run tar tf "$T/e.cx"
  [[ "$output" == *"phantom-000001.patch.npy"* ]]
}

@test "usage and errors: no subcommand, unknown preset, info on a missing folder" {
  run cx-model
  [ "$status" -eq 2 ]
  run cx-model init --preset huge "$T/x"
  [ "$status" -eq 2 ]
  [[ "$output" == *"unknown preset 'huge'"* ]]
  run cx-model info "$T/nothing-here"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == "cx-model: $T/nothing-here: model not found"* ]]
}

@test "an unknown command is named, not reported as a missing one (exit 2)" {
  run --separate-stderr cx-model frob
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-model: unknown command 'frob' (expected one of: init, info)"* ]]
}
