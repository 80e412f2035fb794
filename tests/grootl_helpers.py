"""Shared pieces of the GrootL command-line tests: tiny training runs and one-line errors."""

from __future__ import annotations

import json
import os

import pytest

from grootl import train

# The training files every Trainer checkpoint of a LoRA run holds (besides the tokenizer's).
CHECKPOINT_FILES = {
    "adapter_config.json",
    "adapter_model.safetensors",
    "grootl_tree.json",
    "optimizer.pt",
    "rng_state.pth",
    "scheduler.pt",
    "trainer_state.json",
    "training_args.bin",
}


def train_args(base, data, output, max_steps, *extra) -> list[str]:
    """A tiny LoRA run on the CPU: batch 2, a checkpoint every 2 steps (``extra`` flags win)."""
    return [
        "--model_name_or_path", str(base), "--data_path", str(data), "--output_dir", str(output),
        "--max_steps", str(max_steps), "--save_steps", "2", "--per_device_train_batch_size", "2",
        "--learning_rate", "5e-3", "--warmup_steps", "1",
        "--model_max_length", "128", "--use_cpu", "True", "--disable_tqdm", "True", "--report_to", "none", *extra,
    ]  # fmt: skip


def run_training(base, data, output, max_steps, *extra) -> str:
    return train.main(train_args(base, data, output, max_steps, *extra))


def losses(output) -> list[tuple[int, float]]:
    """``(step, loss)`` of every training record of ``output/metrics.jsonl``."""
    records = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in records if "loss" in r]


def checkpoints(output) -> list[str]:
    return sorted((p.name for p in output.iterdir() if p.name.startswith("checkpoint-")), key=lambda n: int(n[11:]))


def assert_complete(checkpoint) -> None:
    missing = CHECKPOINT_FILES - set(os.listdir(checkpoint))
    assert not missing, f"{checkpoint} lacks {sorted(missing)}"


def one_line_error(capsys, run, *expected) -> str:
    """Runs a command line that must stop with a user error: exit status 2 and one ``error:``
    line (the last of stderr, no traceback) holding every string of ``expected``; returns it."""
    with pytest.raises(SystemExit) as stop:
        run()
    assert stop.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and err.rstrip().endswith(errors[0]) and "Traceback" not in err, err[-3000:]
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]
