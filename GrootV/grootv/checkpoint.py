"""Loading GrootV weights: the release's checkpoint files, our own, or a bare state_dict.

A checkpoint that does not fit the model is an error that lists every missing key,
every unexpected key and every shape mismatch, never a log line that is easy to miss.

    model = grootv.models.GrootV(channels=80, depths=[2, 2, 9, 2])
    grootv.load_checkpoint(model, "grootv_t_1k_224.pth")                # its "model" entry
    grootv.load_checkpoint(model, "grootv_t_1k_224.pth", use_ema=True)  # its "model_ema" entry

Files are data, not code: ``torch.load`` runs with ``weights_only=True``, which rebuilds
tensors and plain values only, plus the one class the release's files also pickle (their
yacs config). Anything else is refused with a message naming the file, unless the caller
passes ``trusted=True`` (or its command-line form) for a file it trusts.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn
from yacs.config import CfgNode

__all__ = [
    "CheckpointMismatchError",
    "LoadResult",
    "UnreadableCheckpointError",
    "extract_state_dict",
    "load_checkpoint",
    "read_checkpoint",
    "select_state_dict",
]

# Where training scripts put the weights: the release (and InternImage/Swin) use
# "model"/"model_ema", timm's train.py "state_dict"/"state_dict_ema".
_PLAIN_KEYS = ("model", "state_dict")
_EMA_KEYS = ("model_ema", "state_dict_ema")
_SHOWN = 30  # keys listed per kind in an error message


class _ReleaseConfig:
    """Stands in for yacs' CfgNode while torch reads a checkpoint with ``weights_only=True``.

    Besides tensors and plain values, the release's training checkpoints pickle their yacs
    config. Torch's weights-only unpickler fills only plain dicts with items, so each
    CfgNode is rebuilt as an OrderedDict (its attributes, such as ``__immutable__``, land in
    the OrderedDict's ``__dict__``); :func:`_restore_cfg_nodes` turns those back into
    CfgNodes. Nothing from the file is called on the way.
    """

    def __new__(cls, *args):
        return OrderedDict()


# Globals the release's files pickle that are rebuilt without trust: (object, pickled name).
RELEASE_GLOBALS = [(_ReleaseConfig, "yacs.config.CfgNode")]


def _restore_cfg_nodes(value):
    if isinstance(value, OrderedDict) and CfgNode.IMMUTABLE in vars(value):
        node = CfgNode({key: _restore_cfg_nodes(item) for key, item in value.items()})
        if vars(value)[CfgNode.IMMUTABLE]:
            node.freeze()
        return node
    return value


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's keys or shapes do not match the model's."""


class UnreadableCheckpointError(ValueError):
    """The file is not a checkpoint torch can read, or holds objects it may not unpickle."""


@dataclass
class LoadResult:
    """What was loaded: the checkpoint entry used and what did not fit (empty when strict)."""

    source: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def _pick(checkpoint: Mapping, use_ema: bool | None) -> tuple[str | None, Mapping]:
    plain = next((k for k in _PLAIN_KEYS if k in checkpoint), None)
    ema = next((k for k in _EMA_KEYS if k in checkpoint), None)
    if plain is None and ema is None:
        if use_ema:
            raise ValueError("`use_ema=True` but the checkpoint is a bare state_dict (no 'model_ema' entry)")
        return None, checkpoint
    if use_ema is None:
        key = plain or ema
    else:
        key = ema if use_ema else plain
        if key is None:
            wanted = "/".join(_EMA_KEYS if use_ema else _PLAIN_KEYS)
            raise ValueError(f"`use_ema={use_ema}` but the checkpoint has no {wanted} entry; "
                             f"it has {sorted(map(str, checkpoint))}")
    return key, checkpoint[key]


def extract_state_dict(checkpoint: Mapping, use_ema: bool | None = None) -> dict[str, torch.Tensor]:
    """The model weights inside a loaded checkpoint object.

    Args:
        checkpoint: a dict with a "model" and/or "model_ema" entry (the release's files;
            "state_dict"/"state_dict_ema" as timm writes them are accepted too), or a bare
            state_dict.
        use_ema: None takes "model" when present, else "model_ema"; True/False require
            the EMA or the plain weights.

    A "module." prefix on every key (a model saved from inside DistributedDataParallel)
    is removed.
    """
    return select_state_dict(checkpoint, use_ema)[1]


def select_state_dict(checkpoint: Mapping, use_ema: bool | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    """``(entry used, state_dict)``: what :func:`extract_state_dict` returns, and where it
    came from ("model", "model_ema", "state_dict", "state_dict_ema", or "state_dict" for
    a bare state_dict)."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"`checkpoint` must be a dict (a state_dict or a training checkpoint), "
                        f"got {type(checkpoint).__name__}")
    if use_ema is not None and not isinstance(use_ema, bool):
        raise TypeError(f"`use_ema` must be None or a bool, got {type(use_ema).__name__}")
    key, state_dict = _pick(checkpoint, use_ema)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"checkpoint entry {key!r} must be a state_dict, got {type(state_dict).__name__}")
    not_tensors = [k for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        where = f"entry {key!r}" if key else "the checkpoint"
        raise ValueError(
            f"{where} is not a state_dict: {not_tensors[:5]} hold no tensors. Expected a dict of tensors "
            f"or a training checkpoint with a {'/'.join(_PLAIN_KEYS + _EMA_KEYS)} entry"
        )
    state_dict = dict(state_dict)
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return key or "state_dict", state_dict


def _listing(title: str, keys: list[str]) -> str:
    shown = "\n".join(f"    {k}" for k in keys[:_SHOWN])
    more = f"\n    ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return f"  {title} ({len(keys)}):\n{shown}{more}"


def _looks_like_torch_save(path: str) -> bool:
    """A zip archive (torch.save since 1.6) or a pickle stream (the legacy format)."""
    if zipfile.is_zipfile(path):
        return True
    with open(path, "rb") as f:
        return f.read(1) == b"\x80"


@contextlib.contextmanager
def allowing(classes: Iterable):
    """Lets ``torch.load(weights_only=True)`` rebuild ``classes`` within the block (classes or
    functions, or ``(stand-in, "module.name")`` pairs: see ``torch.serialization.add_safe_globals``)."""
    classes = list(classes)
    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is not None:
        with scoped(classes):
            yield
        return
    torch.serialization.add_safe_globals(classes)  # torch 2.4 has no scoped form
    yield


def refused_objects_message(location: str, error: Exception, trust_hint: str) -> str:
    """What to tell the user when weights-only loading refused what ``location`` pickles."""
    found = re.search(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>", str(error))
    what = f" (such as {found.group(1) or found.group(2)})" if found else ""
    return (f"{location!r} holds pickled Python objects{what} besides tensors and plain values. Unpickling "
            f"them can run code from the file, so it is refused; if you trust the file, {trust_hint}")


def read_checkpoint(
    location: str | os.PathLike, *, map_location="cpu", trusted: bool = False, trust_hint: str = "pass `trusted=True`",
    allowed_classes: Iterable = (), mmap: bool = False,
) -> Mapping:
    """The dict in a checkpoint file (or at an http(s) URL, through torch.hub's cache).

    Only tensors, plain values, the release's yacs config (:data:`RELEASE_GLOBALS`; read
    back as a CfgNode) and ``allowed_classes`` are unpickled unless ``trusted``. ``mmap``
    maps a local file's tensors instead of reading them (cheap when only a few entries
    are needed). ``trust_hint`` tells the
    caller's user how to allow the rest (a flag, a config key). Raises FileNotFoundError
    for a missing file and :class:`UnreadableCheckpointError`, naming the file, for
    anything torch cannot read or may not unpickle, or that holds no dict.
    """
    if not isinstance(location, (str, os.PathLike)):
        raise TypeError(f"`checkpoint` must be a path or URL, got {type(location).__name__}")
    location = os.fspath(location)
    is_url = location.startswith(("http://", "https://"))
    if not is_url and not os.path.isfile(location):
        raise FileNotFoundError(f"`checkpoint` file not found: {location!r}")
    try:
        with allowing([*RELEASE_GLOBALS, *allowed_classes]):
            if is_url:
                checkpoint = torch.hub.load_state_dict_from_url(location, map_location=map_location,
                                                                weights_only=not trusted)
            else:
                checkpoint = torch.load(location, map_location=map_location, weights_only=not trusted,
                                        mmap=mmap and zipfile.is_zipfile(location))
    except pickle.UnpicklingError as error:
        if trusted or (not is_url and not _looks_like_torch_save(location)):
            raise UnreadableCheckpointError(f"{location!r} is not a readable PyTorch checkpoint: {error}") from None
        raise UnreadableCheckpointError(refused_objects_message(location, error, trust_hint)) from None
    except Exception as error:
        # A damaged or foreign file makes torch.load raise almost anything (KeyError, RuntimeError,
        # EOFError, UnicodeDecodeError, IndexError, struct.error, ... were all seen on corrupted
        # checkpoints); every one of them means the same to the user.
        raise UnreadableCheckpointError(
            f"{location!r} is not a readable PyTorch checkpoint: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(checkpoint, Mapping):
        raise UnreadableCheckpointError(
            f"{location!r} holds a {type(checkpoint).__name__}, not a checkpoint dict or state_dict"
        )
    if not trusted and isinstance(checkpoint, dict):
        for key, value in checkpoint.items():
            checkpoint[key] = _restore_cfg_nodes(value)
    return checkpoint


def load_checkpoint(
    model: nn.Module,
    checkpoint: str | os.PathLike | Mapping,
    *,
    use_ema: bool | None = None,
    strict: bool = True,
    map_location="cpu",
    trusted: bool = False,
) -> LoadResult:
    """Load weights into ``model``, failing loudly when they do not fit.

    Args:
        model: the model to load into (e.g. a :class:`grootv.models.GrootV`).
        checkpoint: a file path or URL, or an already loaded checkpoint / state_dict.
        use_ema: see :func:`extract_state_dict`.
        strict: raise :class:`CheckpointMismatchError` listing every missing key,
            unexpected key and shape mismatch (default). With False the fitting tensors
            are loaded and the rest reported in a warning and in the result.
        map_location: for ``torch.load``.
        trusted: allow unpickling any object (``torch.load(weights_only=False)``); only
            for files from a trusted source. Not needed for the release's files: their
            tensors, plain values and yacs config are read without it.

    Returns a :class:`LoadResult`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_checkpoint(checkpoint, map_location=map_location, trusted=trusted)
    source, state_dict = select_state_dict(checkpoint, use_ema)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(expected[k].shape)}"
        for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape
    ]
    problems = [_listing(title, keys) for title, keys in
                (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)) if keys]
    if problems:
        message = (f"checkpoint entry {source!r} does not match {type(model).__name__}:\n" + "\n".join(problems))
        if strict:
            raise CheckpointMismatchError(message)
        warnings.warn(message + "\n  (strict=False: those stay as initialised)", stacklevel=2)
    fitting = {k: v for k, v in state_dict.items() if k in expected and v.shape == expected[k].shape}
    model.load_state_dict(fitting, strict=not problems)
    return LoadResult(source, missing, unexpected, [m.split(":")[0] for m in mismatched])
