"""Supervised LoRA fine-tuning of GrootL on Alpaca-format JSON (``python -m grootl.train``).

The flags are transformers' ``TrainingArguments`` plus the ones below; the defaults are the
release's recipe (LoRA r=8, alpha=16, no dropout on x_proj/embeddings/in_proj/out_proj;
lr 2e-5, constant with 20 warm-up steps, no weight decay; activation checkpointing)::

    python -m grootl.train --model_name_or_path mamba-130m-hf --data_path alpaca_data.json \
        --output_dir out_exp --bf16 True --per_device_train_batch_size 1 \
        --gradient_accumulation_steps 16 --num_train_epochs 1 --save_steps 100

Multi-GPU: ``torchrun --nproc_per_node=N -m grootl.train ...`` (DDP); ``--deepspeed ds.json``
hands the run to DeepSpeed when it is installed. Progress bars come from the Trainer, every log
record is appended to ``<output_dir>/metrics.jsonl`` (cut back to the step training starts
from), checkpoints appear atomically (see :mod:`grootl.checkpointing`), and re-running the
same command resumes from the newest one.
At the end the adapter (or, with ``--low_rank_training False``, the model) and the tokenizer
are saved in ``output_dir``; ``python -m grootl.merge`` folds the adapter into the base.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field

import torch
from transformers import AutoTokenizer, HfArgumentParser, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from .checkpointing import STAGING_DIR, AtomicCheckpointTrainer, JsonLinesMetrics
from .configuration import CONTEX_LEN_MODES
from .data import SupervisedCollator, SupervisedDataset
from .lora import LORA_TARGET_MODULES, add_lora, make_lora_config
from .modeling import GrootLMambaForCausalLM

__all__ = ["ModelArguments", "DataArguments", "GrootLTrainingArguments", "main"]


@dataclass
class ModelArguments:
    model_name_or_path: str = field(metadata={"help": "A Mamba checkpoint directory (e.g. mamba-130m-hf)."})
    tokenizer_name_or_path: str | None = field(default=None, metadata={"help": "Defaults to the model directory."})
    use_tree: bool = field(default=True, metadata={"help": "Run the tree branch (False: plain Mamba)."})
    tree_scale: float = field(default=0.3, metadata={"help": "Weight of the tree scan."})
    contex_len_mode: str = field(
        default="per_row", metadata={"help": f"One of {CONTEX_LEN_MODES}; batch_min reproduces the release."}
    )


@dataclass
class DataArguments:
    data_path: str = field(metadata={"help": "Alpaca-format JSON list of {instruction, input, output}."})


@dataclass
class GrootLTrainingArguments(TrainingArguments):
    model_max_length: int = field(default=2048, metadata={"help": "Longer examples are truncated."})
    low_rank_training: bool = field(default=True, metadata={"help": "LoRA (True) or full fine-tuning (False)."})
    lora_r: int = field(default=8)
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.0)
    lora_target_modules: str = field(default=",".join(LORA_TARGET_MODULES))
    auto_resume: bool = field(default=True, metadata={"help": "Resume from the newest checkpoint in output_dir."})
    learning_rate: float = field(default=2e-5)
    lr_scheduler_type: str = field(default="constant_with_warmup")
    warmup_steps: float = field(default=20)
    weight_decay: float = field(default=0.0)
    activation_checkpointing: bool | None = field(default=True)
    save_strategy: str = field(default="steps")
    save_steps: float = field(default=100)
    save_total_limit: int | None = field(default=2)
    logging_steps: float = field(default=1)
    # Every parameter (and adapter) takes part in every forward; the Trainer would otherwise
    # ask DDP to search for unused ones because a PeftModel is not a PreTrainedModel.
    ddp_find_unused_parameters: bool | None = field(default=False)


def _parse(argv: list[str] | None):
    parser = HfArgumentParser((ModelArguments, DataArguments, GrootLTrainingArguments))
    model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    if model_args.contex_len_mode not in CONTEX_LEN_MODES:
        parser.error(f"--contex_len_mode must be one of {CONTEX_LEN_MODES}; got {model_args.contex_len_mode!r}")
    if training_args.output_dir is None:
        parser.error("--output_dir is required")
    return model_args, data_args, training_args


def main(argv: list[str] | None = None) -> str:
    """Runs the fine-tuning; returns the output directory."""
    model_args, data_args, training_args = _parse(argv)

    tokenizer = AutoTokenizer.from_pretrained(
        model_args.tokenizer_name_or_path or model_args.model_name_or_path,
        model_max_length=training_args.model_max_length,
    )
    # The release adds a new "[PAD]" token and resizes the embeddings when the tokenizer has
    # none; padding is masked out anyway, so the EOS id serves and the checkpoint keeps its shape.
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    # LoRA: the frozen base in bf16, as the release (peft keeps the adapters in float32).
    # Full fine-tuning: float32 weights under bf16 autocast; AdamW on bf16 weights would round
    # most of its lr-2e-5 updates away (the release relied on DeepSpeed's float32 master copy).
    low_precision_base = training_args.bf16 and training_args.low_rank_training
    model = GrootLMambaForCausalLM.from_pretrained(
        model_args.model_name_or_path,
        dtype=torch.bfloat16 if low_precision_base else torch.float32,
        use_tree=model_args.use_tree,
        tree_scale=model_args.tree_scale,
        contex_len_mode=model_args.contex_len_mode,
    )
    model.config.use_cache = False
    if training_args.low_rank_training:
        targets = [t.strip() for t in training_args.lora_target_modules.split(",") if t.strip()]
        model = add_lora(
            model, make_lora_config(training_args.lora_r, training_args.lora_alpha, training_args.lora_dropout, targets)
        )

    dataset = SupervisedDataset(data_args.data_path, tokenizer, training_args.model_max_length)
    os.makedirs(training_args.output_dir, exist_ok=True)
    trainer = AtomicCheckpointTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=SupervisedCollator(pad_token_id),
        processing_class=tokenizer,
        callbacks=[JsonLinesMetrics(os.path.join(training_args.output_dir, "metrics.jsonl"))],
    )
    if trainer.args.should_save:
        # Left over by a run killed while saving; never a complete checkpoint.
        shutil.rmtree(os.path.join(training_args.output_dir, STAGING_DIR), ignore_errors=True)
    trainer.accelerator.wait_for_everyone()

    resume = training_args.resume_from_checkpoint
    if resume is None and training_args.auto_resume:
        resume = get_last_checkpoint(training_args.output_dir)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_state()
    trainer.save_final(training_args.output_dir)
    return training_args.output_dir


if __name__ == "__main__":
    main(sys.argv[1:])
