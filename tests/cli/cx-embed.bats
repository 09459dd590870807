#!/usr/bin/env bats
# cx-embed: fidelity against the Hugging Face fixtures through the CLI, fields and shapes,
# provenance, --format npy, bad models and bad inputs.

bats_require_minimum_version 1.5.0

setup() {
  SHARED=${CX_SHARED:-$BATS_TEST_DIRNAME/../../../shared}
  FIX=$SHARED/fixtures/hf
  HELP=$BATS_TEST_DIRNAME/helpers/hf_fixture_stream.py
  T=$BATS_TEST_TMPDIR
  [ -d "$FIX/tiny" ] || skip "no fixtures at $FIX"
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null || skip "needs /usr/bin/python3 with numpy"
}

# A tiny model folder with a preprocessor config (the fixture has none): shortest edge 64, crop 56.
tiny_model() {
  local d=$T/tiny
  mkdir -p "$d"
  cp "$FIX/tiny/config.json" "$FIX/tiny/model.safetensors" "$d/"
  cat > "$d/preprocessor_config.json" <<'JSON'
{"image_processor_type": "BitImageProcessor", "do_resize": true, "size": {"shortest_edge": 64},
 "resample": 3, "do_center_crop": true, "crop_size": {"height": 56, "width": 56}, "do_rescale": true,
 "rescale_factor": 0.00392156862745098, "do_normalize": true,
 "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": true}
JSON
  echo "$d"
}

# Fixture pixel_values through the CLI must give HF's last_hidden_state and pooler within 1e-4
# (float32 noise floor ~3e-6 against float64, per the fixture README).
@test "tiny, tiny-swiglu and tiny-dinov2 reproduce HF last_hidden_state and pooler within 1e-4" {
  for m in tiny tiny-swiglu tiny-dinov2; do
    /usr/bin/python3 "$HELP" write "$FIX/$m/cases.safetensors" "$T/$m.in.tar"
    cx-embed --model "$FIX/$m" --emit last_hidden_state,cls --batch 3 < "$T/$m.in.tar" > "$T/$m.cx"
    run /usr/bin/python3 "$HELP" check "$FIX/$m/cases.safetensors" "$T/$m.cx" last_hidden_state 1e-4
    echo "$m last_hidden_state: $output"
    [ "$status" -eq 0 ]
    run /usr/bin/python3 "$HELP" check "$FIX/$m/cases.safetensors" "$T/$m.cx" cls 1e-4
    echo "$m cls: $output"
    [ "$status" -eq 0 ]
  done
}

@test "batch size does not change the numbers" {
  /usr/bin/python3 "$HELP" write "$FIX/tiny/cases.safetensors" "$T/in.tar"
  cx-embed --model "$FIX/tiny" --emit last_hidden_state --batch 1 --no-provenance < "$T/in.tar" > "$T/b1.cx"
  cx-embed --model "$FIX/tiny" --emit last_hidden_state --batch 8 --no-provenance < "$T/in.tar" > "$T/b8.cx"
  run /usr/bin/python3 - "$T/b1.cx" "$T/b8.cx" <<'PY'
import io, sys, tarfile, numpy as np
def load(p):
    with tarfile.open(p) as t:
        return {m.name: np.load(io.BytesIO(t.extractfile(m).read())) for m in t.getmembers() if m.name.endswith(".npy")}
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys() and len(a) == 6, (sorted(a), sorted(b))
print(max(float(np.abs(a[k] - b[k]).max()) for k in a))
PY
  echo "$output"
  [ "$status" -eq 0 ]
  # Batched GEMMs may sum in another order: allow float32 rounding, nothing more.
  /usr/bin/python3 -c "import sys; sys.exit(0 if float('${lines[-1]}') < 1e-5 else 1)"
}

