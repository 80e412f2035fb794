"""Checkpoint files for the loading tests: hostile ones, which run code when unpickled, and
ones laid out as the release's training checkpoints."""

from __future__ import annotations

import os

import torch
from torch import nn


class PlantsMarker:
    """Unpickling it creates the folder ``marker``: what a hostile file could do instead is anything."""

    def __init__(self, marker: str | os.PathLike):
        self.marker = os.fspath(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def write_hostile_checkpoint(path, marker, entries: dict | None = None, legacy: bool = False) -> str:
    """``entries`` (e.g. a state_dict under "model") plus an object that creates ``marker``."""
    checkpoint = dict(entries or {})
    checkpoint["payload"] = PlantsMarker(marker)
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)
    return os.fspath(path)


def write_release_checkpoint(path, model: nn.Module, config) -> dict:
    """The layout of the release's training checkpoints: weights, training state and the
    run's frozen yacs ``config`` object itself (not yaml text). Returns what was saved."""
    optimizer = torch.optim.AdamW(model.parameters())
    checkpoint = {
        "model": model.state_dict(), "model_ema": model.state_dict(), "optimizer": optimizer.state_dict(),
        "lr_scheduler": {"t_initial": 300, "base_values": [1e-3]}, "max_accuracy": 83.4, "epoch": 299,
        "config": config, "amp": {"scale": 65536.0}, "max_accuracy_ema": 83.5, "ema_decay": 0.9999,
    }
    torch.save(checkpoint, path)
    return checkpoint
