"""Files and folders that appear whole or not at all, even when the process is killed.

Everything is written under a temporary name in the destination's own folder (a rename is
atomic only within one filesystem), flushed to disk, then renamed over the destination; on
failure the temporary copy is removed and the destination keeps its previous content. A folder
is deleted the same way: renamed out of its place first, then removed. The temporary names
of ``path`` start with ``.<name of path>.``; a process killed before it could remove them
leaves them behind, and :func:`remove_leftovers` clears them on the next run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

__all__ = ["atomic_write", "atomic_directory", "move_into_place", "remove_directory", "remove_leftovers"]


def _umask() -> int:
    """The process's umask; reading it means setting it, so it is set back at once."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync(path: str | os.PathLike) -> None:
    """Flushes a file, or a folder's entries and every file below it, to disk."""
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for name in files:
                _fsync_one(os.path.join(root, name))
            _fsync_one(root)
    else:
        _fsync_one(path)


def _fsync_one(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def move_into_place(
    staged: str | os.PathLike, path: str | os.PathLike, aside_in: str | os.PathLike | None = None
) -> None:
    """Flushes ``staged`` (a file or a folder on the same filesystem as ``path``, e.g. in its
    folder) to disk and renames it to ``path``, replacing what is there.

    A file is replaced in one rename. A folder cannot be renamed over a non-empty one, so an
    existing folder is first renamed aside (into a temporary folder in ``aside_in``, by default
    ``path``'s folder, deleted afterwards): at every moment ``path`` is either absent or
    complete, never a mixture of old and new files.
    """
    path = Path(path)
    _fsync(staged)
    if path.is_dir():
        aside = tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent if aside_in is None else aside_in)
        try:
            old = os.path.join(aside, path.name)
            os.replace(path, old)
            try:
                os.replace(staged, path)
            except BaseException:
                os.replace(old, path)
                raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(staged, path)
    # The renames live in the parent folder's entries; without this a power cut may undo them.
    _fsync_one(path.parent)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[TextIO]:
    """``with atomic_write(path) as f: f.write(...)``: ``path`` (UTF-8 text) holds everything
    written once the block ends without an exception, and is left untouched when it raises."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            yield f
        move_into_place(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """``with atomic_directory(path) as staging: <write files into staging>``: once the block
    ends without an exception the folder replaces ``path``; when it raises, ``path`` is left
    as it was and the staging folder is deleted."""
    path = Path(path)
    staging = tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # mkdtemp makes the folder private (0700); give it the permissions a plain mkdir would.
        os.chmod(staging, 0o777 & ~_umask())
        yield Path(staging)
        move_into_place(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_directory(path: str | os.PathLike, aside_in: str | os.PathLike | None = None) -> None:
    """Deletes the folder ``path`` so that it leaves its place whole: it is renamed into a
    temporary folder in ``aside_in`` (by default ``path``'s folder) and deleted from there. A
    kill while its files are being deleted leaves a partial copy under the temporary name,
    never under ``path``."""
    path = Path(path)
    aside = tempfile.mkdtemp(prefix=f".{path.name}.deleted-", dir=path.parent if aside_in is None else aside_in)
    os.replace(path, os.path.join(aside, path.name))
    _fsync_one(path.parent)
    shutil.rmtree(aside)


def remove_leftovers(path: str | os.PathLike) -> list[str]:
    """Deletes the temporary files and folders that the functions above made for ``path`` and
    a killed process left in its folder; returns their names."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    names = sorted(name for name in os.listdir(path.parent) if name.startswith(f".{path.name}."))
    for name in names:
        leftover = path.parent / name
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        else:
            leftover.unlink()
    return names
