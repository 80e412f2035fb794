"""Training checkpoints: written atomically, found again by --auto-resume, restored exactly.

Every SAVE_FREQ epochs (and after the last) the main process writes
``OUTPUT/ckpt_epoch_<epoch>.pth`` through a temporary file in the same folder that is
renamed into place, so a run killed at any moment leaves either the previous complete
checkpoint or the new one, never half a file. The newest SAVE_CKPT_NUM of them are kept,
plus ``ckpt_epoch_best.pth`` / ``ckpt_epoch_ema_best.pth`` (the release's names) for the
best validation accuracy of the model and of its EMA.

A checkpoint holds: ``model``, ``model_ema`` (when EMA is on), ``optimizer``,
``lr_scheduler`` (for the release's layout; see :func:`restore_training_state`),
``scaler``, ``epoch`` (the last finished one), ``max_accuracy``, ``max_accuracy_ema``,
``world_size``, ``config`` (yaml text) and ``classes`` (the class-folder names of
train/, in the order of the model's outputs: what --eval maps val/'s folders by). Only
tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it.

Resuming from a checkpoint older than the newest one abandons the epochs after it:
:func:`drop_checkpoints_from` deletes their checkpoints, so that a later --auto-resume
does not pick one of them up.
"""

from __future__ import annotations

import os
import re

import torch
from torch import nn

from grootv.checkpoint import (
    CheckpointMismatchError,
    UnreadableCheckpointError,
    extract_state_dict,
    load_checkpoint,
)
from grootv.checkpoint import read_checkpoint as read_checkpoint_file

from .errors import CheckpointError

_NUMBERED = re.compile(r"^ckpt_epoch_(\d+)\.pth$")


def checkpoint_path(output: str, tag: int | str) -> str:
    return os.path.join(output, f"ckpt_epoch_{tag}.pth")


def numbered_checkpoints(output: str) -> list[tuple[int, str]]:
    """``(epoch, path)`` of the per-epoch checkpoints in ``output``, oldest first."""
    if not os.path.isdir(output):
        return []
    found = []
    for name in os.listdir(output):
        match = _NUMBERED.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(output, name)))
    return sorted(found)


def latest_checkpoint(output: str) -> str | None:
    """The checkpoint of the highest epoch in ``output``, or None."""
    found = numbered_checkpoints(output)
    return found[-1][1] if found else None


def prune_checkpoints(output: str, keep: int) -> None:
    """Deletes all but the ``keep`` newest per-epoch checkpoints."""
    for _, path in numbered_checkpoints(output)[:-keep]:
        os.remove(path)


def drop_checkpoints_from(output: str, epoch: int) -> None:
    """Deletes the per-epoch checkpoints of epochs >= ``epoch`` (those a resumed run redoes)."""
    for number, path in numbered_checkpoints(output):
        if number >= epoch:
            os.remove(path)


def read_checkpoint(path: str, trusted: bool = False) -> dict:
    """Loads a checkpoint file onto the CPU; only tensors and plain values unless ``trusted``."""
    try:
        return read_checkpoint_file(path, trusted=trusted, trust_hint="add --trust-checkpoint")
    except FileNotFoundError:
        raise CheckpointError(
            f"checkpoint {path} does not exist (--resume / MODEL.RESUME / MODEL.PRETRAINED)"
        ) from None
    except UnreadableCheckpointError as error:
        raise CheckpointError(str(error)) from None


def trained_classes(checkpoint: dict, path: str) -> list[str] | None:
    """The class names the checkpoint's model was trained on, in output order, or None
    (the release's checkpoints, and bare state_dicts, do not record them)."""
    classes = checkpoint.get("classes")
    if classes is None:
        return None
    if not isinstance(classes, (list, tuple)) or not all(isinstance(name, str) for name in classes):
        raise CheckpointError(f"{path}: its 'classes' entry must be a list of class names, got {classes!r:.200}")
    return list(classes)


def load_weights(model: nn.Module, checkpoint: dict, path: str, use_ema: bool | None = None) -> str:
    """Loads the model (or EMA) weights of ``checkpoint`` strictly; returns the entry used."""
    try:
        return load_checkpoint(model, checkpoint, use_ema=use_ema, strict=True).source
    except (CheckpointMismatchError, ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: {error}") from None


def load_pretrained(model: nn.Module, path: str, trusted: bool, shrink_new_head: bool) -> list[str]:
    """Fine-tuning start: all weights must fit except a classifier head of another size,
    which keeps its fresh initialisation (x 1e-3 when ``shrink_new_head``). Returns the
    names of the head tensors that were not loaded."""
    checkpoint = read_checkpoint(path, trusted)
    try:
        state_dict = extract_state_dict(checkpoint)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path}: {error}") from None
    head = getattr(model, "pretrained_cfg", {}).get("classifier", "head")
    own = model.state_dict()
    replaced = [
        key
        for key, value in state_dict.items()
        if key.startswith(f"{head}.") and key in own and value.shape != own[key].shape
    ]
    for key in replaced:
        state_dict[key] = own[key] * 1e-3 if shrink_new_head else own[key]
    load_weights(model, state_dict, path)
    return replaced


def training_state(
    epoch: int,
    model: nn.Module,
    ema_model: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scheduler,
    scaler: torch.amp.GradScaler,
    max_accuracy: float,
    max_accuracy_ema: float,
    world_size: int,
    config_yaml: str,
    classes: list[str],
) -> dict:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        "max_accuracy": max_accuracy,
        "max_accuracy_ema": max_accuracy_ema,
        "world_size": world_size,
        "config": config_yaml,
        "classes": list(classes),
    }
    if ema_model is not None:
        state["model_ema"] = ema_model.state_dict()
    return state


def restore_training_state(
    checkpoint: dict,
    path: str,
    model: nn.Module,
    ema_model: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> dict:
    """Puts a training checkpoint back; returns ``epoch``, ``max_accuracy``, ``max_accuracy_ema``.

    ``ema_model`` is the averaged model itself (timm's ``ModelEmaV3.module``). The learning
    rate needs no restoring: the schedule is a function of the config and the update index,
    which the epoch fixes. (Loading the saved ``lr_scheduler`` state would instead pin the
    old run's length when TRAIN.EPOCHS, the batch or the number of processes changed; it
    is saved for tools that expect the release's checkpoint layout.)
    """
    missing = [key for key in ("model", "optimizer", "epoch") if key not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path} cannot resume training: it lacks {missing} (it holds {sorted(checkpoint)}); "
            "to start from its weights use --pretrained instead"
        )
    load_weights(model, checkpoint, path, use_ema=False)
    if ema_model is not None:
        if "model_ema" in checkpoint:
            load_weights(ema_model, checkpoint, path, use_ema=True)
        else:
            # The run that wrote it had no EMA: start the average from the resumed weights.
            ema_model.load_state_dict(model.state_dict())
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{path}: its optimizer state does not fit this model/optimizer: {error}") from None
    if "scaler" in checkpoint and scaler.is_enabled():
        scaler.load_state_dict(checkpoint["scaler"])
    return {
        "epoch": int(checkpoint["epoch"]),
        "max_accuracy": float(checkpoint.get("max_accuracy", 0.0)),
        "max_accuracy_ema": float(checkpoint.get("max_accuracy_ema", 0.0)),
    }
