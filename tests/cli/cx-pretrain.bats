#!/usr/bin/env bats
# cx-pretrain: recipes and their errors, a tiny run end to end, resume equality (after --max-steps and
# after SIGTERM), export round trip (cx-embed and an independent PyTorch ViT), 2 ranks against 1 rank with
# twice the batch, a dead rank ending the other.

bats_require_minimum_version 1.5.0
load helpers/common

# A small, fast variant of the tiny recipe: 2 images of 64 px per step, 2 local crops, 3 steps an epoch.
FAST=(train.batch_size_per_gpu=2 train.OFFICIAL_EPOCH_LENGTH=3 optim.epochs=2 optim.warmup_epochs=1
      teacher.warmup_teacher_temp_epochs=1 crops.local_crops_number=2 train.shuffle_buffer=8
      dino.head_n_prototypes=128 ibot.head_n_prototypes=128 dino.head_hidden_dim=64 ibot.head_hidden_dim=64
      student.depth=2)

setup_file() {
  export DATA=$BATS_FILE_TMPDIR/phantoms.cx
  cx-phantom -q -n 24 --size 64 --seed 5 -o "$DATA"
  # The reference run: 6 steps uninterrupted.
  cx-pretrain train -q --threads 2 --recipe tiny -o "$BATS_FILE_TMPDIR/ref" "${FAST[@]}" "$DATA"
}

setup() { cx_setup; }

# Compares two safetensors files tensor by tensor: prints the largest absolute difference.
max_diff() {
  "$PY" - "$1" "$2" <<'PY'
import json, struct, sys
import numpy as np
def read(p):
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    out = {}
    for k, v in h.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        dt = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}[v["dtype"]]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt).astype(np.float64)
    return out
x, y = read(sys.argv[1]), read(sys.argv[2])
assert sorted(x) == sorted(y), (sorted(set(x) ^ set(y)))[:5]
print(max(float(np.max(np.abs(x[k] - y[k]))) if x[k].size else 0.0 for k in x))
PY
}

last_checkpoint() { ls -d "$1"/checkpoints/step-* | tail -n 1; }

@test "usage: no subcommand, no recipe, unknown preset, unknown key, bad value, --resume with overrides" {
  run -2 cx-pretrain
  run -2 cx-pretrain train "$DATA"
  [[ "$output" == *"give --recipe NAME|FILE"* ]]
  run -2 cx-pretrain train --recipe nosuch "$DATA"
  [[ "$output" == *"--recipe nosuch: no such preset (cxformer-base, cxformer-small, dinov2-vits14, tiny) or file"* ]]
  run -2 cx-pretrain train --recipe tiny optim.base_rl=1 "$DATA"
  [[ "$output" == *"optim.base_rl=1: unknown key optim.base_rl"* ]]
  run -2 cx-pretrain train --recipe tiny train.batch_size_per_gpu=two "$DATA"
  [[ "$output" == *"override train.batch_size_per_gpu: expected an integer, not \"two\""* ]]
  run -2 cx-pretrain train --resume --recipe tiny -o "$T/r" "$DATA"
  [[ "$output" == *"--resume continues with the run's saved recipe"* ]]
  run -1 cx-pretrain train --resume -o "$T/none" "$DATA"
  [[ "$output" == *"$T/none: no checkpoint to resume"* ]]
}

@test "a recipe file with a DINOv2 key cx does not know is refused by name and line" {
  printf 'student:\n  arch: vit_small\n  interpolate_offset: 0.1\n' > "$T/r.yaml"
  run -1 cx-pretrain train --recipe "$T/r.yaml" -o "$T/run" "$DATA"
  [[ "$output" == *"$T/r.yaml: line 3: unknown key student.interpolate_offset"* ]]
  [ ! -e "$T/run/checkpoints" ]
}

@test "info --recipe prints the resolved preset with overrides" {
  run cx-pretrain info --recipe cxformer-small --set optim.base_lr=2e-4
  [ "$status" -eq 0 ]
  [[ "$output" == *"base_lr: 0.0002"* ]]
  [[ "$output" == *"head_n_prototypes: 16384"* ]]
  [[ "$output" == *"global_crops_size: 518"* ]]
}

