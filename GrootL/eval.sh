#!/usr/bin/env bash
# Zero-shot lm-eval of a merged GrootL checkpoint on the paper's tasks, batched, printed beside
# the paper's Table 3.
#
#   MODEL_PATH    merged checkpoint               (default: grootl-130m-hf)
#   TASKS         comma-separated lm-eval tasks   (default: piqa,arc_easy,sst2,winogrande,lambada_openai,race,openbookqa)
#   DEVICE        cpu, cuda, cuda:1, ...          (default: cuda when available, else cpu)
#   DTYPE         float32, bfloat16 or float16    (default: float32)
#   BATCH_SIZE    requests per forward            (default: 16)
#   OUTPUT        results JSON                    (default: results/grootl.json)
#   INCLUDE_PATH  folder of extra task YAML files (offline use, see configs/lm_eval/)
#
# Extra arguments go to `python -m grootl.evaluate`, e.g. --limit 100.
set -euo pipefail

device=${DEVICE:-$(python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")}
include_args=()
if [[ -n "${INCLUDE_PATH:-}" ]]; then
    include_args=(--include_path "${INCLUDE_PATH}")
fi

python -m grootl.evaluate --model mamba \
    --model_args "pretrained=${MODEL_PATH:-grootl-130m-hf},dtype=${DTYPE:-float32}" \
    --tasks "${TASKS:-piqa,arc_easy,sst2,winogrande,lambada_openai,race,openbookqa}" \
    --device "${device}" \
    --batch_size "${BATCH_SIZE:-16}" \
    --output_path "${OUTPUT:-results/grootl.json}" \
    "${include_args[@]}" \
    "$@"
