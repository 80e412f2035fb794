"""The errors GrootL reports to its user, and how the command lines print them.

A :class:`GrootLError` is something the user can fix (a path, a data file, a flag, an
untrusted file, no network). The command lines print it as one line, ``error: ...``, and exit
with status 2, as GrootV's do; any other exception is a bug and keeps its traceback. The
classes derive from ``ValueError`` so that code catching ``ValueError`` keeps working.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

__all__ = ["GrootLError", "DataError", "CheckpointError", "UntrustedFileError", "HubUnreachableError", "run_command"]

Result = TypeVar("Result")


class GrootLError(ValueError):
    """Something the user can fix: printed without a traceback by the command lines."""


class DataError(GrootLError):
    """A training data file that is missing, unreadable or not in the Alpaca format."""


class CheckpointError(GrootLError):
    """A model, adapter or checkpoint folder that is missing or cannot be read."""


class UntrustedFileError(CheckpointError):
    """A pickle file that holds Python objects besides tensors, refused without the trust switch."""


class HubUnreachableError(GrootLError):
    """Something has to come from the Hugging Face Hub, which is off (HF_HUB_OFFLINE) or unreachable."""


def run_command(run: Callable[[list[str] | None], Result], argv: list[str] | None) -> Result:
    """``run(argv)``; a :class:`GrootLError` is printed as one line and exits with status 2."""
    try:
        return run(argv)
    except GrootLError as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