@test "the reference run wrote its recipe, a log row per step and a checkpoint; info reads it" {
  R=$BATS_FILE_TMPDIR/ref
  [ -f "$R/recipe.yaml" ]
  [ "$(wc -l < "$R/log.tsv")" -eq 7 ]
  head -n 1 "$R/log.tsv" | grep -q $'^step\tepoch\tloss\tdino_local_crops_loss\tdino_global_crops_loss\tkoleo_loss\tibot_loss\tlr'
  # 16 columns on every row, finite numbers, steps 1..6
  awk -F'\t' 'NR > 1 { if (NF != 16 || $1 != NR - 1) exit 1; for (i = 2; i <= NF; i++) if ($i !~ /^-?[0-9.e+-]+$/) exit 1 }' "$R/log.tsv"
  [ -d "$R/checkpoints/step-000000006" ]
  run cx-pretrain info "$R"
  [ "$status" -eq 0 ]
  [[ "$output" == *"total_steps: 6"* ]]
  [[ "$output" == *"step: 6"* ]]
}

@test "a run stopped with --max-steps and resumed equals the uninterrupted run bit for bit" {
  cx-pretrain train -q --threads 2 --recipe tiny -o "$T/a" --max-steps 2 "${FAST[@]}" "$DATA"
  [ -d "$T/a/checkpoints/step-000000002" ]
  cx-pretrain train -q --threads 2 --resume -o "$T/a" --max-steps 4 "$DATA"
  cx-pretrain train -q --threads 2 --resume -o "$T/a" "$DATA"
  A=$(last_checkpoint "$T/a"); R=$(last_checkpoint "$BATS_FILE_TMPDIR/ref")
  [ "$(basename "$A")" = step-000000006 ]
  for f in student teacher optimizer loss; do cmp "$A/$f.safetensors" "$R/$f.safetensors"; done
  # the log was continued, not duplicated
  [ "$(wc -l < "$T/a/log.tsv")" -eq 7 ]
  cut -f 1-7 "$T/a/log.tsv" > "$T/a.cols"; cut -f 1-7 "$BATS_FILE_TMPDIR/ref/log.tsv" > "$T/r.cols"
  cmp "$T/a.cols" "$T/r.cols"
}

@test "a run saved before the crops' photometric keys existed resumes with their defaults, equal to a run that sets them" {
  OLD=(crops.color_jitter_prob=0.8 crops.gaussian_blur=true crops.solarize_prob=0.2)
  cx-pretrain train -q --threads 2 --recipe tiny -o "$T/b" "${FAST[@]}" "${OLD[@]}" "$DATA"
  cx-pretrain train -q --threads 2 --recipe tiny -o "$T/a" --max-steps 2 "${FAST[@]}" "${OLD[@]}" "$DATA"
  # What an earlier cx wrote: neither the run's recipe nor the checkpoint's signature has the keys.
  grep -v -e color_jitter_prob -e gaussian_blur -e solarize_prob "$T/a/recipe.yaml" > "$T/recipe.yaml"
  mv "$T/recipe.yaml" "$T/a/recipe.yaml"
  "$PY" - "$T/a/checkpoints/step-000000002/state.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for k in ("color_jitter_prob", "gaussian_blur", "solarize_prob"):
    del s["signature"]["recipe"]["crops"][k]
json.dump(s, open(sys.argv[1], "w"), indent=2)
PY
  cx-pretrain train -q --threads 2 --resume -o "$T/a" "$DATA"
  A=$(last_checkpoint "$T/a"); B=$(last_checkpoint "$T/b")
  [ "$(basename "$A")" = step-000000006 ]
  for f in student teacher optimizer loss; do cmp "$A/$f.safetensors" "$B/$f.safetensors"; done
  # a key that differs is still refused
  sed -i 's/^  base_lr: .*/  base_lr: 0.1/' "$T/a/recipe.yaml"
  run -1 cx-pretrain train -q --threads 2 --resume -o "$T/a" --max-steps 7 "$DATA"
  [[ "$output" == *"the checkpoint was made with other settings: recipe"* ]]
}

@test "SIGTERM checkpoints the step in progress and exits 143; --resume then equals the uninterrupted run" {
  # Slow each step down with a bigger batch so that the signal lands mid-run.
  cx-pretrain train -q --threads 2 --recipe tiny -o "$T/ref2" "${FAST[@]}" train.batch_size_per_gpu=4 "$DATA"
  cx-pretrain train -q --threads 2 --recipe tiny -o "$T/s" "${FAST[@]}" train.batch_size_per_gpu=4 "$DATA" &
  pid=$!
  for _ in $(seq 1 200); do [ -f "$T/s/log.tsv" ] && [ "$(wc -l < "$T/s/log.tsv")" -ge 3 ] && break; sleep 0.05; done
  kill -TERM "$pid"
  status=0; wait "$pid" || status=$?
  if [ "$status" -eq 0 ]; then skip "the run ended before the signal arrived"; fi
  [ "$status" -eq 143 ]
  S=$(last_checkpoint "$T/s")
  step=$(basename "$S" | sed 's/step-0*//')
  [ "$step" -lt 6 ]
  [ "$(tail -n 1 "$T/s/log.tsv" | cut -f 1)" -eq "$step" ]
  cx-pretrain train -q --threads 2 --resume -o "$T/s" "$DATA"
  A=$(last_checkpoint "$T/s"); R=$(last_checkpoint "$T/ref2")
  for f in student teacher optimizer loss; do cmp "$A/$f.safetensors" "$R/$f.safetensors"; done
}

