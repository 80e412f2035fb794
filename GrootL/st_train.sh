#!/usr/bin/env bash
# LoRA fine-tuning of GrootL on Alpaca-format data, with the release's recipe.
#
#   MODEL_PATH        base Mamba checkpoint directory          (default: mamba-130m-hf)
#   DATA_PATH         Alpaca-format JSON, e.g. alpaca_data.json (required)
#   OUTPUT_DIR        adapter, checkpoints, metrics.jsonl      (default: out_exp)
#   NPROC             processes (one per GPU), DDP via torchrun (default: 1)
#   BF16              True or False: bf16 mixed precision, as the release trains (default: True on
#                     a GPU with bf16 support, else False; the run then works on a CPU-only machine)
#   DEEPSPEED_CONFIG  optional DeepSpeed JSON (e.g. ZeRO stage 2); needs the deepspeed package
#
# Extra arguments are passed on to `python -m grootl.train` (later flags win), e.g.
#   DATA_PATH=alpaca_data.json bash GrootL/st_train.sh --max_steps 10
# Re-running the same command resumes from the newest checkpoint in OUTPUT_DIR.
set -euo pipefail

: "${DATA_PATH:?set DATA_PATH to an Alpaca-format JSON file: a list of records with instruction, input and output (e.g. alpaca_data.json of tatsu-lab/stanford_alpaca)}"

bf16=${BF16:-$(python -c "import torch; print(torch.cuda.is_available() and torch.cuda.is_bf16_supported())")}

deepspeed_args=()
if [[ -n "${DEEPSPEED_CONFIG:-}" ]]; then
    deepspeed_args=(--deepspeed "${DEEPSPEED_CONFIG}")
fi

torchrun --nproc_per_node="${NPROC:-1}" \
    --master_addr=127.0.0.1 \
    --master_port="${MASTER_PORT:-29500}" \
    -m grootl.train \
    --model_name_or_path "${MODEL_PATH:-mamba-130m-hf}" \
    --data_path "${DATA_PATH}" \
    --output_dir "${OUTPUT_DIR:-out_exp}" \
    --bf16 "${bf16}" \
    --model_max_length 2048 \
    --num_train_epochs 1 \
    --per_device_train_batch_size 1 \
    --gradient_accumulation_steps 16 \
    --save_strategy steps \
    --save_steps 100 \
    --save_total_limit 2 \
    --learning_rate 2e-5 \
    --weight_decay 0.0 \
    --warmup_steps 20 \
    --lr_scheduler_type constant_with_warmup \
    --logging_steps 1 \
    "${deepspeed_args[@]}" \
    "$@"