@test "phantoms: every field with its shape, header model id and sha256, provenance, pass-through" {
  command -v cx-phantom >/dev/null || skip "cx-phantom not built"
  m=$(tiny_model)
  cx-phantom -n 3 --size 96 --seed 5 | cx-embed --model "$m" --emit cls,patch,reg,last_hidden_state,pixel_values,cx5 --patch-dtype f16 > "$T/e.cx"
  sha=$(sha256sum "$m/model.safetensors" | cut -d' ' -f1)
  run /usr/bin/python3 - "$T/e.cx" "$sha" <<'PY'
import io, json, sys, tarfile, numpy as np
t = tarfile.open(sys.argv[1])
names = [m.name for m in t.getmembers()]
assert names[0] == "__cx__" and names[-1] == "__end__", names
h = json.loads(t.extractfile("__cx__").read())
assert h["model"]["sha256"] == sys.argv[2], h["model"]
assert h["provenance"][-1]["tool"] == "cx-embed" and h["provenance"][-1]["model_sha256"] == sys.argv[2]
assert "png" not in h["fields"] and "cls.npy" in h["fields"]
rec = {}
for m in t.getmembers():
    if m.name.startswith("__"): continue
    k, f = m.name.split(".", 1)
    rec.setdefault(k, {})[f] = t.extractfile(m).read()
assert len(rec) == 3
for k, r in rec.items():
    assert "png" not in r and "json" in r and "mask.png" in r and "txt" in r, sorted(r)
    a = {f[:-4]: np.load(io.BytesIO(v)) for f, v in r.items() if f.endswith(".npy")}
    assert a["cls"].shape == (48,) and a["cls"].dtype == np.float32
    assert a["patch"].shape == (4, 4, 48) and a["patch"].dtype == np.float16
    assert a["reg"].shape == (4, 48)
    assert a["last_hidden_state"].shape == (21, 48)
    assert a["pixel_values"].shape == (3, 56, 56)
    assert a["cx5"].shape == (3 * 48,)   # 2 layers: CLS of both + mean patch
    lhs = a["last_hidden_state"]
    assert np.allclose(a["cls"], lhs[0]) and np.allclose(a["reg"], lhs[1:5])
    assert np.allclose(a["patch"].astype(np.float32), lhs[5:].reshape(4, 4, 48), atol=1e-2)
    assert np.allclose(a["cx5"][-48:], lhs[5:].mean(0), atol=1e-5)
print("ok")
PY
  echo "$output"
  [ "$status" -eq 0 ]
}

@test "--keep-image passes the image through" {
  command -v cx-phantom >/dev/null || skip "cx-phantom not built"
  m=$(tiny_model)
  cx-phantom -n 2 --size 64 | cx-embed --model "$m" --keep-image > "$T/k.cx"
  run tar tf "$T/k.cx"
  [[ "$output" == *"phantom-000000.png"* ]]
  [[ "$output" == *"phantom-000000.cls.npy"* ]]
}

@test "image files directly, and --format npy writes an N x D matrix with its keys" {
  [ -f "$SHARED/samples/nih/00000001_000.png" ] || skip "no samples"
  m=$(tiny_model)
  cx-embed --model "$m" --format npy -o "$T/emb" "$SHARED/samples/nih/00000001_000.png" "$SHARED/samples/nih/00027426_000.png"
  run /usr/bin/python3 -c "
import numpy as np; a = np.load('$T/emb.npy'); print(a.shape, a.dtype)
k = open('$T/emb.keys.tsv').read().split('\n')
assert k[0] == 'index\tkey' and k[1] == '0\t00000001_000' and k[2] == '1\t00027426_000', k
assert np.isfinite(a).all()"
  echo "$output"
  [ "$status" -eq 0 ]
  [ "$output" = "(2, 48) float32" ]
}

@test "--format npy needs -o and one of cls or cx5" {
  m=$(tiny_model)
  run cx-embed --model "$m" --format npy < /dev/null
  [ "$status" -eq 2 ]
  run cx-embed --model "$m" --format npy --emit cls,patch -o "$T/x" < /dev/null
  [ "$status" -eq 2 ]
  [[ "$output" == *"exactly one of --emit cls"* ]]
}

