"""OUTPUT/metrics.jsonl: one JSON object per finished epoch, for programs to read.

Keys: ``epoch`` (0-based, as in the checkpoint names), ``train_loss``, ``lr`` (at the
end of the epoch), ``val_acc1``, ``val_acc5``, ``val_loss``, ``ema_val_acc1``,
``ema_val_acc5``, ``ema_val_loss`` (null without EMA, all ``val_*`` null in epochs
without validation), ``max_accuracy``, ``grad_norm`` (mean over the epoch's updates,
before clipping), ``nonfinite_steps`` (batches whose loss overflowed, skipped by the
float16 loss scaler and left out of ``train_loss``), ``epoch_time`` (seconds),
``images_per_second`` (training), ``world_size``, ``skipped_images`` (image files found
unreadable and skipped so far, with DATA.ON_BAD_IMAGE skip; 0 otherwise).
Accuracies are percentages; top-5 is top-min(5, classes).
"""

from __future__ import annotations

import json
import math
import os

from ..atomic import write_text

FILENAME = "metrics.jsonl"


def _plain(value):
    # JSON has no NaN/inf; a diverged loss is written as null rather than as invalid JSON.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def append_metrics(output: str, record: dict) -> None:
    """Appends one line and flushes it to disk before the epoch's checkpoint is written."""
    with open(os.path.join(output, FILENAME), "a") as f:
        f.write(json.dumps({key: _plain(value) for key, value in record.items()}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(output: str) -> list[dict]:
    path = os.path.join(output, FILENAME)
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    records = []
    for number, line in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            # Only the last line can be torn (a run killed while writing it).
            if number != len(lines) - 1:
                raise
    return records


def keep_epochs_before(output: str, epoch: int) -> None:
    """Drops the lines of epochs >= ``epoch`` (written by a run killed before its checkpoint),
    so that a resumed run does not list an epoch twice."""
    path = os.path.join(output, FILENAME)
    if not os.path.isfile(path):
        return
    kept = [record for record in read_metrics(output) if record.get("epoch", -1) < epoch]
    write_text(path, "".join(json.dumps(record) + "\n" for record in kept))
