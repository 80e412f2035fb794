"""Training-loop plumbing: a Trainer whose checkpoints appear and disappear atomically, and a
metrics log.

transformers' ``Trainer`` writes ``checkpoint-N`` in place and deletes old ones file by file,
so a run killed while saving or rotating leaves a folder with missing files, which
``get_last_checkpoint`` would pick up on resume. Here every checkpoint is written under
``<output_dir>/.staging`` and renamed into place once all ranks have finished, and a rotated-out
checkpoint is renamed into ``.staging`` before its files are deleted (a directory rename is
atomic on one filesystem): a ``checkpoint-N`` folder in ``output_dir`` is always complete.
The final model is staged the same way and its ``trainer_state.json`` is renamed into place
last, so that file says the final save is complete. ``.staging`` holds nothing worth keeping:
the next run deletes it. The metrics log is cut back to the step training resumes from, so that
it lists every step once.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from transformers import Trainer, TrainerCallback, TrainerState
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, sort_checkpoints

from .atomic import atomic_write, move_into_place, remove_directory, remove_leftovers
from .configuration import write_tree_settings

__all__ = [
    "STAGING_DIR",
    "TRAINER_STATE_FILE",
    "AtomicCheckpointTrainer",
    "JsonLinesMetrics",
    "saved_step",
    "newest_complete_checkpoint",
]

logger = logging.getLogger(__name__)

STAGING_DIR = ".staging"
TRAINER_STATE_FILE = "trainer_state.json"
# Model weights of a checkpoint: an adapter (LoRA) or a full model, one file or shards.
_WEIGHTS = (
    "adapter_model.safetensors",
    "adapter_model.bin",
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def saved_step(folder: str | os.PathLike) -> int | None:
    """The ``global_step`` in ``folder/trainer_state.json`` (None when it is missing or unreadable)."""
    try:
        return int(TrainerState.load_from_json(os.path.join(folder, TRAINER_STATE_FILE)).global_step)
    except (OSError, ValueError, TypeError):
        return None


def newest_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The ``checkpoint-N`` folder of ``output_dir`` with the largest N that holds model weights
    and a readable ``trainer_state.json``. Checkpoints written here are always complete; a
    folder that is not (copied in part, or left by other tools) is skipped with a warning."""
    pattern = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
    found = [(int(m.group(1)), m.group(0)) for m in map(pattern.match, os.listdir(output_dir)) if m is not None]
    for _, name in sorted(found, reverse=True):
        folder = os.path.join(output_dir, name)
        if not os.path.isdir(folder):
            continue
        if saved_step(folder) is not None and any(os.path.isfile(os.path.join(folder, w)) for w in _WEIGHTS):
            return folder
        logger.warning(
            f"{folder} is incomplete (no model weights or no readable {TRAINER_STATE_FILE}); not resuming from it"
        )
    return None


class AtomicCheckpointTrainer(Trainer):
    """``Trainer`` that stages every checkpoint, renames it into place and deletes old ones
    with a rename first."""

    _staging_root: str | None = None

    def _get_output_dir(self, trial) -> str:
        if self._staging_root is not None:
            return self._staging_root
        return super()._get_output_dir(trial)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        super()._save(output_dir, state_dict)
        # Every saved model (checkpoints and the final one): an adapter folder does not
        # carry the tree settings the model was trained with; merge and evaluate read them.
        config = getattr(self.accelerator.unwrap_model(self.model), "config", None)
        if self.args.should_save and config is not None and hasattr(config, "use_tree"):
            write_tree_settings(config, output_dir if output_dir is not None else self.args.output_dir)

    def _save_checkpoint(self, model, trial) -> None:
        run_dir = super()._get_output_dir(trial)
        staging_root = os.path.join(run_dir, STAGING_DIR)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._staging_root = staging_root
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            # Saving the same step again (a resumed run) replaces the old copy.
            move_into_place(os.path.join(staging_root, name), os.path.join(run_dir, name), aside_in=staging_root)
            self._rotate_checkpoints(run_dir, staging_root)
        self.accelerator.wait_for_everyone()

    def _rotate_checkpoints(self, run_dir: str, staging_root: str) -> None:
        """transformers' rotation (keep ``save_total_limit`` checkpoints, always the newest and
        the best one), except that each deleted folder first leaves its place in one rename."""
        limit = self.args.save_total_limit
        checkpoints = sort_checkpoints(run_dir)
        if limit is None or limit <= 0 or len(checkpoints) <= limit:
            return
        protected = {checkpoints[-1]}
        if self.state.best_model_checkpoint is not None:
            protected.add(str(Path(self.state.best_model_checkpoint)))
        keep = max(limit, len(protected))
        remaining = len(checkpoints)
        for checkpoint in checkpoints:
            if remaining <= keep:
                break
            if checkpoint not in protected:
                remove_directory(checkpoint, aside_in=staging_root)
                remaining -= 1

    def save_final(self, output_dir: str) -> None:
        """Save the trained model (for LoRA: the adapter), the tokenizer and the trainer state
        into ``output_dir``, each file written aside first and renamed over its final name;
        ``trainer_state.json`` comes last, so it says the final save is complete."""
        staging = os.path.join(output_dir, STAGING_DIR, "final")
        if self.args.should_save and os.path.isdir(staging):
            shutil.rmtree(staging)
        self.save_model(staging)
        if self.args.should_save:
            self.state.save_to_json(os.path.join(staging, TRAINER_STATE_FILE))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            names = sorted(os.listdir(staging), key=lambda name: name == TRAINER_STATE_FILE)
            for name in names:
                move_into_place(os.path.join(staging, name), os.path.join(output_dir, name))
            shutil.rmtree(os.path.join(output_dir, STAGING_DIR), ignore_errors=True)
        self.accelerator.wait_for_everyone()


class JsonLinesMetrics(TrainerCallback):
    """Appends every log record (loss, learning rate, ...) to a JSON-lines file on rank 0.

    When training begins, the records of steps after the one it starts from are dropped: a run
    killed after logging steps it had not yet saved in a checkpoint resumes from an earlier
    step and logs those steps again (a fresh start, at step 0, drops every old record).
    """

    def __init__(self, path: str):
        self.path = path

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            remove_leftovers(self.path)  # of a run killed while rewriting the file
            if os.path.isfile(self.path):
                self.keep_steps_up_to(state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            record = {"step": state.global_step, "epoch": state.epoch, **logs}
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")

    def keep_steps_up_to(self, step: int) -> None:
        """Rewrites the file (atomically) without the records of steps after ``step``."""
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().splitlines()
        kept = []
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                if number == len(lines):
                    continue  # torn by a kill while it was being appended
                raise ValueError(
                    f"{self.path} line {number} is not JSON ({error}): {line[:80]!r}; fix or delete the file"
                ) from None
            if record["step"] <= step:
                kept.append(line + "\n")
        with atomic_write(self.path) as f:
            f.writelines(kept)
