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
from collections.abc import Mapping

from mmengine.logging import print_log
from torch import nn

from ..checkpoint import CheckpointMismatchError, LoadResult, read_checkpoint, select_state_dict

__all__ = ["load_pretrained"]

# Keys of the classification model that a backbone never has.
_CLASSIFIER_PREFIXES = ("conv_head.", "head.")
# Dense-prediction checkpoints (mmdet/mmseg) keep the backbone under this prefix.
_BACKBONE_PREFIX = "backbone."
_SHOWN = 20


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
        try:
            checkpoint = read_checkpoint(checkpoint, map_location=map_location, trusted=trusted,
                                         trust_hint="add trusted=True to the backbone's init_cfg")
        except FileNotFoundError as error:
            raise FileNotFoundError(
                f"pretrained {error} (relative paths start at the working directory {os.getcwd()!r}); set "
                f"model.backbone.init_cfg.checkpoint to the classification weights, or init_cfg=None to train "
                f"from scratch"
            ) from None
    try:
        source, state_dict = select_state_dict(checkpoint, use_ema)
    except (TypeError, ValueError) as error:
        raise type(error)(f"{where}: {error}") from None
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
