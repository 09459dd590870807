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
  [[ "$stderr" == "cx-model: unknown command 'frob' (expected one of: init, info, forward)"* ]]
}

@test "config.json values are bounded before anything is built (issue 08 defect 3), and checked against the tensors" {
  [ -z "${CX_SANITIZED:-}" ] || skip "address-space limits (ulimit -v) do not fit a sanitizer's shadow memory"
  cx-model init --preset tiny "$T/m"
  cp -r "$T/m" "$T/deep"
  jq '.num_hidden_layers = 1000000000' "$T/m/config.json" > "$T/deep/config.json"
  # Before: 10-11 GB allocated. Now refused at once, naming the file, the key and the range.
  run -1 --separate-stderr bash -c 'ulimit -v 4000000; exec cx-model info "$0"' "$T/deep"
  [ "$stderr" = "cx-model: $T/deep/config.json: \"num_hidden_layers\" must be in 1-512, got 1000000000" ]
  [ -z "$output" ]
  for kv in 'hidden_size=1000000' 'num_attention_heads=100000' 'patch_size=100000' 'image_size=1000000' \
            'num_register_tokens=100000' 'num_channels=1000'; do
    cp -r "$T/m" "$T/k"
    jq ".${kv%=*} = ${kv#*=}" "$T/m/config.json" > "$T/k/config.json"
    run -1 --separate-stderr cx-model info "$T/k"
    [[ "$stderr" == *"\"${kv%=*}\" must be in "*", got ${kv#*=}" ]] || { echo "$kv: $stderr"; false; }
    rm -rf "$T/k"
  done
  # Within bounds but not what the file holds: the tensors present decide, before building.
  cp -r "$T/m" "$T/six"
  jq '.num_hidden_layers = 6' "$T/m/config.json" > "$T/six/config.json"
  run -1 --separate-stderr cx-model info "$T/six"
  [[ "$stderr" == "cx-model: $T/six: weights do not match the config (dinov2_with_registers, 6 layers, hidden 64): missing "* ]]
}

@test "layer_norm_eps -1 and a NaN weight are refused at load, naming the model (issue 08 defect 6)" {
  cx-model init --preset tiny "$T/m"
  cp -r "$T/m" "$T/eps"
  jq '.layer_norm_eps = -1' "$T/m/config.json" > "$T/eps/config.json"
  run -1 --separate-stderr cx-model info "$T/eps"
  [ "$stderr" = "cx-model: $T/eps/config.json: \"layer_norm_eps\" must be a finite number in (0, 0.1], got -1" ]
  cp -r "$T/m" "$T/nan"
  # One NaN (f32 0x7fc00000) into layernorm.weight, located from the safetensors header.
  /usr/bin/python3 - "$T/nan/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
raw = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
start = 8 + n + h["layernorm.weight"]["data_offsets"][0]
raw[start + 8:start + 12] = struct.pack("<I", 0x7fc00000)
open(p, "wb").write(raw)
PY
  run -1 --separate-stderr cx-model info "$T/nan"
  [ "$stderr" = "cx-model: $T/nan/model.safetensors: tensor \"layernorm.weight\" holds 1 non-finite value(s) (NaN or inf): the weights are damaged" ]
  cx-phantom -n 1 --size 64 -o "$T/p.cx"
  run -1 --separate-stderr cx-embed --model "$T/nan" -o "$T/e.cx" "$T/p.cx"
  [[ "$stderr" == *"$T/nan/model.safetensors: tensor \"layernorm.weight\" holds 1 non-finite"* ]]
  [ ! -e "$T/e.cx" ]
}

@test "a config number beyond int64 is refused, not cast (fuzz finding F6)" {
  cx-model init --preset tiny "$T/m"
  cp -r "$T/m" "$T/big"
  sed 's/"num_register_tokens": [0-9]*/"num_register_tokens": 1e36/' "$T/m/config.json" > "$T/big/config.json"
  grep -q '1e36' "$T/big/config.json"
  run -1 --separate-stderr cx-model info "$T/big"
  [ "$stderr" = "cx-model: $T/big/config.json: \"num_register_tokens\" must be an integer, got 1e+36" ]
}

@test "-q and -v are accepted after the subcommand as before it" {
  run -0 --separate-stderr cx-model init -q --preset tiny "$T/a"
  [ -z "$stderr" ]
  run -0 --separate-stderr cx-model -q init --preset tiny "$T/b"
  [ -z "$stderr" ]
  cmp "$T/a/model.safetensors" "$T/b/model.safetensors"
}

@test "forward: last_hidden_state of pixel values matches the Hugging Face fixture to 1e-4; bad input exits 1" {
  [ -d "$SHARED/fixtures/hf/tiny" ] || skip "no fixtures under $SHARED"
  /usr/bin/python3 -c 'import numpy' 2>/dev/null || skip "needs /usr/bin/python3 with numpy"
  /usr/bin/python3 - "$SHARED/fixtures/hf/tiny/cases.safetensors" "$T" <<'PY'
import json, struct, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
def get(k):
    a, b = h[k]["data_offsets"]
    assert h[k]["dtype"] == "F32"
    return np.frombuffer(raw[8 + n + a:8 + n + b], dtype="<f4").reshape(h[k]["shape"])
np.save(sys.argv[2] + "/x.npy", get("pixel_values_A"))
np.save(sys.argv[2] + "/want.npy", get("last_hidden_state_A"))
PY
  cx-model forward --model "$SHARED/fixtures/hf/tiny" --pixel-values "$T/x.npy" -o "$T/y.npy"
  run /usr/bin/python3 -c "
import numpy as np
a, b = np.load('$T/y.npy'), np.load('$T/want.npy')
assert a.shape == b.shape, (a.shape, b.shape)
print(float(np.abs(a - b).max()))"
  [ "$status" -eq 0 ]
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('$output') < 1e-4 else 1)"
  printf 'not npy' > "$T/bad.npy"
  run cx-model forward --model "$SHARED/fixtures/hf/tiny" --pixel-values "$T/bad.npy" -o "$T/z.npy"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$T/bad.npy"* ]]
  [ ! -e "$T/z.npy" ]
}
