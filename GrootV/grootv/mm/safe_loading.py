"""mmengine's checkpoint loading without running code from the files.

mmengine reads checkpoints (``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained')``
of any module) through the loaders of its ``CheckpointLoader``, which call ``torch.load``
without choosing ``weights_only`` (from a URL: ``weights_only=False``). A file's pickle
can then run any code it names. :func:`install` (run by ``import grootv.mm``) wraps every
loader so that it reads weights only: tensors, plain values, and the few objects
mmengine's own checkpoints pickle (:data:`MMENGINE_CLASSES`: numpy arrays and scalars,
the logging buffers of the message hub). A file holding anything else is refused with an
:class:`~grootv.checkpoint.UnreadableCheckpointError` naming it, unless loading happens
inside :func:`trusted_checkpoints` (``--trust-checkpoint`` of ``grootv.mm.train`` and
``grootv.mm.test``).

A buffer's statistics (``min``, ``max``, ``mean``, ``current``) are pickled as
``getattr(HistoryBuffer, name)``; ``getattr`` itself cannot be allowed (it reaches
anything, ``__globals__`` and ``__builtins__`` included), so that name is bound to
:func:`_history_buffer_statistic`, which looks up those methods and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
from collections.abc import Callable, Iterator

import numpy as np
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from ..checkpoint import UnreadableCheckpointError, allowing, refused_objects_message

__all__ = ["MMENGINE_CLASSES", "install", "trusted_checkpoints"]

TRUST_HINT = ("pass --trust-checkpoint to python -m grootv.mm.train / grootv.mm.test (or load it inside "
              "grootv.mm.trusted_checkpoints())")
_TORCH_SWITCHES = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
_trusted = False


def _history_buffer_statistic(owner, name: str):
    """``getattr(HistoryBuffer, name)`` for HistoryBuffer's public methods (the statistics a
    buffer pickles are among them); refuses any other object or name. The function returned
    cannot be called by the unpickler: only allowed globals can."""
    public = isinstance(name, str) and not name.startswith("_") and name in vars(HistoryBuffer)
    if owner is not HistoryBuffer or not public:
        raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not a HistoryBuffer statistic")
    return getattr(HistoryBuffer, name)


def _numpy_globals() -> list:
    """What numpy arrays, scalars and dtypes pickle as (torch's own docs list these as safe)."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    # numpy >= 1.25 pickles a dtype by its class (numpy.dtypes.Float64DType, ...).
    dtype_classes = [cls for cls in vars(getattr(np, "dtypes", object)).values()
                     if isinstance(cls, type) and issubclass(cls, np.dtype)]
    return [core.multiarray._reconstruct, core.multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


# What mmengine's checkpoints pickle besides tensors and plain values (torch.save's
# protocol 2 writes builtins.getattr as __builtin__.getattr; torch maps it back).
MMENGINE_CLASSES = [HistoryBuffer, *_numpy_globals(), (_history_buffer_statistic, "builtins.getattr")]


@contextlib.contextmanager
def trusted_checkpoints(trusted: bool = True) -> Iterator[None]:
    """Within the block, mmengine's loaders unpickle any object when ``trusted`` (only for files you trust)."""
    global _trusted
    before, _trusted = _trusted, bool(trusted)
    try:
        yield
    finally:
        _trusted = before


@contextlib.contextmanager
def _torch_load_mode(weights_only: bool) -> Iterator[None]:
    """Forces ``torch.load``'s ``weights_only`` (also where a caller passes False) with torch's
    own environment switches, restoring the user's settings afterwards."""
    saved = {name: os.environ.pop(name, None) for name in _TORCH_SWITCHES}
    os.environ[_TORCH_SWITCHES[0] if weights_only else _TORCH_SWITCHES[1]] = "1"
    try:
        yield
    finally:
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _guarded(loader: Callable) -> Callable:
    @functools.wraps(loader)
    def load(filename, *args, **kwargs):
        if _trusted:
            with _torch_load_mode(weights_only=False):
                return loader(filename, *args, **kwargs)
        try:
            with _torch_load_mode(weights_only=True), allowing(MMENGINE_CLASSES):
                return loader(filename, *args, **kwargs)
        except pickle.UnpicklingError as error:
            raise UnreadableCheckpointError(refused_objects_message(filename, error, TRUST_HINT)) from None

    load.guarded_by_grootv = True
    return load


def install() -> None:
    """Wraps every loader registered with mmengine's CheckpointLoader (once)."""
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if not getattr(loader, "guarded_by_grootv", False):
            CheckpointLoader.register_scheme(prefix, _guarded(loader), force=True)
