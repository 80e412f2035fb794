#!/usr/bin/env bash
# README command 2: build the environment if needed, then run the whole test suite.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k mst -x`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install_env.sh
bash scripts/check_cuda_build.sh
exec .venv/bin/python -m pytest "$@"
