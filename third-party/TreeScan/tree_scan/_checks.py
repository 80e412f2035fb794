"""Argument checks shared by the public functions.

Every message names the argument, what was expected and what came. Checks that
read tensor values (index ranges) would cost a device synchronisation on a GPU: there
they run only when asked for, the kernels asserting on the device otherwise. They are
skipped where there are no values to read (meta and fake tensors, torch.compile and
torch.export tracing) and where the compiled CPU kernels check the same ranges themselves.
"""

from __future__ import annotations

import torch
from torch._subclasses.fake_tensor import is_fake

from . import _library

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INDEX_DTYPES = (torch.int32, torch.int64)


def tensor(name: str, value, dtypes: tuple[torch.dtype, ...], ndim: int, shape_text: str) -> torch.Tensor:
    """``value`` is a tensor of one of ``dtypes`` with ``ndim`` dimensions (``shape_text`` describes them)."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor {shape_text}, got {type(value).__name__}")
    if value.dtype not in dtypes:
        names = ", ".join(str(d).replace("torch.", "") for d in dtypes)
        raise TypeError(f"`{name}` must have dtype {names}; got {str(value.dtype).replace('torch.', '')}")
    if value.dim() != ndim:
        raise ValueError(f"`{name}` must be {shape_text}; got shape {tuple(value.shape)}")
    return value


def same_device(**tensors: torch.Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        listed = ", ".join(f"`{name}` on {device}" for name, device in devices.items())
        raise ValueError(f"tensors must be on one device; got {listed}")


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``.

    Also takes a 0-d integer tensor: tracers (torch.jit.trace, fvcore's FLOP counter)
    hand sizes around as such.
    """
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, torch.SymInt)):
        raise TypeError(f"`{name}` must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}, got {value}")
    return value


def has_values(t: torch.Tensor) -> bool:
    """False for tensors that only describe a shape: meta, fake (tracing), or while compiling."""
    # is_compiling first: torch.compile folds it to True and never reaches is_fake (untraceable).
    return not torch.compiler.is_compiling() and t.device.type != "meta" and not is_fake(t)


def index_range(name: str, index: torch.Tensor, low: int, high: int, allow_padding: bool = False,
                validate: bool | None = None) -> None:
    """Every entry of ``index`` is in [low, high) (or is a -1 padding row when allowed).

    ``validate``: None checks where it costs no synchronisation and the kernel that will
    read ``index`` does not check it itself (CPU tensors without the compiled kernels);
    True checks on any device (on a GPU it waits for the GPU); False never checks.
    """
    if validate is False or index.numel() == 0 or not has_values(index):
        return
    if validate is None and (index.device.type != "cpu" or _library.BACKEND != "reference"):
        return
    entries = index
    if allow_padding:
        padding = (index == -1).all(dim=-1, keepdim=True)
        entries = torch.where(padding, low, index)
    smallest, largest = int(entries.min()), int(entries.max())
    if smallest < low or largest >= high:
        bad = smallest if smallest < low else largest
        raise ValueError(f"`{name}` holds vertex {bad}, outside [{low}, {high})")
