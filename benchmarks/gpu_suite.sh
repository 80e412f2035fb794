#!/usr/bin/env bash
# The GPU suite: one command for a lent GPU machine (one H200, 16 cores, no network; its own
# python3 with torch, triton, timm and transformers; no mmcv or lm-eval). In at most about
# 8 minutes it
#   1. builds the extension in place with the CUDA kernels (FORCE_CUDA=1, sm_90),
#   2. runs the tests (the CUDA ones run where a GPU is present),
#   3. runs compute-sanitizer memcheck, racecheck and synccheck on small cases of every GPU
#      kernel (skipped, with a note, where the sanitizer refuses the device),
#   4. prints the tables of benchmarks/bench_gpu.py (operators against a copy floor, GrootV
#      and GrootL against their peers), and writes them as markdown,
# and prints a summary last. Logs and tables go to OUT_DIR. Without a GPU it says so and exits 0.
#
#     bash benchmarks/gpu_suite.sh OUT_DIR
set -uo pipefail
OUT="${1:?usage: bash benchmarks/gpu_suite.sh OUT_DIR}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
export PYTHONPATH="$ROOT/third-party/TreeScan:$ROOT/third-party/TreeScanLan:$ROOT/GrootV:$ROOT/GrootL${PYTHONPATH:+:$PYTHONPATH}"
summary=()
note() { summary+=("$1"); echo "[gpu-suite] $1"; }
step() {  # step NAME SECONDS LOG COMMAND...: runs with a time limit, notes the outcome
  local name="$1" limit="$2" log="$3"; shift 3
  local start=$SECONDS
  timeout "$limit" "$@" > "$OUT/$log" 2>&1
  local code=$?
  local verdict="ok"; [ $code -eq 124 ] && verdict="TIMED OUT after ${limit}s"; [ $code -ne 0 ] && [ $code -ne 124 ] && verdict="FAILED (exit $code)"
  note "$name: $verdict in $((SECONDS - start)) s (log: $log)"
  return $code
}

if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "[gpu-suite] no GPU here: nothing to measure"
  exit 0
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/machine.txt" 2>&1
"$PY" -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__)' >> "$OUT/machine.txt" 2>&1
note "machine: $(tr '\n' ';' < "$OUT/machine.txt")"

# 1. The extension, with the CUDA kernels, in place (the tests and benchmarks import it from here).
step "build (FORCE_CUDA=1, sm_90)" 150 build.log env FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS="$(nproc)" \
  "$PY" setup.py build_ext --inplace || { printf '%s\n' "${summary[@]}"; tail -30 "$OUT/build.log"; exit 1; }
"$PY" -c 'import tree_scan; assert tree_scan.BACKEND == "cuda", tree_scan.BACKEND' >> "$OUT/build.log" 2>&1 \
  || note "the build has no CUDA kernels (see build.log)"

# 2. Tests: the operators, GrootV's model and GrootL's mixer, CUDA included.
step "tests" 100 tests.log "$PY" -m pytest -q -x -p no:cacheprovider tests/test_tree_scan_*.py \
  tests/test_grootv_tree_ssm.py tests/test_grootv_model.py tests/test_grootl_mixer.py
note "tests: $(grep -E '[0-9]+ (passed|failed)' "$OUT/tests.log" | tail -1)"

# 3. compute-sanitizer on small cases of every kernel.
if command -v compute-sanitizer >/dev/null; then
  for tool in memcheck racecheck synccheck; do
    step "compute-sanitizer $tool" 60 "sanitizer_$tool.log" compute-sanitizer --tool "$tool" --error-exitcode 3 \
      "$PY" benchmarks/gpu_sanitize_cases.py
    if grep -q "Device not supported\|not supported on this device" "$OUT/sanitizer_$tool.log"; then
      note "compute-sanitizer refused the device: skipped"
      break
    fi
    note "  $tool: $(grep -E 'ERROR SUMMARY|^ok$' "$OUT/sanitizer_$tool.log" | tr '\n' ' ')"
  done
else
  note "compute-sanitizer not found: skipped"
fi

# 4. The tables.
step "benchmarks" 200 bench.log "$PY" benchmarks/bench_gpu.py --out "$OUT"

echo
echo "================ summary ================"
printf '%s\n' "${summary[@]}"
echo
cat "$OUT/gpu_tables.md" 2>/dev/null || tail -40 "$OUT/bench.log"