@test "bad models: no weights, unknown model_type, wrong shape, truncated safetensors" {
  mkdir -p "$T/noweights" && cp "$FIX/tiny/config.json" "$T/noweights/"
  run cx-embed --model "$T/noweights" < /dev/null
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == "cx-embed: "*"noweights"* ]]
  [ "${#lines[@]}" -eq 1 ]

  mkdir -p "$T/unknown" && cp "$FIX/tiny/model.safetensors" "$T/unknown/"
  sed 's/"dinov2_with_registers"/"swin"/' "$FIX/tiny/config.json" > "$T/unknown/config.json"
  run cx-embed --model "$T/unknown" < /dev/null
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"unknown/config.json"*"swin"* ]]

  mkdir -p "$T/shape" && cp "$FIX/tiny/model.safetensors" "$T/shape/"
  sed 's/"hidden_size": 48/"hidden_size": 96/' "$FIX/tiny/config.json" > "$T/shape/config.json"
  run cx-embed --model "$T/shape" < /dev/null
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"shape"* ]]

  mkdir -p "$T/cut" && cp "$FIX/tiny/config.json" "$T/cut/"
  head -c 5000 "$FIX/tiny/model.safetensors" > "$T/cut/model.safetensors"
  run cx-embed --model "$T/cut" < /dev/null
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"cut/model.safetensors"* ]]
}

@test "an image smaller than one patch fails by key; --skip-bad skips it and exits 3" {
  /usr/bin/python3 - "$T/small.tar" <<'PY'
import io, sys, tarfile, numpy as np
with tarfile.open(sys.argv[1], "w") as t:
    for key, shape in (("ok", (3, 28, 28)), ("tiny", (3, 10, 10))):
        b = io.BytesIO(); np.save(b, np.zeros(shape, np.float32))
        i = tarfile.TarInfo(key + ".pixel_values.npy"); i.size = b.tell(); b.seek(0); t.addfile(i, b)
PY
  run cx-embed --model "$FIX/tiny" < "$T/small.tar"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"tiny"*"smaller than one 14x14 patch"* ]]
  cx-embed --model "$FIX/tiny" --skip-bad < "$T/small.tar" > "$T/s.cx" 2> "$T/err" || rc=$?
  [ "${rc:-0}" -eq 3 ]
  grep -q "^cx-embed: tiny: .*smaller than one 14x14 patch.* (skipped)$" "$T/err"
  grep -q "^cx-embed: 1 of 2 records skipped (bad input); 1 embedding written$" "$T/err"
  # -q never silences a skipped input
  cx-embed -q --model "$FIX/tiny" --skip-bad < "$T/small.tar" > "$T/s2.cx" 2> "$T/err2" || true
  grep -q "^cx-embed: tiny: .* (skipped)$" "$T/err2"
  run tar tf "$T/s.cx"
  [[ "$output" == *"ok.cls.npy"* ]]
  [[ "$output" != *"tiny.cls.npy"* ]]
}

@test "a truncated input stream fails with exit 1 and the output is not complete" {
  command -v cx-phantom >/dev/null || skip "cx-phantom not built"
  m=$(tiny_model)
  cx-phantom -n 4 --size 64 > "$T/p.cx"
  head -c $(( $(stat -c %s "$T/p.cx") - 2000 )) "$T/p.cx" > "$T/cut.cx"
  run cx-embed --model "$m" -o "$T/out.cx" "$T/cut.cx"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"truncated"* ]]
  [ ! -e "$T/out.cx" ]
}

@test "usage: --model is required (exit 2); --device cuda without CUDA is a clear error" {
  run cx-embed < /dev/null
  [ "$status" -eq 2 ]
  # one line that says where a model comes from (issue 15, item 5)
  [[ "${lines[0]}" == "cx-embed: --model is required: give a Hugging Face encoder folder"*"CX_MODEL"*"cx-model init --preset tiny DIR"* ]]
  if /usr/bin/python3 -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    skip "a GPU is visible"
  fi
  run cx-embed --model "$FIX/tiny" --device cuda < /dev/null
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"CUDA is not available"* ]]
}

@test "writing to a full disk fails with exit 1" {
  /usr/bin/python3 "$HELP" write "$FIX/tiny/cases.safetensors" "$T/in.tar"
  run sh -c "cx-embed --model '$FIX/tiny' < '$T/in.tar' > /dev/full"
  echo "$output"
  [ "$status" -eq 1 ]
  [[ "$output" == *"standard output"* ]]
}

