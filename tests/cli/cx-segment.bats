#!/usr/bin/env bats
# cx-segment: usage and exit codes, '-', truncated and wrong input, >/dev/full, the encoder check,
# determinism, and the end-to-end runs of issue 7: phantoms (lungs and heart) -> cx-embed (a tiny
# random-init encoder written by cx-model) -> train -> predict on other phantoms -> cx-eval dice;
# CheXmask RLE out, checked against CheXmask's numpy decoder on masks touching the border and an
# empty structure; overlays; and the real Shenzhen images with their lung masks.
# Self-contained (PATH must hold the build's bin; ctest sets it, by hand:
# PATH=$PWD/build/bin:$PATH bats tests/cli/cx-segment.bats).

bats_require_minimum_version 1.5.0

setup_file() {
  SRC=${CX_SOURCE:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
  SHARED=${CX_SHARED:-$SRC/../shared}
  D=$BATS_FILE_TMPDIR
  export D
  # A tiny random-init encoder: hidden 64, 4 layers, 112 px input, an 8 x 8 patch grid.
  cx-model init --preset tiny --seed 0 "$D/tiny" 2>/dev/null
  cx-model init --preset tiny --seed 1 "$D/other" 2>/dev/null
  cx-phantom -n 120 --size 128 --seed 1 -q -o "$D/train.phantom"
  cx-phantom -n 40 --size 128 --seed 2 -q -o "$D/val.phantom"
  cx-phantom -n 40 --size 128 --seed 3 -q -o "$D/test.phantom"
  for s in train val test; do
    cx-embed --model "$D/tiny" --emit patch,patch4 --keep-image --threads 2 -q -o "$D/$s.cx" "$D/$s.phantom"
  done
  cx-segment train "$D/train.cx" --val "$D/val.cx" --feature patch4 --head conv --hidden 64 --epochs 15 --stride 4 \
    --seed 3 --threads 2 -q -o "$D/dec"
}

setup() {
  load helpers/common
  cx_setup
  [ -f "$D/dec/head.json" ] || skip "setup failed"
}

@test "--help and --version exit 0; no subcommand, a bad option or no -o for train is a usage error (exit 2)" {
  run cx-segment --help
  [ "$status" -eq 0 ]
  [[ "$output" == *"train"*"predict"* && "$output" == *"Exit status"* ]]
  run cx-segment --version
  [ "$status" -eq 0 ]
  [[ "$output" == cx-segment\ cx\ * ]]
  run cx-segment
  [ "$status" -eq 2 ]
  run cx-segment train "$D/train.cx" -o "$D/x" --head unet
  [ "$status" -eq 2 ]
  run cx-segment train "$D/train.cx"
  [ "$status" -eq 2 ]
  [[ "$output" == *"give -o HEADDIR"* ]]
}

@test "a terminal on stdin and no input prints usage and exits 2" {
  run_on_terminal cx-segment predict "$D/dec"
  [ "$status" -eq 2 ]
  [[ "$output" == *"no input given and standard input is a terminal"* ]]
}

@test "phantoms end to end: the decoder on patch4 segments lungs and heart; cx-eval scores the stream" {
  run jq -r '[.format, .feature, .head.type, .head.in, .head.hidden, (.classes | join(",")), .stride, .encoder.id] | map(tostring) | join(" ")' "$D/dec/head.json"
  [ "$output" = "cx-seghead patch4 conv 256 64 background,left lung,right lung,heart 4 tiny" ]
  cx-segment predict "$D/dec" "$D/test.cx" -o "$D/pred.cx"
  # The predicted stream: masks at the image's size (128), tokens dropped, the image kept.
  run "$PY" - "$D/pred.cx" <<'PY'
import io, json, sys, tarfile
import numpy as np
from PIL import Image
t = tarfile.open(sys.argv[1])
names = t.getnames()
assert not any(n.endswith(("patch.npy", "patch4.npy")) for n in names), names[:8]
h = json.load(t.extractfile("__cx__"))
assert h["fields"]["mask.png"]["classes"] == ["background", "left lung", "right lung", "heart"], h["fields"]["mask.png"]
m = np.array(Image.open(io.BytesIO(t.extractfile("phantom-000000.mask.png").read())))
assert m.shape == (128, 128) and m.dtype == np.uint8 and set(np.unique(m)) <= {0, 1, 2, 3}, (m.shape, np.unique(m))
print(len([n for n in names if n.endswith(".mask.png")]))
PY
  [ "$status" -eq 0 ]
  [ "$output" = 40 ]
  run cx-eval dice --bootstrap 200 "$D/test.cx" "$D/pred.cx"
  [ "$status" -eq 0 ]
  echo "$output" > "$D/dice.tsv"
  echo "# phantom test Dice (conv decoder, random-init tiny encoder): $(awk -F'\t' '$1 == "dice" { printf "%s %s [%s, %s]; ", $2, $5, $7, $8 }' "$D/dice.tsv")" >&3
  # Random-init encoder, 120 training phantoms, 15 epochs: measured 0.85 mean; a head that learned
  # nothing scores ~0 (background everywhere) and the lung/heart prior of a blind guess ~0.5.
  for c in "left lung" "right lung" heart mean; do
    v=$(awk -F'\t' -v c="$c" '$1 == "dice" && $2 == c { print $5 }' "$D/dice.tsv")
    awk -v a="$v" 'BEGIN { exit !(a > 0.7) }'
  done
  mean=$(awk -F'\t' '$1 == "dice" && $2 == "mean" { print $5 }' "$D/dice.tsv")
  awk -v a="$mean" 'BEGIN { exit !(a > 0.8) }'
}

@test "the linear probe on patch: trains, predicts, and the same seed gives the same head bytes" {
  cx-segment train "$D/train.cx" --val "$D/val.cx" --stride 4 --epochs 5 --seed 4 --threads 2 -q -o "$D/lin"
  cx-segment train --val "$D/val.cx" --stride 4 --epochs 5 --seed 4 --threads 2 -q -o "$D/lin2" - < "$D/train.cx"
  cmp "$D/lin/head.safetensors" "$D/lin2/head.safetensors"
  [ "$(jq -r '.head.type, .head.in, .feature' "$D/lin/head.json" | paste -sd' ')" = "linear 64 patch" ]
  cx-segment predict --no-provenance "$D/lin" "$D/test.cx" > "$D/a.cx"
  cx-segment predict --no-provenance "$D/lin" -o "$D/b.cx" - < "$D/test.cx"
  cmp "$D/a.cx" "$D/b.cx"
}

@test "--png-dir, --rle and --overlay: the RLE decodes (CheXmask's numpy) to the PNG label maps" {
  cx-segment predict --no-provenance "$D/dec" "$D/test.cx" --png-dir "$D/png" --rle "$D/pred.csv" --overlay "$D/ov" > "$D/stdout"
  # The stream still goes to standard output, the same bytes as without the files (issue 11, defect 11).
  cx-segment predict --no-provenance "$D/dec" "$D/test.cx" -o "$T/plain.cx"
  cmp "$D/stdout" "$T/plain.cx"
  [ "$(ls "$D/png" | wc -l)" -eq 40 ]
  [ "$(ls "$D/ov" | wc -l)" -eq 40 ]
  [ "$(head -1 "$D/pred.csv")" = "key,Left Lung,Right Lung,Heart,Height,Width" ]
  run "$PY" - "$D/pred.csv" "$D/png" "$D/ov" <<'PY'
import csv, sys
import numpy as np
from PIL import Image
def decode(rle, h, w):  # CheXmask's decoder: 1-based starts, row-major
    m = np.zeros(h * w, np.uint8)
    r = [int(x) for x in rle.split()]
    for s, n in zip(r[0::2], r[1::2]):
        m[s - 1:s - 1 + n] = 1
    return m.reshape(h, w)
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 40
for r in rows:
    lm = np.array(Image.open(f"{sys.argv[2]}/{r['key']}.png"))
    h, w = int(r["Height"]), int(r["Width"])
    assert lm.shape == (h, w)
    for k, col in enumerate(["Left Lung", "Right Lung", "Heart"], 1):
        assert np.array_equal(decode(r[col], h, w), (lm == k).astype(np.uint8)), (r["key"], col)
ov = np.array(Image.open(f"{sys.argv[3]}/{rows[0]['key']}.png"))
assert ov.shape == (128, 128, 3)
colours = {tuple(c) for c in ov.reshape(-1, 3)}
assert {(230, 25, 75), (60, 180, 75), (0, 130, 200)} <= colours  # the three outlines are drawn
print("ok")
PY
  [ "$status" -eq 0 ]
  [ "$output" = ok ]
  # The CSV goes back in through cx-ingest's chexmask adapter: the same label maps.
  mkdir -p "$D/img"
  for k in phantom-000000 phantom-000001; do
    tar -xOf "$D/test.phantom" "$k.png" > "$D/img/$k.png"
  done
  head -3 "$D/pred.csv" > "$D/two.csv"
  cx-ingest --dataset chexmask "$D/two.csv" --root "$D/img" -q > "$D/back.cx"
  run "$PY" - "$D/back.cx" "$D/png" <<'PY'
import io, sys, tarfile
import numpy as np
from PIL import Image
t = tarfile.open(sys.argv[1])
for k in ["phantom-000000", "phantom-000001"]:
    got = np.array(Image.open(io.BytesIO(t.extractfile(f"{k}.mask.png").read())))
    want = np.array(Image.open(f"{sys.argv[2]}/{k}.png"))
    assert np.array_equal(got, want), k
print("ok")
PY
  [ "$output" = ok ]
}

@test "with --rle, --png-dir or --overlay and no -o the stream goes to standard output: predict | cx-eval dice" {
  # Defect 11 of issue 11: the side outputs used to take the stream off stdout (an empty pipe, exit 0).
  cx-segment predict -q "$D/dec" --rle "$T/m.csv" "$D/test.cx" | cx-eval dice --bootstrap 0 "$D/test.cx" - > "$T/dice.tsv"
  [ "$(wc -l < "$T/m.csv")" -eq 41 ]
  mean=$(awk -F'\t' '$1 == "dice" && $2 == "mean" { print $5 }' "$T/dice.tsv")
  awk -v a="$mean" 'BEGIN { exit !(a > 0.8) }'
  cx-segment predict "$D/dec" --png-dir "$T/png" --overlay "$T/ov" "$D/test.cx" | tar tf - > "$T/members"
  [ "$(grep -c '\.mask\.png$' "$T/members")" -eq 40 ]
  [ "$(ls "$T/png" | wc -l)" -eq 40 ]
  # The CSV and the stream cannot both be standard output.
  run cx-segment predict "$D/dec" --rle - "$D/test.cx"
  [ "$status" -eq 2 ]
  [[ "$output" == *"--rle - and the stream cannot share standard output: give -o FILE"* ]]
  cx-segment predict "$D/dec" --rle - -o "$T/s.cx" "$D/test.cx" > "$T/m2.csv"
  cmp "$T/m.csv" "$T/m2.csv"
}

@test "RLE of masks touching the border and of an empty structure, from tokens a linear head decodes" {
  # Tokens are the one-hot code of each grid cell's class (6 x 6 grid, stride 4: 24 x 24 masks);
  # class 1 touches the top-left border, class 2 the bottom-right, class 3 ("c") never occurs.
  "$PY" - "$T/onehot.tar" <<'PY'
import io, json, sys, tarfile
import numpy as np
from PIL import Image
def add(t, name, data):
    ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
with tarfile.open(sys.argv[1], "w", format=tarfile.USTAR_FORMAT) as t:
    for i in range(12):
        g = np.zeros((6, 6), np.uint8)
        g[: 2 + i % 3, : 3] = 1
        g[4:, 3 + i % 2:] = 2
        tok = np.eye(4, dtype=np.float16)[g]  # [6, 6, 4]
        buf = io.BytesIO(); np.save(buf, tok); add(t, f"r{i:02d}.patch.npy", buf.getvalue())
        m = io.BytesIO(); Image.fromarray(np.kron(g, np.ones((4, 4), np.uint8))).save(m, "PNG")
        add(t, f"r{i:02d}.mask.png", m.getvalue())
PY
  cx-segment train "$T/onehot.tar" --classes a,b,c --stride 4 --epochs 60 --lr 0.05 --dropout 0 --threads 2 -q -o "$T/h"
  run cx-segment predict "$T/h" "$T/onehot.tar" -o "$T/p.cx"
  [ "$status" -eq 1 ]
  [[ "$output" == *"names no encoder"*"--ignore-encoder"* ]]
  cx-segment predict --ignore-encoder "$T/h" "$T/onehot.tar" -o "$T/p.cx" --rle "$T/p.csv" --png-dir "$T/png"
  [ "$(head -1 "$T/p.csv")" = "key,a,b,c,Height,Width" ]
  run "$PY" - "$T/p.csv" "$T/png" "$SRC/tests/data" <<'PY'
import csv, sys
import numpy as np
from PIL import Image
sys.path.insert(0, sys.argv[3])
from chexmask_rle_reference import decode, encode  # CheXmask's own numpy RLE
border = 0
for r in csv.DictReader(open(sys.argv[1])):
    lm = np.array(Image.open(f"{sys.argv[2]}/{r['key']}.png"))
    assert r["c"] == "", r["c"]                     # the empty structure: an empty cell
    for k, col in enumerate("abc", 1):
        want = (lm == k).astype(np.uint8)
        assert np.array_equal(decode(r[col], 24, 24), want), (r["key"], col)
        assert r[col] == encode(want), (r["key"], col)   # the same bytes as CheXmask's encoder
    border += int((lm[0] == 1).any() and (lm[:, 0] == 1).any() and (lm[-1] == 2).any() and (lm[:, -1] == 2).any())
print(border)
PY
  [ "$status" -eq 0 ]
  [ "$output" -ge 10 ]  # the classes reach the borders in (nearly) every prediction
  run cx-eval dice --bootstrap 0 "$T/onehot.tar" "$T/p.cx"
  mean=$(echo "$output" | awk -F'\t' '$1 == "dice" && $2 == "mean" { print $5 }')
  awk -v a="$mean" 'BEGIN { exit !(a > 0.9) }'
}

@test "a stream from another encoder is refused by name (exit 1) unless --ignore-encoder" {
  cx-embed --model "$D/other" --emit patch4 -q "$D/val.phantom" > "$T/other.cx"
  run cx-segment predict "$D/dec" "$T/other.cx"
  [ "$status" -eq 1 ]
  [[ "$output" == *"cx-segment: $T/other.cx: embedded with encoder 'other'"*"trained on encoder 'tiny'"*"--ignore-encoder"* ]]
  run cx-segment predict --ignore-encoder "$D/dec" "$T/other.cx" -o "$T/o.cx"
  [ "$status" -eq 0 ]
}

@test "truncated input, no tokens, no masks, a missing or classification head, >/dev/full: named, exit 1" {
  head -c 30000 "$D/train.cx" > "$T/cut.cx"
  run cx-segment train "$T/cut.cx" -o "$T/cut"
  [ "$status" -eq 1 ]
  [[ "$output" == *"truncated"* ]]
  [ ! -e "$T/cut" ]
  run cx-segment train "$D/train.phantom" -o "$T/x"
  [ "$status" -eq 1 ]
  [[ "$output" == *"phantom-000000: no patch.npy field (embed with cx-embed --emit patch)"* ]]
  cx-phantom -n 2 --size 64 -q | cx-embed --model "$D/tiny" --emit patch -q > "$T/e.cx"
  "$PY" - "$T/e.cx" "$T/nomask.cx" <<'PY'
import sys, tarfile
src, dst = tarfile.open(sys.argv[1]), tarfile.open(sys.argv[2], "w", format=tarfile.PAX_FORMAT)
for m in src.getmembers():
    if not m.name.endswith(".mask.png"):
        dst.addfile(m, src.extractfile(m))
dst.close()
PY
  run cx-segment train "$T/nomask.cx" -o "$T/x"
  [ "$status" -eq 1 ]
  [[ "$output" == *"phantom-000000: no mask.png label map to learn from"* ]]
  run cx-segment predict "$T/nohead" "$D/test.cx"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$T/nohead: not a head folder"* ]]
  mkdir -p "$T/cls"
  echo '{"format": "cx-head", "version": "1.0"}' > "$T/cls/head.json"
  run cx-segment predict "$T/cls" "$D/test.cx"
  [ "$status" -eq 1 ]
  [[ "$output" == *"a classification head (cx-head): use it with cx-classify"* ]]
  run cx-segment predict --overlay "$T/ov" "$D/dec" "$T/e.cx"
  [ "$status" -eq 1 ]
  [[ "$output" == *"no patch4.npy field"* ]]
  cx-phantom -n 2 --size 64 -q | cx-embed --model "$D/tiny" --emit patch4 -q > "$T/e4.cx"
  run cx-segment predict --overlay "$T/ov" "$D/dec" "$T/e4.cx"
  [ "$status" -eq 1 ]
  [[ "$output" == *"phantom-000000: no image to draw the overlay on (embed with cx-embed --keep-image)"* ]]
  run sh -c "cx-segment predict '$D/dec' '$D/test.cx' > /dev/full"
  [ "$status" -eq 1 ]
  [[ "$output" == "cx-segment: standard output: "*"No space left on device"* ]]
}

@test "finetune: encoder + decoder from images learns, resumes to the same bytes, predicts from images" {
  cx-phantom -n 24 --size 128 --seed 5 -q -o "$T/ft.ph"
  cx-phantom -n 8 --size 128 --seed 6 -q -o "$T/ftv.ph"
  cx-segment finetune "$T/ft.ph" --val "$T/ftv.ph" --model "$D/tiny" --feature patch4 --head conv --hidden 32 --stride 4 \
    --epochs 20 --batch 4 --lr-backbone 1e-4 --lr-head 3e-3 --patience 0 --no-augment --threads 2 -q -o "$T/ft"
  [ "$(jq -r '.encoder_folder, .preprocess.pipeline, .training.fine_tuned_from.id' "$T/ft/head.json" | paste -sd' ')" = "encoder hf tiny" ]
  [ "$(jq -r .encoder.sha256 "$T/ft/head.json")" = "$(sha256sum "$T/ft/encoder/model.safetensors" | cut -c1-64)" ]
  ! cmp -s "$T/ft/encoder/model.safetensors" "$D/tiny/model.safetensors"
  dice=$(jq -r .metrics.val.mean_dice "$T/ft/head.json")
  echo "# fine-tuned (24 phantoms, 120 updates, no augmentation) validation mean Dice: $dice" >&3
  awk -v a="$dice" 'BEGIN { exit !(a > 0.75) }'
  # Images through the head's own encoder give the masks that its float32 tokens from cx-embed give.
  cx-segment predict --no-provenance "$T/ft" "$T/ftv.ph" -o "$T/a.cx"
  cx-embed --model "$T/ft/encoder" --emit patch4 --patch-dtype f32 --batch 16 -q "$T/ftv.ph" |
    cx-segment predict --no-provenance "$T/ft" - -o "$T/b.cx"
  "$PY" - "$T/a.cx" "$T/b.cx" <<'PY'
import sys, tarfile
a, b = (tarfile.open(p) for p in sys.argv[1:])
names = [n for n in a.getnames() if n.endswith(".mask.png")]
assert len(names) == 8 and all(a.extractfile(n).read() == b.extractfile(n).read() for n in names)
PY
  # 2 + 2 updates with a checkpoint between equal 4 uninterrupted ones, bit for bit (augmented:
  # every draw is a function of seed, epoch and record, the mask moved with the image).
  ft() { cx-segment finetune "$T/ft.ph" --model "$D/tiny" --stride 4 --steps 4 --batch 3 --accum 2 --lr-backbone 1e-4 --seed 2 --threads 2 -q "$@"; }
  ft -o "$T/f4"
  ft -o "$T/f22" --checkpoint "$T/ck" --stop-after 2
  [ "$(jq -r .step "$T/ck/state.json")" = 2 ]
  [ ! -e "$T/f22" ]
  ft -o "$T/f22" --resume "$T/ck"
  cmp "$T/f4/head.safetensors" "$T/f22/head.safetensors"
  cmp "$T/f4/encoder/model.safetensors" "$T/f22/encoder/model.safetensors"
  run cx-segment finetune "$T/ft.ph" --model "$D/tiny" --stride 8 --steps 4 --batch 3 --accum 2 --lr-backbone 1e-4 --seed 2 -q -o "$T/f5" --resume "$T/ck"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$T/ck: the checkpoint was made with other settings: stride (checkpoint 4, now 8)"* ]]
}

@test "Shenzhen: real radiographs and lung masks (threshold 128) -> train on 5, Dice on the other 3" {
  require_shared samples/shenzhen/masks
  cx-ingest --help | grep -q -- "--masks" || skip "cx-ingest has no --masks"
  cx-model init --preset tiny --seed 0 "$T/enc" 2>/dev/null
  # 224 px input (16 x 16 grid) for the real images
  jq '.size.shortest_edge = 224 | .crop_size = {"height": 224, "width": 224}' "$T/enc/preprocessor_config.json" > "$T/pp.json"
  mv "$T/pp.json" "$T/enc/preprocessor_config.json"
  cx-ingest --masks "$SHARED/samples/shenzhen/masks" --mask-threshold 128 --mask-classes lung --size 256 -q \
    "$SHARED/samples/shenzhen/images" > "$T/sz.cx"
  cx-embed --model "$T/enc" --emit patch,patch4 --keep-image --threads 2 -q "$T/sz.cx" > "$T/sz.emb"
  # The first 5 records to train on, the other 3 to test, each a complete cx stream (header kept).
  "$PY" - "$T/sz.emb" "$T/tr.cx" "$T/te.cx" <<'PY'
import io, json, sys, tarfile
src = tarfile.open(sys.argv[1])
members = src.getmembers()
keys = sorted({m.name.split(".")[0] for m in members if not m.name.startswith("__")})
outs = [tarfile.open(p, "w", format=tarfile.PAX_FORMAT) for p in sys.argv[2:]]
for o in outs:
    o.addfile(src.getmember("__cx__"), src.extractfile("__cx__"))
for m in members:
    if not m.name.startswith("__"):
        outs[0 if keys.index(m.name.split(".")[0]) < 5 else 1].addfile(m, src.extractfile(m))
for o, n in zip(outs, (5, len(keys) - 5)):
    end = json.dumps({"records": n}).encode()
    ti = tarfile.TarInfo("__end__"); ti.size = len(end); o.addfile(ti, io.BytesIO(end)); o.close()
PY
  cx-segment train "$T/tr.cx" --feature patch4 --head conv --hidden 64 --epochs 40 --stride 4 --threads 2 -q -o "$T/sz"
  cx-segment predict "$T/sz" "$T/te.cx" -o "$T/szp.cx" --overlay "$T/szov"
  run cx-eval dice --bootstrap 100 "$T/te.cx" "$T/szp.cx"
  [ "$status" -eq 0 ]
  lung=$(echo "$output" | awk -F'\t' '$1 == "dice" && $2 == "lung" { print $5 }')
  echo "# Shenzhen lung Dice on 3 held-out images (tiny random-init encoder, 5 training images): $lung" >&3
  awk -v a="$lung" 'BEGIN { exit !(a > 0.7) }'
}
