#!/usr/bin/env bash
# Evaluate a GrootV detector/segmentor on several GPUs of one node (or several nodes).
#   bash GrootV/scripts/dist_test.sh CONFIG CHECKPOINT GPUS [options of python -m grootv.mm.test]
# e.g. bash GrootV/scripts/dist_test.sh configs/ade20k/upernet_grootv_t_512_160k_ade20k.py work_dirs/x/iter_160000.pth 8 --tta
# Several nodes: NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT (as torchrun takes them);
# PYTHON picks the interpreter (default: the repository's .venv/bin/python, else python on the PATH).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# The project's environment (README: Set-up) when there is one, so that a new shell needs no activation.
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python
  [ -x "$ROOT/.venv/bin/python" ] && PYTHON="$ROOT/.venv/bin/python"
fi
if [ $# -lt 3 ]; then
  echo "usage: $0 CONFIG CHECKPOINT GPUS [test options]" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
shift 3
exec "$PYTHON" -m torch.distributed.run --nnodes "${NNODES:-1}" --node_rank "${NODE_RANK:-0}" --nproc_per_node "$GPUS" \
  --master_addr "${MASTER_ADDR:-127.0.0.1}" --master_port "${MASTER_PORT:-29500}" \
  -m grootv.mm.test "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
