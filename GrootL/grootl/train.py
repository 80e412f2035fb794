"""Supervised LoRA fine-tuning of GrootL on Alpaca-format data (``python -m grootl.train``).

The flags are transformers' ``TrainingArguments`` plus the ones below; the defaults are the
release's recipe (LoRA r=8, alpha=16, no dropout on x_proj/embeddings/in_proj/out_proj;
lr 2e-5, constant with 20 warm-up steps, no weight decay; activation checkpointing)::

    python -m grootl.train --model_name_or_path mamba-130m-hf --data_path alpaca_data.json \
        --output_dir out_exp --per_device_train_batch_size 1 \
        --gradient_accumulation_steps 16 --num_train_epochs 1 --save_steps 100

(add ``--bf16 True`` on a GPU with bf16, as the release does; ``GrootL/st_train.sh`` decides by
itself). Multi-GPU: ``torchrun --nproc_per_node=N -m grootl.train ...`` (DDP); ``--deepspeed
ds.json`` hands the run to DeepSpeed when it is installed. ``--seed`` fixes everything random,
the LoRA initialisation included: the same command gives the same adapters and losses.
Progress bars come from the Trainer, every log record is appended to
``<output_dir>/metrics.jsonl`` (cut back to the step training starts from), checkpoints appear
and disappear atomically (see :mod:`grootl.checkpointing`), and re-running the same command
resumes from the newest checkpoint, or, when the run is finished, says so and does nothing.
At the end the adapter (or, with ``--low_rank_training False``, the model), the tokenizer and
``trainer_state.json`` are saved in ``output_dir``; ``python -m grootl.merge`` folds the adapter
into the base. Pickled files (``pytorch_model.bin``, the checkpoints' ``optimizer.pt``,
``rng_state.pth``, ...) are read tensors-only unless ``--trust_checkpoint`` is given.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field

import torch
from transformers import AutoTokenizer, HfArgumentParser, TrainerState, TrainingArguments
from transformers.trainer_utils import enable_full_determinism, set_seed

from .checkpointing import (
    STAGING_DIR,
    TRAINER_STATE_FILE,
    AtomicCheckpointTrainer,
    JsonLinesMetrics,
    newest_complete_checkpoint,
    saved_step,
)
from .configuration import CONTEX_LEN_MODES
from .data import SupervisedCollator, SupervisedDataset
from .errors import CheckpointError, GrootLError, run_command
from .hub import load_named
from .lora import LORA_TARGET_MODULES, add_lora, make_lora_config
from .modeling import GrootLMambaForCausalLM
from .untrusted import pickle_policy

__all__ = ["ModelArguments", "DataArguments", "GrootLTrainingArguments", "run", "main"]

PROG = "python -m grootl.train"


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
    data_path: str = field(
        metadata={"help": "Alpaca-format data: a JSON list of {instruction, input, output} records, or JSON lines."}
    )


@dataclass
class GrootLTrainingArguments(TrainingArguments):
    model_max_length: int = field(
        default=2048,
        metadata={"help": "Longer examples are cut; those whose prompt fills it are skipped (with a warning)."},
    )
    low_rank_training: bool = field(default=True, metadata={"help": "LoRA (True) or full fine-tuning (False)."})
    lora_r: int = field(default=8)
    lora_alpha: int = field(default=16)
    lora_dropout: float = field(default=0.0)
    lora_target_modules: str = field(default=",".join(LORA_TARGET_MODULES))
    auto_resume: bool = field(default=True, metadata={"help": "Resume from the newest checkpoint in output_dir."})
    trust_checkpoint: bool = field(
        default=False,
        metadata={
            "help": "Unpickle pickled files (pytorch_model.bin, adapter_model.bin, a checkpoint's optimizer.pt, "
            "scheduler.pt, rng_state.pth) in full: they can run code, so only for files you trust. Without it they "
            "are read tensors-only."
        },
    )
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
    parser = HfArgumentParser((ModelArguments, DataArguments, GrootLTrainingArguments), prog=PROG)
    try:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    except ValueError as error:
        # TrainingArguments checks combinations of flags in __post_init__ and raises ValueError.
        if "support bf16" in str(error):  # transformers: "Your setup doesn't support bf16/gpu."
            raise GrootLError(
                "--bf16 True needs a GPU with bf16 support (Ampere or newer), and there is none here: leave --bf16 "
                "out (BF16=False for st_train.sh), or add --use_cpu True for bf16 autocast on the CPU"
            ) from None
        raise GrootLError(f"invalid training arguments: {error}") from None
    if model_args.contex_len_mode not in CONTEX_LEN_MODES:
        parser.error(f"--contex_len_mode must be one of {CONTEX_LEN_MODES}; got {model_args.contex_len_mode!r}")
    if training_args.output_dir is None:
        parser.error("--output_dir is required")
    return model_args, data_args, training_args


def _load_model(model_args: ModelArguments, training_args: GrootLTrainingArguments):
    # LoRA: the frozen base in bf16, as the release (peft keeps the adapters in float32).
    # Full fine-tuning: float32 weights under bf16 autocast; AdamW on bf16 weights would round
    # most of its lr-2e-5 updates away (the release relied on DeepSpeed's float32 master copy).
    low_precision_base = training_args.bf16 and training_args.low_rank_training
    model = load_named(
        lambda name: GrootLMambaForCausalLM.from_pretrained(
            name,
            dtype=torch.bfloat16 if low_precision_base else torch.float32,
            use_tree=model_args.use_tree,
            tree_scale=model_args.tree_scale,
            contex_len_mode=model_args.contex_len_mode,
        ),
        model_args.model_name_or_path,
        "--model_name_or_path",
    )
    model.config.use_cache = False
    if training_args.low_rank_training:
        targets = [t.strip() for t in training_args.lora_target_modules.split(",") if t.strip()]
        model = add_lora(
            model, make_lora_config(training_args.lora_r, training_args.lora_alpha, training_args.lora_dropout, targets)
        )
    return model


def _resume_point(training_args: GrootLTrainingArguments) -> str | None:
    """The checkpoint to resume from: the one named by --resume_from_checkpoint, else (with
    --auto_resume) the newest complete one in output_dir."""
    resume = training_args.resume_from_checkpoint
    if resume is not None:
        if saved_step(resume) is None:
            raise CheckpointError(
                f"--resume_from_checkpoint {resume!r} is not a checkpoint folder with a readable {TRAINER_STATE_FILE}"
            )
        return resume
    return newest_complete_checkpoint(training_args.output_dir) if training_args.auto_resume else None


def _train(model_args: ModelArguments, data_args: DataArguments, training_args: GrootLTrainingArguments) -> str:
    output_dir = training_args.output_dir
    # Before anything random is drawn: the LoRA adapters are initialised at random when they
    # are built, before the Trainer (which seeds too) exists.
    if training_args.full_determinism:
        enable_full_determinism(training_args.seed)
    else:
        set_seed(training_args.seed)

    tokenizer = load_named(
        lambda name: AutoTokenizer.from_pretrained(name, model_max_length=training_args.model_max_length),
        model_args.tokenizer_name_or_path or model_args.model_name_or_path,
        "--tokenizer_name_or_path" if model_args.tokenizer_name_or_path else "--model_name_or_path",
    )
    # The release adds a new "[PAD]" token and resizes the embeddings when the tokenizer has
    # none; padding is masked out anyway, so the EOS id serves and the checkpoint keeps its shape.
    pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    dataset = SupervisedDataset(data_args.data_path, tokenizer, training_args.model_max_length)
    model = _load_model(model_args, training_args)

    os.makedirs(output_dir, exist_ok=True)
    trainer = AtomicCheckpointTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=SupervisedCollator(pad_token_id),
        processing_class=tokenizer,
        callbacks=[JsonLinesMetrics(os.path.join(output_dir, "metrics.jsonl"))],
    )
    if trainer.args.should_save:
        # Left over by a run killed while saving or deleting a checkpoint; never a complete one.
        shutil.rmtree(os.path.join(output_dir, STAGING_DIR), ignore_errors=True)
    trainer.accelerator.wait_for_everyone()

    resume = _resume_point(training_args)
    max_steps = trainer.set_initial_training_values(trainer.args, trainer.get_train_dataloader())[-1]
    resume_step = saved_step(resume) if resume is not None else None
    final_step = saved_step(output_dir)
    say = print if trainer.is_world_process_zero() else (lambda *args: None)
    if training_args.resume_from_checkpoint is None and training_args.auto_resume and final_step is not None:
        if final_step >= max_steps and (resume_step is None or resume_step <= final_step):
            say(
                f"{output_dir} already holds the final model of this run (step {final_step}, max_steps {max_steps}): "
                "nothing to do. Raise --max_steps/--num_train_epochs to train on, or pass --auto_resume False to "
                "start over."
            )
            return output_dir
    if resume_step is not None and resume_step >= max_steps:
        # Trained to the end, but the final save was not (completely) written.
        say(f"{resume} is at step {resume_step} (max_steps {max_steps}): nothing to train; it becomes the final model")
        trainer._load_from_checkpoint(resume)
        trainer.state = TrainerState.load_from_json(os.path.join(resume, TRAINER_STATE_FILE))
        trainer.save_final(output_dir)
        return output_dir

    trainer.train(resume_from_checkpoint=resume)
    trainer.save_final(output_dir)
    return output_dir


def run(argv: list[str] | None = None) -> str:
    """Runs the fine-tuning; returns the output directory. Errors the user can fix are raised as
    :class:`~grootl.errors.GrootLError`."""
    model_args, data_args, training_args = _parse(argv)
    with pickle_policy(training_args.trust_checkpoint, "add --trust_checkpoint"):
        return _train(model_args, data_args, training_args)


def main(argv: list[str] | None = None) -> str:
    """``python -m grootl.train``: a user error is one line on stderr and exit status 2."""
    return run_command(run, argv)


if __name__ == "__main__":
    main(sys.argv[1:])
