#!/usr/bin/env bash
# README command 1: build the environment (.venv, pinned dependencies, compiled
# kernels) and run the main job on its embedded default. Idempotent: a second run
# only re-runs the job.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install_env.sh
exec .venv/bin/python -m grootv.classification.demo "$@"
