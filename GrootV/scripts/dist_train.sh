#!/usr/bin/env bash
# Train a GrootV detector/segmentor on several GPUs of one node (or several nodes).
#   bash GrootV/scripts/dist_train.sh CONFIG GPUS [options of python -m grootv.mm.train]
# e.g. bash GrootV/scripts/dist_train.sh configs/coco/mask_rcnn_grootv_t_fpn_1x_coco.py 8
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (as torchrun takes them);
# PYTHON picks the interpreter (default: the repository's .venv/bin/python, else python on the PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The project's environment (README: Set-up) when there is one, so that a new shell needs no activation.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python
  [ -x "$ROOT/.venv/bin/python" ] && PYTHON="$ROOT/.venv/bin/python"
fi
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [train options]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
exec "$PYTHON" -m torch.distributed.run --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" --nproc_per_node "$GPUS" \
  --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
  -m grootv.mm.train "$CONFIG" --launcher pytorch "$@"
