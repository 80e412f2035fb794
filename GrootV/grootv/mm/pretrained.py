"""Initialising a dense-prediction backbone from classification weights.

A classification checkpoint holds more than the backbone needs: its classifier
(``conv_head``, ``head``) is expected to go unused and only counted in the log; other
unused tensors (the levels after the last requested output, say) and backbone weights
the file lacks are listed in warnings. A tensor whose shape differs is an
error, because it means the file was trained for another model (GrootV-S weights in a
GrootV-T config, say) and loading the rest would start training from a silently
half-random network. A file that provides none of the backbone's weights is an error
for the same reason.
"""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from collections.abc import Mapping

import torch
from mmengine.logging import print_log
from torch import nn

from ..checkpoint import CheckpointMismatchError, LoadResult, extract_state_dict

__all__ = ["load_pretrained"]

# Keys of the classification model that a backbone never has.
_CLASSIFIER_PREFIXES = ("conv_head.", "head.")
# Dense-prediction checkpoints (mmdet/mmseg) keep the backbone under this prefix.
_BACKBONE_PREFIX = "backbone."
_SHOWN = 20


def _read_checkpoint(checkpoint: str | os.PathLike, map_location="cpu", trusted: bool = False) -> Mapping:
    """A checkpoint file (or http(s) URL) loaded onto ``map_location``.

    Only tensors and plain values are unpickled unless ``trusted``: the release's own
    training files also pickle their yacs config, which needs ``trusted=True``.
    """
    if not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"`checkpoint` must be a path or URL, got {type(checkpoint).__name__}")
    location = os.fspath(checkpoint)
    try:
        if location.startswith(("http://", "https://")):
            return torch.hub.load_state_dict_from_url(location, map_location=map_location,
                                                      weights_only=not trusted)
        if not os.path.isfile(location):
            raise FileNotFoundError(
                f"pretrained `checkpoint` not found: {location!r} (relative paths start at the working "
                f"directory {os.getcwd()!r}); set model.backbone.init_cfg.checkpoint to the classification "
                f"weights, or init_cfg=None to train from scratch"
            )
        return torch.load(location, map_location=map_location, weights_only=not trusted)
    except pickle.UnpicklingError as error:
        if os.path.isfile(location) and not _looks_like_torch_save(location):
            raise ValueError(f"{location!r} is not a readable PyTorch checkpoint: {error}") from None
        raise ValueError(
            f"{location!r} holds pickled objects besides tensors (the release's training checkpoints keep "
            f"their yacs config). If you trust the file, add trusted=True to the backbone's init_cfg. ({error})"
        ) from None
    except (RuntimeError, EOFError) as error:
        raise ValueError(f"{location!r} is not a readable PyTorch checkpoint: {error}") from None


def _looks_like_torch_save(path: str) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle stream (the legacy format)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


def _source(checkpoint: Mapping, use_ema: bool | None) -> str:
    """The entry :func:`grootv.extract_state_dict` reads, by its documented rule."""
    plain = next((k for k in ("model", "state_dict") if k in checkpoint), None)
    ema = next((k for k in ("model_ema", "state_dict_ema") if k in checkpoint), None)
    if use_ema is None:
        return plain or ema or "state_dict"
    return (ema if use_ema else plain) or "state_dict"


def _backbone_part(state_dict: dict) -> dict:
    if any(k.startswith(_BACKBONE_PREFIX) for k in state_dict):
        return {k[len(_BACKBONE_PREFIX):]: v for k, v in state_dict.items() if k.startswith(_BACKBONE_PREFIX)}
    return state_dict


def _listing(keys: list[str]) -> str:
    more = f", ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_pretrained(
    backbone: nn.Module,
    checkpoint: str | os.PathLike | Mapping,
    *,
    use_ema: bool | None = None,
    strict: bool = False,
    trusted: bool = False,
    map_location="cpu",
) -> LoadResult:
    """Load classification (or detector/segmentor) weights into ``backbone``.

    Args:
        backbone: the module to fill (a :class:`grootv.mm.GrootVBackbone`).
        checkpoint: a path or URL, or an already loaded checkpoint: a training file with
            ``model``/``model_ema`` (the release's and ``grootv.classification``'s),
            ``state_dict`` (mmengine's; the ``backbone.`` part is taken), or a bare state_dict.
        use_ema: None takes ``model`` when present, else ``model_ema``; True/False insist.
        strict: also fail when backbone weights are missing from the file (by default
            they are reported and keep their initialisation).
        trusted: allow unpickling non-tensor objects (only for files you trust).
        map_location: for ``torch.load``.

    Raises :class:`grootv.CheckpointMismatchError` on any shape mismatch, when nothing
    in the file fits the backbone, or (``strict``) when keys are missing.
    """
    where = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else "the given checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = _read_checkpoint(checkpoint, map_location, trusted)
    try:
        state_dict = extract_state_dict(checkpoint, use_ema)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None
    source = _source(checkpoint, use_ema)
    state_dict = _backbone_part(state_dict)

    own = backbone.state_dict()
    mismatched = [f"{k}: checkpoint {tuple(v.shape)}, backbone {tuple(own[k].shape)}"
                  for k, v in state_dict.items() if k in own and v.shape != own[k].shape]
    fitting = {k: v for k, v in state_dict.items() if k in own and v.shape == own[k].shape}
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    name = type(backbone).__name__
    if mismatched:
        raise CheckpointMismatchError(
            f"{where} (entry {source!r}) does not fit {name}: {len(mismatched)} shape mismatch(es), e.g.\n    "
            + "\n    ".join(mismatched[:_SHOWN])
            + "\n  Were these weights trained for another model size? Check the backbone's channels and depths."
        )
    if not fitting:
        raise CheckpointMismatchError(
            f"{where} (entry {source!r}) has none of {name}'s {len(own)} weights; it holds e.g. "
            f"{_listing(sorted(state_dict)[:5]) or 'nothing'}. Is it a GrootV checkpoint?"
        )
    if missing and strict:
        raise CheckpointMismatchError(f"{where} (entry {source!r}) lacks {len(missing)} of {name}'s weights "
                                      f"(strict=True): {_listing(missing)}")

    backbone.load_state_dict(fitting, strict=False)
    classifier = [k for k in unexpected if k.startswith(_CLASSIFIER_PREFIXES)]
    others = [k for k in unexpected if not k.startswith(_CLASSIFIER_PREFIXES)]
    print_log(f"{name}: loaded {len(fitting)} tensors from {where} (entry {source!r}); "
              f"{len(classifier)} classifier tensors unused", logger="current")
    if others:
        print_log(f"{name}: {len(others)} tensors of {where} have no place in the backbone (unused): "
                  f"{_listing(others)}", logger="current", level=logging.WARNING)
    if missing:
        print_log(f"{name}: {len(missing)} backbone weights are not in {where} and keep their initialisation: "
                  f"{_listing(missing)}", logger="current", level=logging.WARNING)
    return LoadResult(source, missing, unexpected, [])
