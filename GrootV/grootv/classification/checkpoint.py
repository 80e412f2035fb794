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
``best_epoch``, ``best_epoch_ema`` (the epochs the best files hold, None before the first),
``world_size``, ``config`` (yaml text) and ``classes`` (the class-folder names of
train/, in the order of the model's outputs: what --eval maps val/'s folders by). Only
tensors and plain Python values, so ``torch.load(weights_only=True)`` reads it.

The best files hold the same training state as a per-epoch checkpoint, so a run resumes
from the newest of all of them (:func:`resume_checkpoint`): a kill between the per-epoch
checkpoint and the best copies, or in an epoch that improved without a per-epoch
checkpoint (SAVE_FREQ > 1), loses nothing. :func:`tidy_output` then makes the folder what
an uninterrupted run would have left at that epoch: a best copy the kill left out is
written from the resumed state, per-epoch checkpoints of abandoned epochs (resuming from
an older checkpoint) and those beyond SAVE_CKPT_NUM are deleted, and so are the temporary
files of writes the kill cut short.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import torch
from torch import nn
from yacs.config import CfgNode

from grootv import atomic
from grootv.checkpoint import (
    CheckpointMismatchError,
    UnreadableCheckpointError,
    extract_state_dict,
    load_checkpoint,
)
from grootv.checkpoint import read_checkpoint as read_checkpoint_file

from .config import saved_config, saved_mapping
from .errors import CheckpointError, ConfigError

logger = logging.getLogger(__name__.rsplit(".", 1)[0])

_NUMBERED = re.compile(r"^ckpt_epoch_(\d+)\.pth$")
# The best copies and the checkpoint entry that says which epoch each should hold.
BEST_FILES = {"best": "best_epoch", "ema_best": "best_epoch_ema"}
# Everything the pipeline writes into OUTPUT through grootv.atomic.
_WRITTEN = ("ckpt_epoch_*.pth", "metrics.jsonl", "config.yaml", "eval.json")


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
    """The per-epoch checkpoint of the highest epoch in ``output``, or None."""
    found = numbered_checkpoints(output)
    return found[-1][1] if found else None


def saved_epoch(path: str, trusted: bool = False) -> int:
    """The ``epoch`` entry of a training checkpoint, read without loading its tensors."""
    checkpoint = read_checkpoint(path, trusted, mmap=True)
    epoch = checkpoint.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise CheckpointError(f"{path} is not a training checkpoint (its 'epoch' entry is {epoch!r}); "
                              "move it out of the output folder")
    return epoch


def resume_checkpoint(output: str, trusted: bool = False) -> str | None:
    """The file in ``output`` with the newest training state: the per-epoch checkpoint of the
    highest epoch, or a best copy of a later epoch. None when there is neither."""
    # Of the same epoch (the same content) the per-epoch checkpoint is preferred, then "best".
    candidates = [(epoch, 2, path) for epoch, path in numbered_checkpoints(output)]
    for preference, tag in enumerate(reversed(BEST_FILES)):
        path = checkpoint_path(output, tag)
        if os.path.isfile(path):
            candidates.append((saved_epoch(path, trusted), preference, path))
    return max(candidates)[2] if candidates else None


def prune_checkpoints(output: str, keep: int) -> None:
    """Deletes all but the ``keep`` newest per-epoch checkpoints."""
    for _, path in numbered_checkpoints(output)[:-keep]:
        os.remove(path)


def drop_checkpoints_from(output: str, epoch: int) -> None:
    """Deletes the per-epoch checkpoints of epochs >= ``epoch`` (those a resumed run redoes)."""
    for number, path in numbered_checkpoints(output):
        if number >= epoch:
            os.remove(path)


