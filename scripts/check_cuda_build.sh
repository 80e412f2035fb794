#!/usr/bin/env bash
# Proves that the CUDA kernels compile where no GPU is present (where one is, the
# regular build compiles them already). Builds into a scratch folder, never over
# the installed extension. Remembers success per source hash in pip's cache
# folder, which survives between CI runs, so an unchanged tree is not rebuilt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  echo "[cuda-check] skipped: no nvcc at $CUDA_HOME/bin/nvcc"
  exit 0
fi
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "[cuda-check] skipped: a GPU is present, so the installed build has the CUDA kernels"
  exit 0
fi
key="$(cat setup.py $(find third-party/TreeScan/tree_scan/csrc -type f | sort) | sha256sum | cut -c1-16)"
stamp="$("$PY" -m pip cache dir)/grootvl-cuda-check/$key"
if [ -f "$stamp" ]; then
  echo "[cuda-check] CUDA kernels of this source tree compiled before ($key)"
  exit 0
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
echo "[cuda-check] compiling the CUDA kernels with $("$CUDA_HOME/bin/nvcc" --version | tail -1) (no GPU here: compile only)"
FORCE_CUDA=1 CUDA_HOME="$CUDA_HOME" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
  "$PY" setup.py -q build_ext --build-lib "$scratch/lib" --build-temp "$scratch/tmp" > "$scratch/log" 2>&1 \
  || { tail -50 "$scratch/log"; echo "[cuda-check] error: the CUDA kernels do not compile"; exit 1; }
mkdir -p "$(dirname "$stamp")" && touch "$stamp"
echo "[cuda-check] CUDA kernels compile"
