"""Training-loop plumbing: a Trainer whose checkpoints appear atomically, and a metrics log.

transformers' ``Trainer`` writes ``checkpoint-N`` in place, so a run killed while saving
leaves a half-written folder that ``get_last_checkpoint`` would pick up on resume. Here every
checkpoint is written under ``<output_dir>/.staging`` and renamed into place once all ranks
have finished (a directory rename is atomic on one filesystem): a ``checkpoint-N`` folder in
``output_dir`` is always complete. The metrics log is cut back to the step training resumes
from, so that it lists every step once.
"""

from __future__ import annotations

import json
import os
import shutil

from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from .atomic import atomic_write, move_into_place
from .configuration import write_tree_settings

__all__ = ["STAGING_DIR", "AtomicCheckpointTrainer", "JsonLinesMetrics"]

STAGING_DIR = ".staging"


class AtomicCheckpointTrainer(Trainer):
    """``Trainer`` that stages every checkpoint and renames it into place."""

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
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        self._staging_root = os.path.join(run_dir, STAGING_DIR)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            # Saving the same step again (a resumed run) replaces the old copy.
            move_into_place(os.path.join(run_dir, STAGING_DIR, name), os.path.join(run_dir, name))
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )
        self.accelerator.wait_for_everyone()

    def save_final(self, output_dir: str) -> None:
        """Save the trained model (for LoRA: the adapter) and tokenizer into ``output_dir``,
        each file written aside first and renamed over its final name."""
        staging = os.path.join(output_dir, STAGING_DIR, "final")
        if self.args.should_save and os.path.isdir(staging):
            shutil.rmtree(staging)
        self.save_model(staging)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            for name in sorted(os.listdir(staging)):
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
        if state.is_world_process_zero and os.path.isfile(self.path):
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