# patch4 for segmentation decoders, and the box of the image the patch grid covers: a 300 x 200 image,
# shortest edge 64 -> 96 x 64 (HF truncates), centre crop 56: x in [20, 76) of the resized image,
# i.e. [20 * 300 / 96, 76 * 300 / 96) = [62.5, 237.5); y in [4, 60) -> [12.5, 187.5).
@test "patch4: the last blocks' normed tokens (the last equals patch); patch_grid names the covered box" {
  m=$(tiny_model)
  /usr/bin/python3 - "$T/wide.png" <<'PY'
import sys
import numpy as np
from PIL import Image
Image.fromarray((np.arange(300 * 200) % 251).astype(np.uint8).reshape(200, 300)).save(sys.argv[1])
PY
  cx-embed --model "$m" --emit patch,patch4 --patch-dtype f32 "$T/wide.png" > "$T/w.cx"
  run /usr/bin/python3 - "$T/w.cx" <<'PY'
import io, json, sys, tarfile
import numpy as np
t = tarfile.open(sys.argv[1])
h = json.load(t.extractfile("__cx__"))
p = np.load(io.BytesIO(t.extractfile("wide.patch.npy").read()))
p4 = np.load(io.BytesIO(t.extractfile("wide.patch4.npy").read()))
j = json.load(t.extractfile("wide.json"))
n = min(4, h["model"]["num_hidden_layers"])
assert p4.shape == (n,) + p.shape and list(p4.shape) == h["fields"]["patch4.npy"]["shape"], (p4.shape, p.shape)
assert np.array_equal(p4[-1], p)
assert not np.allclose(p4[0], p)
g = j["patch_grid"]
assert g == {"image_size": [300, 200], "box": [62.5, 12.5, 237.5, 187.5], "grid": [4, 4]}, g
print("ok")
PY
  echo "$output"
  [ "$output" = ok ]
}

# --preprocess hf is BitImageProcessor's pipeline, which converts to RGB itself: a colour file must
# stay colour (it was turned gray first, off by up to 3.9 after normalisation). The golden is
# Pillow + the processor's documented steps in /usr/bin/python3: convert("RGB"), shortest edge 64
# bicubic (long side truncated), centre crop 56, x / 255, ImageNet normalisation. Our resize and
# Pillow's agree on uint8 exactly, so 1e-4 covers float32 rounding of the last two steps only.
@test "--preprocess hf keeps an RGB PNG/JPEG in colour: pixel_values match Pillow + BitImageProcessor within 1e-4" {
  /usr/bin/python3 -c 'import PIL' 2>/dev/null || skip "needs Pillow in /usr/bin/python3"
  m=$(tiny_model)
  run /usr/bin/python3 - "$T" "$FIX/preproc" <<'PY'
import sys, numpy as np
from PIL import Image
t, fix = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(5)
rgb = rng.integers(0, 256, size=(71, 97, 3), dtype=np.uint8)
rgb[:, :40, 0] = 250  # strong colour: gray would be far off
Image.fromarray(rgb, "RGB").save(t + "/colour_png.png")
Image.fromarray(rgb, "RGB").save(t + "/colour_jpg.jpg", quality=95)
def golden(path):
    im = Image.open(path).convert("RGB")
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(64 * long / short)
    size = (64, new_long) if w <= h else (new_long, 64)
    im = im.resize(size, Image.BICUBIC)
    a = np.asarray(im)
    top, left = (a.shape[0] - 56) // 2, (a.shape[1] - 56) // 2
    a = a[top:top + 56, left:left + 56]
    x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)
for name in ("colour_png.png", "colour_jpg.jpg"):
    np.save(t + "/" + name.split(".")[0] + ".golden.npy", golden(t + "/" + name))
np.save(t + "/gray8.golden.npy", golden(fix + "/gray8_300x240.png"))
PY
  echo "$output"
  [ "$status" -eq 0 ]
  cp "$FIX/preproc/gray8_300x240.png" "$T/gray8.png"
  cx-embed --model "$m" --emit pixel_values --no-provenance "$T/colour_png.png" "$T/colour_jpg.jpg" "$T/gray8.png" > "$T/pv.cx"
  run /usr/bin/python3 - "$T" <<'PY'
