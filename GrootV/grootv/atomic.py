"""Atomic file writes: a reader sees the old file or the complete new one, never half of it.

Each writer fills a temporary file in the target's folder (a rename is only atomic within
one file system), flushes it to disk, then renames it over the target. If anything fails
on the way, or the process is interrupted, the temporary file is removed and the target
is left as it was.

    write_text("OUTPUT/config.yaml", config.dump())
    torch_save(state, "OUTPUT/ckpt_epoch_3.pth")

A process killed outright (SIGKILL, out of memory, a node lost) cannot remove its temporary
file: :func:`remove_leftovers` does, when the next run starts.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from typing import IO

import torch

__all__ = ["atomic_open", "copy_file", "remove_leftovers", "torch_save", "write_text"]

_SUFFIX = ".tmp"
# ".<target name>.<mkstemp's random part>.tmp", as atomic_open names them.
_TEMPORARY = re.compile(r"^\.(.+)\.[A-Za-z0-9_]+" + re.escape(_SUFFIX) + "$")


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """A file object to write ``path``'s new content into; it replaces ``path`` when the block ends."""
    if mode not in ("w", "wb"):
        raise ValueError(f"`mode` must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    handle, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=_SUFFIX,
                                   dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(handle, mode, encoding=None if "b" in mode else "utf-8") as f:
            # mkstemp makes the file private (0600); give it the permissions a plain open() would.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def torch_save(obj, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)``, atomically."""
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def copy_file(source: str | os.PathLike, path: str | os.PathLike) -> None:
    """Copies ``source`` over ``path``, atomically."""
    with open(source, "rb") as f, atomic_open(path, "wb") as target:
        shutil.copyfileobj(f, target, 1 << 24)


def remove_leftovers(folder: str | os.PathLike, targets: tuple[str, ...]) -> list[str]:
    """Deletes the temporary files that writes to ``folder`` left when their process was killed
    (no ``finally`` runs then); ``targets`` are the names (or glob patterns) of the files written
    there. Returns the paths removed. Call it only while nothing writes those files."""
    removed = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        match = _TEMPORARY.match(name)
        if match and any(fnmatch.fnmatchcase(match.group(1), pattern) for pattern in targets):
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
                removed.append(path)
    return removed