def tidy_output(output: str, keep: int, resumed: tuple[str, dict] | None, trusted: bool = False) -> None:
    """Makes ``output`` what an uninterrupted run leaves after the resumed epoch (see the module
    docstring); ``resumed`` is ``(path, checkpoint)`` of the state training continues from,
    None for a fresh start. Run by the main process before training."""
    for path in atomic.remove_leftovers(output, _WRITTEN):
        logger.info(f"removed {os.path.basename(path)}, left by a write that was cut short")
    if resumed is None:
        return
    path, checkpoint = resumed
    epoch = int(checkpoint["epoch"])
    drop_checkpoints_from(output, epoch + 1)
    prune_checkpoints(output, keep)
    for tag, key in BEST_FILES.items():
        if key not in checkpoint:
            continue  # written before the best epochs were recorded: nothing to compare with
        _repair_best_copy(checkpoint_path(output, tag), checkpoint[key], path, epoch, trusted)


def _repair_best_copy(best: str, wanted: int | None, resumed_path: str, resumed_epoch: int, trusted: bool) -> None:
    """Makes the best copy ``best`` hold epoch ``wanted`` (None: no best yet), or removes it."""
    held = saved_epoch(best, trusted) if os.path.isfile(best) else None
    if held == wanted:
        return
    name = os.path.basename(best)
    if wanted == resumed_epoch:
        # Killed after this epoch's state was saved, before its best copy was.
        atomic.copy_file(resumed_path, best)
        logger.info(f"wrote {name} (epoch {wanted}) from {os.path.basename(resumed_path)}")
        return
    # Only when resuming from an older checkpoint than the newest: a later, now abandoned
    # epoch overwrote the copy. A best file always matches metrics.jsonl, or is absent.
    if held is not None:
        os.remove(best)
        logger.warning(f"deleted {name}: it holds epoch {held}, not epoch {wanted}, the best up to epoch "
                       f"{resumed_epoch} where training resumes")
    if wanted is not None:
        logger.warning(f"the weights of epoch {wanted} (the best so far) are not on disk any more; {name} is "
                       "written again when the accuracy improves")


def read_checkpoint(path: str, trusted: bool = False, mmap: bool = False) -> dict:
    """Loads a checkpoint file onto the CPU; only tensors, plain values and the release's yacs
    config unless ``trusted``."""
    try:
        return read_checkpoint_file(path, trusted=trusted, trust_hint="add --trust-checkpoint", mmap=mmap)
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


def trained_config(checkpoint: dict, path: str) -> CfgNode | None:
    """The config the checkpoint was trained with (ours: yaml text; the release's: a yacs
    config), over the defaults; None for a checkpoint without one (a bare state_dict)."""
    if not isinstance(checkpoint.get("config"), (str, Mapping)):
        return None
    try:
        return saved_config(checkpoint["config"], path)
    except ConfigError as error:
        raise CheckpointError(str(error)) from None


def trained_image_size(checkpoint: dict, path: str) -> int | None:
    """DATA.IMG_SIZE of the run that wrote the checkpoint, or None when it does not record one."""
    if not isinstance(checkpoint.get("config"), (str, Mapping)):
        return None
    try:
        size = saved_mapping(checkpoint["config"], path).get("DATA", {}).get("IMG_SIZE")
    except ConfigError as error:
        raise CheckpointError(str(error)) from None
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise CheckpointError(f"{path}: its config's DATA.IMG_SIZE must be a positive int, got {size!r}")
    return size


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
    best: dict,
    world_size: int,
    config_yaml: str,
    classes: list[str],
) -> dict:
    """``best`` has ``max_accuracy``, ``max_accuracy_ema``, ``best_epoch`` and ``best_epoch_ema``."""
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": epoch,
        **{key: best[key] for key in ("max_accuracy", "max_accuracy_ema", "best_epoch", "best_epoch_ema")},
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
    """Puts a training checkpoint back; returns ``epoch``, ``max_accuracy``, ``max_accuracy_ema``,
    ``best_epoch`` and ``best_epoch_ema`` (None where the checkpoint does not record them).

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
        "best_epoch": checkpoint.get("best_epoch"),
        "best_epoch_ema": checkpoint.get("best_epoch_ema"),
    }
