"""Files from elsewhere are data: pickle files are read tensors-only unless the user trusts them.

Weights and training state in pickle format (``pytorch_model.bin``, ``adapter_model.bin``, the
Trainer's ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, ...) can run any code when
they are unpickled. transformers and peft read them with ``torch.load(weights_only=True)``,
which refuses everything but tensors and plain values, but the refusal names neither the file
nor how to allow it, and a library that passes ``weights_only=False`` (an optional one, such as
a DeepSpeed version) would unpickle anything. While :func:`pickle_policy` is active, every
``torch.load``

* without trust reads tensors and plain values only, whatever its caller asked, and a refusal
  becomes an :class:`~grootl.errors.UntrustedFileError` naming the file and the trust switch;
* with trust (the user's explicit switch) unpickles everything.

Any other failure to read such a file (damaged, truncated, not a PyTorch file) becomes a
:class:`~grootl.errors.CheckpointError` naming it.

The switches: ``--trust_checkpoint`` for ``grootl.train`` and ``grootl.merge``,
``trust_checkpoint=True`` in the ``--model_args`` of ``grootl.evaluate``, ``weights_only=False``
for ``GrootLMambaForCausalLM.from_pretrained`` (transformers' own), ``trusted=True`` for
:func:`grootl.lora.load_lora`. safetensors files are not pickles and load as always.

The policy replaces ``torch.load`` for the whole process while it is active (the libraries look
it up at each call), so it is meant for a command's lifetime, not for concurrent threads. When
policies nest, the outermost one (the command's, naming its switch) decides.
"""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator

import torch

from .errors import CheckpointError, UntrustedFileError

__all__ = ["pickle_policy"]

_active = False


def _file_name(f) -> str:
    if isinstance(f, (str, os.PathLike)):
        return os.fspath(f)
    return str(getattr(f, "name", f))


def _refusal(f, error: pickle.UnpicklingError, switch: str) -> str:
    # torch's message is a page of advice about torch.load; the part about the file is what
    # follows "WeightsUnpickler error:" (e.g. "Unsupported global: GLOBAL posix.system ...").
    text = str(error)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation of torch.load", 1)[0]
        reason = " ".join(detail.split()).split(". ")[0].rstrip(".")
    else:
        reason = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return (
        f"{_file_name(f)} cannot be read as tensors only ({reason}): it holds other pickled Python objects, which can "
        f"run code when unpickled, or it is damaged. If you trust the file, {switch}"
    )


@contextlib.contextmanager
def pickle_policy(trusted: bool, switch: str) -> Iterator[None]:
    """While active, ``torch.load`` unpickles everything if ``trusted``, else tensors only;
    ``switch`` completes the refusal's sentence "If you trust the file, ..."."""
    global _active
    if _active:
        yield
        return
    original = torch.load

    def load(f, *args, **kwargs):
        kwargs["weights_only"] = not trusted
        try:
            return original(f, *args, **kwargs)
        except pickle.UnpicklingError as error:
            if trusted:
                raise CheckpointError(f"{_file_name(f)} cannot be unpickled: {error}") from None
            raise UntrustedFileError(_refusal(f, error, switch)) from None
        except Exception as error:
            # A damaged or foreign file makes torch.load raise almost anything (KeyError,
            # RuntimeError from the zip reader, EOFError, ...); to the user they all mean the same.
            raise CheckpointError(
                f"{_file_name(f)} is not a readable PyTorch file ({type(error).__name__}: {str(error)[:200]})"
            ) from None

    torch.load = load
    _active = True
    try:
        yield
    finally:
        torch.load = original
        _active = False
