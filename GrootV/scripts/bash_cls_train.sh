#!/usr/bin/env bash
# Train GrootV on ImageNet-1k (or any ImageFolder dataset) with torchrun: one process
# per GPU, on one or several nodes. Without GPUs the processes run on the CPU (gloo).
#
#   DATA_PATH=/data/imagenet OUTPUT=output/grootv_t bash GrootV/scripts/bash_cls_train.sh
#
# Settings (environment variables; defaults in brackets):
#   CFG             config file            [GrootV/classification/config/grootv_t_1k_224.yaml]
#   DATA_PATH       dataset with train/ and val/ class folders      (required)
#   OUTPUT          output folder: checkpoints, metrics.jsonl, log   [output/<config name>]
#   BATCH_SIZE      images per process; the learning rate scales with the total batch [128]
#   NPROC_PER_NODE  processes per node     [number of GPUs, or 1 without]
#   NNODES          nodes                  [1]
#   NODE_RANK       this node's index      [0]
#   MASTER_ADDR     address of node 0      [127.0.0.1]
#   MASTER_PORT     a free port on node 0  [29500]
#   PYTHON          interpreter            [the repository's .venv/bin/python, else python]
# Any further arguments go to the training script, e.g.
#   bash GrootV/scripts/bash_cls_train.sh --auto-resume --opts TRAIN.EPOCHS 100
# On a multi-node cluster, start the same command on every node with its NODE_RANK, and
# set whatever NCCL variables your network needs (NCCL_SOCKET_IFNAME, NCCL_IB_DISABLE, ...).
# The paper's recipe uses a total batch of 1024: 8 GPUs x 128 (or 16 x 64, ...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

CFG="${CFG:-GrootV/classification/config/grootv_t_1k_224.yaml}"
: "${DATA_PATH:?set DATA_PATH to the dataset folder (with train/ and val/ class folders)}"
OUTPUT="${OUTPUT:-output/$(basename "$CFG" .yaml)}"
BATCH_SIZE="${BATCH_SIZE:-128}"
# The project's environment (README: Set-up) when there is one, so that a new shell needs no activation.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python
  [ -x "$ROOT/.venv/bin/python" ] && PYTHON="$ROOT/.venv/bin/python"
fi
if [ -z "${NPROC_PER_NODE:-}" ]; then
  NPROC_PER_NODE="$("$PYTHON" -c 'import torch; print(max(1, torch.cuda.device_count()))')"
fi

exec "$PYTHON" -m torch.distributed.run \
  --nnodes="${NNODES:-1}" \
  --node_rank="${NODE_RANK:-0}" \
  --nproc_per_node="$NPROC_PER_NODE" \
  --master_addr="${MASTER_ADDR:-127.0.0.1}" \
  --master_port="${MASTER_PORT:-29500}" \
  -m grootv.classification.main \
  --cfg "$CFG" \
  --batch-size "$BATCH_SIZE" \
  --data-path "$DATA_PATH" \
  --output "$OUTPUT" \
  "$@"