import io, sys, tarfile, numpy as np
t = sys.argv[1]
with tarfile.open(t + "/pv.cx") as tar:
    got = {m.name.split(".")[0]: np.load(io.BytesIO(tar.extractfile(m).read()))
           for m in tar.getmembers() if m.name.endswith("pixel_values.npy")}
bad = False
for key in ("colour_png", "colour_jpg", "gray8"):
    d = float(np.abs(got[key] - np.load(t + "/" + key + ".golden.npy")).max())
    print(key, d)
    bad |= not d <= 1e-4
sys.exit(1 if bad else 0)
PY
  echo "$output"
  [ "$status" -eq 0 ]
}

# CPU bf16: where the CPU has bf16 units (AVX512_BF16 / AMX) it runs through oneDNN, -v names the
# path, and every CLS stays within cosine 0.9999 of f32 (bf16 keeps 8 significant bits per matmul
# operand; LayerNorm and softmax statistics stay f32). Elsewhere: exit 2 naming what is missing.
@test "--precision bf16 on the CPU: runs with -v naming the path and CLS within cosine 0.9999 of f32, or exit 2 saying why" {
  /usr/bin/python3 "$HELP" write "$FIX/tiny/cases.safetensors" "$T/in.tar"
  run cx-embed --model "$FIX/tiny" --precision bf16 -v -o "$T/bf16.cx" "$T/in.tar"
  echo "$output"
  if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo && grep -qw avx512bw /proc/cpuinfo; then
    [ "$status" -eq 0 ]
    [[ "$output" == *"compute: cpu bf16 ("*"bf16"*", oneDNN)"* ]]
    cx-embed --model "$FIX/tiny" -o "$T/f32.cx" "$T/in.tar"
    run /usr/bin/python3 - "$T/f32.cx" "$T/bf16.cx" <<'PY'
import io, sys, tarfile, numpy as np
def cls(p):
    with tarfile.open(p) as t:
        return {m.name: np.load(io.BytesIO(t.extractfile(m).read())).astype(np.float64)
                for m in t.getmembers() if m.name.endswith("cls.npy")}
a, b = cls(sys.argv[1]), cls(sys.argv[2])
assert a.keys() == b.keys() and len(a) >= 5, (sorted(a), sorted(b))
cos = min(float(a[k] @ b[k] / np.linalg.norm(a[k]) / np.linalg.norm(b[k])) for k in a)
print(cos)
sys.exit(0 if cos >= 0.9999 else 1)
PY
    echo "$output"
    [ "$status" -eq 0 ]
  else
    [ "$status" -eq 2 ]
    [[ "$output" == "cx-embed: --precision bf16: this "*"; the CPU path computes in f32 here"* ]]
  fi
  run cx-embed --model "$FIX/tiny" --precision f16 "$T/in.tar"
  [ "$status" -eq 2 ]
  [[ "$output" == *"f16 is offered on CUDA only"* ]]
}

@test "an unknown option is named even when a required one is missing too (exit 2)" {
  run --separate-stderr cx-embed --bogus
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-embed: unknown option --bogus"* ]]
  run --separate-stderr cx-embed --threads 2 --bogus=3 x.png
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-embed: unknown option --bogus"* ]]
  # a plain missing requirement still says so
  run --separate-stderr cx-embed x.png
  [ "$status" -eq 2 ]
  [[ "$stderr" == "cx-embed: --model is required"* ]]
}

