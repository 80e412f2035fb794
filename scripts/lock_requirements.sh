#!/usr/bin/env bash
# Re-resolves requirements/requirements.in into the pinned requirements/lock.txt,
# in a throw-away virtual environment. Run after editing requirements.in.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

"$PYTHON" -m venv "$TMP/venv"
"$TMP/venv/bin/pip" install --quiet -r "$ROOT/requirements/requirements.in"
{
  echo "# Pinned environment of the project (Python 3.11, Linux x86-64)."
  echo "# Generated from requirements.in by scripts/lock_requirements.sh; do not edit by hand."
  "$TMP/venv/bin/pip" freeze --all --exclude pip
} > "$ROOT/requirements/lock.txt"
echo "wrote requirements/lock.txt ($(grep -vc '^#' "$ROOT/requirements/lock.txt") packages)"