@test "--max-steps 0 writes the initialisation; export gives a folder cx-embed loads" {
  cx-pretrain train -q --threads 2 --recipe tiny -o "$T/z" --max-steps 0 "${FAST[@]}" "$DATA"
  [ -d "$T/z/checkpoints/step-000000000" ]
  cx-pretrain export "$T/z" -o "$T/enc0"
  cx-pretrain export "$BATS_FILE_TMPDIR/ref" -o "$T/enc"
  for f in config.json model.safetensors preprocessor_config.json ssl_heads.safetensors; do [ -f "$T/enc/$f" ]; done
  jq -e '.model_type == "dinov2_with_registers" and .hidden_size == 96 and .num_hidden_layers == 2 and .num_register_tokens == 4 and .patch_size == 8 and .image_size == 64' "$T/enc/config.json"
  cx-phantom -q -n 3 --size 64 --seed 11 | cx-embed -q --model "$T/enc" > "$T/e.cx"
  cx-phantom -q -n 3 --size 64 --seed 11 | cx-embed -q --model "$T/enc0" > "$T/e0.cx"
  ! cmp -s "$T/e.cx" "$T/e0.cx"   # training moved the weights
}

@test "export: an independent PyTorch ViT reproduces the exported encoder to 1e-4" {
  require_python_module numpy torch
  cx-pretrain export "$BATS_FILE_TMPDIR/ref" -o "$T/enc"
  "$PY" -c "
import numpy as np
rng = np.random.default_rng(0)
np.save('$T/x.npy', rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
np.save('$T/x_local.npy', rng.standard_normal((2, 3, 32, 40)).astype(np.float32))"
  for x in x x_local; do
    "$PY" "$SRC/bench/embed/reference.py" run --model "$T/enc" --pixel-values "$T/$x.npy" --out "$T/$x.ref.npy"
    cx-model forward --model "$T/enc" --pixel-values "$T/$x.npy" -o "$T/$x.cx.npy"
    run "$PY" -c "
import numpy as np
a, b = np.load('$T/$x.ref.npy'), np.load('$T/$x.cx.npy')
assert a.shape == b.shape, (a.shape, b.shape)
print(float(np.max(np.abs(a - b))))"
    echo "$x: $output"
    [ "$status" -eq 0 ]
    "$PY" -c "import sys; sys.exit(0 if float('$output') < 1e-4 else 1)"
  done
}

@test "2 ranks (Gloo on loopback) equal 1 rank with twice the batch within 1e-4" {
  # Per-rank draws are left out so that both sides see the same computation: KoLeo (DINOv2 takes each
  # rank's nearest neighbours within its own batch), iBOT masks (drawn per rank's batch) and drop path
  # (off in tiny); shuffle_buffer=1 keeps stream order, so step k holds the same 4 images either way.
  SAME=(train.shuffle_buffer=1 dino.koleo_loss_weight=0 ibot.mask_sample_probability=0)
  cx-pretrain train -q --threads 1 --recipe tiny -o "$T/one" "${FAST[@]}" "${SAME[@]}" train.batch_size_per_gpu=4 --max-steps 4 "$DATA"
  cx-pretrain train -q --threads 1 --nproc 2 --recipe tiny -o "$T/two" "${FAST[@]}" "${SAME[@]}" train.batch_size_per_gpu=2 --max-steps 4 "$DATA"
  O=$(last_checkpoint "$T/one"); W=$(last_checkpoint "$T/two")
  [ "$(basename "$W")" = step-000000004 ]
  # The gradients of a 4-image batch are summed in another order (2 + 2, then averaged), so the weights
  # differ by float32 rounding: about 1e-7 relative per step; after 4 AdamW steps of lr <= 2e-3 the
  # largest difference stays far below 1e-4.
  d=$(max_diff "$O/teacher.safetensors" "$W/teacher.safetensors")
  echo "teacher max diff $d"
  "$PY" -c "import sys; sys.exit(0 if $d < 1e-4 else 1)"
  d=$(max_diff "$O/loss.safetensors" "$W/loss.safetensors")
  echo "centers max diff $d"
  "$PY" -c "import sys; sys.exit(0 if $d < 1e-4 else 1)"
}

@test "a rank that dies ends the other with an error naming it (torchrun-style launch, no spawner)" {
  port=$(( 20000 + RANDOM % 20000 ))
  for r in 0 1; do
    RANK=$r WORLD_SIZE=2 LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
      cx-pretrain train -q --threads 1 --recipe tiny -o "$T/d$r" "${FAST[@]}" optim.epochs=200 "$DATA" 2> "$T/err$r" &
    eval "pid$r=$!"
  done
  for _ in $(seq 1 300); do [ -f "$T/d0/log.tsv" ] && [ "$(wc -l < "$T/d0/log.tsv")" -ge 3 ] && break; sleep 0.05; done
  kill -KILL "$pid1"
  start=$SECONDS
  status=0; wait "$pid0" || status=$?   # not `run wait`: run's subshell is not the parent
  cat "$T/err0"
  [ "$status" -eq 1 ]
  [ $(( SECONDS - start )) -lt 60 ]
  grep -q "lost rank 1" "$T/err0"
}

@test "--nproc: a rank killed ends the run with an error naming it" {
  cx-pretrain train -q --threads 1 --nproc 2 --recipe tiny -o "$T/n" "${FAST[@]}" optim.epochs=200 "$DATA" 2> "$T/err" &
  pid=$!
  for _ in $(seq 1 300); do [ -f "$T/n/log.tsv" ] && [ "$(wc -l < "$T/n/log.tsv")" -ge 3 ] && break; sleep 0.05; done
  child=
  for c in $(pgrep -P "$pid"); do tr '\0' '\n' < "/proc/$c/environ" | grep -qx RANK=1 && child=$c; done
  [ -n "$child" ]
  kill -KILL "$child"
  start=$SECONDS
  status=0; wait "$pid" || status=$?
  cat "$T/err"
  [ "$status" -ne 0 ]
  [ $(( SECONDS - start )) -lt 60 ]
  grep -q "rank 1" "$T/err"
}

@test "a pipe that ends before the schedule: exit 1, a checkpoint, and the message says so" {
  run -1 bash -c "cx-phantom -q -n 4 --size 64 --seed 5 | cx-pretrain train -q --threads 2 --recipe tiny -o '$T/p' ${FAST[*]} -"
  [[ "$output" == *"the data ended after step"* ]]
  ls -d "$T"/p/checkpoints/step-* > /dev/null
}

@test "--init starts from a Hugging Face folder; a folder of another shape is refused by name" {
  cx-pretrain export "$BATS_FILE_TMPDIR/ref" -o "$T/enc"
  cx-pretrain train -q --threads 2 --recipe tiny -o "$T/i" "${FAST[@]}" --init "$T/enc" --max-steps 0 "$DATA"
  cx-pretrain export "$T/i" -o "$T/enc2"
  cmp "$T/enc/model.safetensors" "$T/enc2/model.safetensors"
  cmp "$T/enc/ssl_heads.safetensors" "$T/enc2/ssl_heads.safetensors"
  cx-model init --preset tiny "$T/other"
  run -1 cx-pretrain train -q --recipe tiny -o "$T/j" "${FAST[@]}" --init "$T/other" "$DATA"
  [[ "$output" == *"the encoder differs from the recipe's student: hidden_size 64 (recipe 96)"* ]]
}

@test "writing to a full disk fails with exit 1 and leaves no half checkpoint" {
  [ "$(id -u)" -eq 0 ] || skip "needs root to mount a tmpfs"
  mkdir "$T/full"
  mount -t tmpfs -o size=600k tmpfs "$T/full" 2>/dev/null || skip "cannot mount a tmpfs here"
  run cx-pretrain train -q --threads 2 --recipe tiny -o "$T/full/run" "${FAST[@]}" dino.head_n_prototypes=4096 "$DATA"
  echo "$output"
  # every checkpoint folder left is complete (state.json is written last); no temporaries remain
  for d in "$T"/full/run/checkpoints/*; do [ ! -e "$d" ] || [ -f "$d/state.json" ]; done
  left=$(ls -A "$T/full/run/checkpoints" | grep -c '^\.' || true)
  umount "$T/full"
  [ "$status" -eq 1 ]
  [[ "$output" == *"$T/full/run/"* ]]
  [ "$left" -eq 0 ]
}