@test "non-finite encoder output is an error naming the record; --skip-bad skips it with exit 3 (issue 08 defect 6)" {
  cx-model init --preset tiny "$T/m"
  # Finite weights whose output overflows: the final norm's scale at 3e38 makes inf of any value above 1.
  /usr/bin/python3 - "$T/m/model.safetensors" <<'PY'
import json, struct, sys
p = sys.argv[1]
raw = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
a, b = h["layernorm.weight"]["data_offsets"]
for o in range(8 + n + a, 8 + n + b, 4):
    raw[o:o + 4] = struct.pack("<f", 3e38)
open(p, "wb").write(raw)
PY
  cx-phantom -n 2 --size 64 -o "$T/p.cx"
  run -1 --separate-stderr cx-embed --model "$T/m" -o "$T/e.cx" "$T/p.cx"
  [ "$stderr" = "cx-embed: phantom-000000: the encoder's output holds non-finite values (NaN or inf, or patch tokens beyond float16's range)" ]
  [ ! -e "$T/e.cx" ]
  run -3 --separate-stderr cx-embed --model "$T/m" --skip-bad -o "$T/e.cx" "$T/p.cx"
  [[ "$stderr" == *"cx-embed: phantom-000001: the encoder's output holds non-finite values"*"(skipped)"* ]]
  [[ "$stderr" == *"2 of 2 records skipped"* ]]
}

@test "image files: a .dcm that is not DICOM says so; --skip-bad skips bad files by name and exits 3 (issue 08 defect 8)" {
  m=$(tiny_model)
  /usr/bin/python3 -c "
from PIL import Image; import numpy as np
Image.fromarray((np.arange(64*64).reshape(64,64)%256).astype('uint8')).save('$T/ok.png')" || skip "needs Pillow"
  echo "not an image at all" > "$T/bad.dcm"
  head -c 100 "$T/ok.png" > "$T/cut.png"
  run -1 --separate-stderr cx-embed --model "$m" -o "$T/x.cx" "$T/ok.png" "$T/bad.dcm" "$T/cut.png"
  [ "$stderr" = "cx-embed: $T/bad.dcm: not a DICOM file (no DICM marker and no DICOM data elements at the start)" ]
  [ ! -e "$T/x.cx" ]
  run -3 --separate-stderr cx-embed --model "$m" --skip-bad -o "$T/x.cx" "$T/ok.png" "$T/bad.dcm" "$T/cut.png"
  [ "${#stderr_lines[@]}" -eq 3 ]
  [ "${stderr_lines[0]}" = "cx-embed: $T/bad.dcm: not a DICOM file (no DICM marker and no DICOM data elements at the start) (skipped)" ]
  [[ "${stderr_lines[1]}" == "cx-embed: $T/cut.png: truncated PNG: file ends after 100 bytes (skipped)" ]]
  [ "${stderr_lines[2]}" = "cx-embed: 2 of 3 records skipped (bad input); 1 embedding written" ]
  run tar tf "$T/x.cx"
  [ "$output" = "$(printf '__cx__\nok.json\nok.cls.npy\n__end__')" ]
}

@test "--threads beyond the CPUs available computes on those CPUs, with a warning (issue 08 defect 10)" {
  m=$(tiny_model)
  cx-phantom -n 2 --size 64 -o "$T/p.cx"
  cpus=$(nproc)
  run -0 --separate-stderr timeout 120 cx-embed --model "$m" --threads 1024 -o "$T/a.cx" "$T/p.cx"
  [ "$stderr" = "cx-embed: warning: --threads 1024 is more than the $cpus CPU(s) available; computing on $cpus" ]
  cx-embed --model "$m" --threads "$cpus" -o "$T/b.cx" "$T/p.cx"
  cmp <(tar xOf "$T/a.cx" phantom-000001.cls.npy) <(tar xOf "$T/b.cx" phantom-000001.cls.npy)
}

@test "a model folder without preprocessor_config.json: one line saying what to do next (issue 15, item 5)" {
  mkdir -p "$T/nopre"
  ln -s "$FIX/tiny/config.json" "$FIX/tiny/model.safetensors" "$T/nopre/"
  cx-phantom -n 1 --size 64 -q -o "$T/p.cx"
  run --separate-stderr cx-embed --model "$T/nopre" "$T/p.cx"
  [ "$status" -eq 1 ]
  [ "${#stderr_lines[@]}" -eq 1 ]
  [[ "$stderr" == "cx-embed: $T/nopre/preprocessor_config.json: not found, so images cannot be preprocessed (give --preprocess cxformer, or records with pixel_values.npy)" ]]
}
