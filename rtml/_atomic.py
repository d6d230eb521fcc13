"""Output safety: atomic file and directory writes, and the checks before a job writes.

A file or directory is written under a temporary sibling name, then renamed over the target,
so a reader (or a rerun after a crash) sees either the old output or the complete new one,
never a half-written one at the target path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from rtml._errors import InputError


def check_output_path(out, force: bool) -> None:
    """Refuse an output path before any work is done.

    ``out`` may not exist yet, may be an empty directory (pre-created by a workflow manager),
    or may exist with ``force``. Its parent directory is created and must be writable.

    Raises:
        InputError: ``out`` exists (not an empty directory) without ``force``, or its
            directory cannot be created or written.
    """
    out = Path(out)
    empty_dir = out.is_dir() and not any(out.iterdir())
    if out.exists() and not force and not empty_dir:
        raise InputError(f"output '{out}' exists; remove it or pass --force")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create output directory '{out.parent}': {err.strerror}") from None
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"output directory '{out.parent}' is not writable")


def _temporary_sibling(path: Path, suffix: str) -> Path:
    """``.{name}.tmp-{pid}{suffix}`` beside ``path`` (same file system: the rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def _replace_path(tmp: Path, out: Path) -> None:
    """Move a finished file or directory into place with :func:`os.replace`; a directory at
    ``out`` is first renamed aside, then removed. (A directory cannot replace a file:
    :class:`NotADirectoryError`.)"""
    if out.is_dir() and not out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def atomic_write(path, write, *, fsync: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the resulting file to ``path``.

    The temporary file ``.{name}.tmp-{pid}{suffix}`` sits in the same directory (so the
    rename is atomic) and keeps the suffix (so writers that infer a format from it, like
    matplotlib, work). A file at ``path`` is replaced with :func:`os.replace`; a directory
    there (an earlier output of another shape, overwritten with ``--force``) is renamed
    aside, replaced and then removed. On any exception the temporary file is removed and
    the exception re-raised. ``fsync`` flushes the file to disk before the rename
    (checkpoints that must survive a power loss).
    """
    path = Path(path)
    tmp = _temporary_sibling(path, path.suffix)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        _replace_path(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_directory(path, write) -> Path:
    """Call ``write(tmp_dir)`` on a new empty directory and move it to ``path``.

    The directory ``.{name}.tmp-{pid}`` sits beside ``path``; a directory already at
    ``path`` is replaced as in :func:`atomic_write`. On any exception the temporary
    directory is removed and the exception re-raised.
    """
    path = Path(path)
    tmp = _temporary_sibling(path, "")
    try:
        tmp.mkdir()
        write(tmp)
        _replace_path(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def atomic_write_text(path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
