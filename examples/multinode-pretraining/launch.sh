#!/bin/sh
# launch.sh: start a command as NPROC_PER_NODE ranks on this node, with the variables torchrun sets
# (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), which cx-pretrain train
# reads to join the others through c10d (Gloo on CPU, NCCL with a CUDA LibTorch). Run it once per node:
#
#   node1$ NNODES=2 NODE_RANK=0 NPROC_PER_NODE=8 MASTER_ADDR=node1 MASTER_PORT=29500 \
#            sh launch.sh cx-pretrain train --recipe cxformer-small --device cuda -o /shared/run chexpert.cx
#   node2$ NNODES=2 NODE_RANK=1 NPROC_PER_NODE=8 MASTER_ADDR=node1 MASTER_PORT=29500 sh launch.sh ...same...
#
# Rank = NODE_RANK * NPROC_PER_NODE + local rank. Only rank 0 writes the run folder, so -o must be on a
# file system that every node sees the same (for --resume and export), as must the streams.
# GPU_PER_RANK=1 gives each rank one GPU, CUDA_VISIBLE_DEVICES=LOCAL_RANK, so that --device cuda is
# that GPU (cx-pretrain does not choose cuda:LOCAL_RANK by itself).
# SIGINT, SIGTERM or SIGHUP to the launcher is passed to every rank as SIGTERM: cx-pretrain finishes the
# step, writes a checkpoint and exits 143; the launcher exits with the first failing rank's status
# (a rank that dies ends the others: cx-pretrain's own watch).
set -eu
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
NPROC_PER_NODE=${NPROC_PER_NODE:-1}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
GPU_PER_RANK=${GPU_PER_RANK:-0}
[ $# -gt 0 ] || { echo "usage: [NNODES=N NODE_RANK=I NPROC_PER_NODE=P MASTER_ADDR=H MASTER_PORT=N] launch.sh COMMAND..." >&2; exit 2; }
for v in NNODES NODE_RANK NPROC_PER_NODE MASTER_PORT; do
  eval "x=\$$v"
  case $x in ''|*[!0-9]*) echo "launch.sh: $v=$x: expected a whole number" >&2; exit 2 ;; esac
done
[ "$NNODES" -ge 1 ] && [ "$NPROC_PER_NODE" -ge 1 ] && [ "$NODE_RANK" -lt "$NNODES" ] ||
  { echo "launch.sh: NODE_RANK=$NODE_RANK must be below NNODES=$NNODES, both counts at least 1" >&2; exit 2; }
WORLD_SIZE=$((NNODES * NPROC_PER_NODE))
LOCAL_WORLD_SIZE=$NPROC_PER_NODE
export WORLD_SIZE LOCAL_WORLD_SIZE MASTER_ADDR MASTER_PORT

pids=
forward() {
  for p in $pids; do kill -TERM "$p" 2>/dev/null || :; done
}
trap forward INT TERM HUP
i=0
while [ "$i" -lt "$NPROC_PER_NODE" ]; do
  if [ "$GPU_PER_RANK" = 1 ]; then
    RANK=$((NODE_RANK * NPROC_PER_NODE + i)) LOCAL_RANK=$i CUDA_VISIBLE_DEVICES=$i "$@" &
  else
    RANK=$((NODE_RANK * NPROC_PER_NODE + i)) LOCAL_RANK=$i "$@" &
  fi
  pids="$pids $!"
  i=$((i + 1))
done

status=0
for p in $pids; do
  while :; do
    rc=0
    wait "$p" || rc=$?
    # A trapped signal interrupts wait (status above 128) while the rank still runs: wait again.
    if [ "$rc" -gt 128 ] && kill -0 "$p" 2>/dev/null; then continue; fi
    break
  done
  [ "$status" -ne 0 ] || status=$rc
done
exit "$status"
