"""Checkpoint files that run code when unpickled, for the tests that every loader refuses them."""

from __future__ import annotations

import os

import torch


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
