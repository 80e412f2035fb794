#!/usr/bin/env bash
# Fold the LoRA adapter of a training run into its base and save a plain Mamba checkpoint
# (loadable by GrootLMambaForCausalLM and by transformers' MambaForCausalLM).
#
#   BASE_MODEL  the checkpoint the adapter was trained on  (default: mamba-130m-hf)
#   PEFT_MODEL  the training run's output directory        (default: out_exp)
#   SAVE_PATH   where the merged checkpoint goes           (default: grootl-130m-hf)
#
# Extra arguments go to `python -m grootl.merge`: --dtype bfloat16, --overwrite, or
# --tie_embeddings to keep lm_head tied to the merged embeddings as the release's checkpoints are.
# DeepSpeed runs need no zero_to_fp32 step: the Trainer saves the adapter itself.
set -euo pipefail

python -m grootl.merge \
    --base_model "${BASE_MODEL:-mamba-130m-hf}" \
    --peft_model "${PEFT_MODEL:-out_exp}" \
    --save_path "${SAVE_PATH:-grootl-130m-hf}" \
    "$@"
