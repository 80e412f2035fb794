#!/usr/bin/env bash
# Creates or refreshes the project environment in .venv:
#   1. a Python 3.11 virtual environment,
#   2. the pinned dependencies of requirements/lock.txt,
#   3. mmcv 2.1.0 with its compiled ops (built from source once, then kept as a wheel
#      in pip's cache directory, which survives between CI runs),
#   4. this project, with the tree-scan kernels compiled (set FORCE_CUDA=1 to compile
#      the CUDA kernels too).
# Each step remembers what it was done for (.venv/.stamps) and is skipped while that
# has not changed, so a second run takes seconds.
#
# Environment: PYTHON (default python3.11), FORCE_CUDA, MAX_JOBS (compile jobs),
# GROOTVL_SKIP_MMCV=1 (leave mmcv out: no detection/segmentation).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
STAMPS="$VENV/.stamps"
MMCV_VERSION="2.1.0"

log() { printf '[setup] %s\n' "$*" >&2; }
fail() { printf '[setup] error: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
is_done() { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
mark_done() { mkdir -p "$STAMPS"; printf '%s' "$2" > "$STAMPS/$1"; }
# pip's output without the lines this machine's pip configuration adds for every
# package (an extra index folder without that package: harmless).
pip_install() {
  "$PY" -m pip install --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  return "${PIPESTATUS[0]}"
}

# 1. Python 3.11 virtual environment -------------------------------------------------
PYTHON="${PYTHON:-python3.11}"
if ! "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
  command -v "$PYTHON" >/dev/null || fail "$PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11"
  log "creating .venv with $("$PYTHON" --version)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi

# 2. Pinned dependencies ----------------------------------------------------------------
deps_key="$(hash_of requirements/lock.txt)"
if ! is_done deps "$deps_key"; then
  log "installing the pinned dependencies (requirements/lock.txt; a few minutes the first time)"
  pip_install --quiet -r requirements/lock.txt
  mark_done deps "$deps_key"
fi

# 3. mmcv with compiled ops ---------------------------------------------------------------
torch_version="$("$PY" -c 'import torch; print(torch.__version__)')"
mmcv_key="mmcv-$MMCV_VERSION-torch-$torch_version-cuda-${FORCE_CUDA:-0}"
if [ "${GROOTVL_SKIP_MMCV:-0}" != "1" ] && ! is_done mmcv "$mmcv_key"; then
  wheel_dir="$("$PY" -m pip cache dir)/grootvl-wheels/$mmcv_key"
  if ! ls "$wheel_dir"/mmcv-*.whl >/dev/null 2>&1; then
    log "building mmcv $MMCV_VERSION with ops from source against torch $torch_version"
    log "(about 17 minutes on 2 cores, once: the wheel is kept in $wheel_dir)"
    mkdir -p "$wheel_dir.partial"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "$PY" -m pip wheel --quiet --no-deps --no-build-isolation "mmcv==$MMCV_VERSION" -w "$wheel_dir.partial"
    rm -rf "$wheel_dir" && mv "$wheel_dir.partial" "$wheel_dir"
  fi
  pip_install --quiet --no-deps --force-reinstall "$wheel_dir"/mmcv-*.whl
  mark_done mmcv "$mmcv_key"
fi

# 4. This project and its kernels -----------------------------------------------------------
csrc_files=$(find third-party/TreeScan/tree_scan/csrc -type f | sort)
project_key="$(hash_of setup.py pyproject.toml $csrc_files)-cuda-${FORCE_CUDA:-0}-torch-$torch_version"
if ! is_done project "$project_key" || ! ls third-party/TreeScan/tree_scan/_C*.so >/dev/null 2>&1; then
  log "building the tree-scan kernels and installing the project (editable)"
  pip_install --quiet --no-deps --no-build-isolation -e .
  mark_done project "$project_key"
fi

"$PY" - <<'PY'
import tree_scan
print(f"[setup] environment ready: tree_scan kernels = {tree_scan.BACKEND}")
PY
