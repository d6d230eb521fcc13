"""Atomic file writes: write to a temporary sibling, then rename over the target.

A reader (or a rerun after a crash) sees either the old file or the complete new one,
never a half-written file at the target path.
"""

from __future__ import annotations

import os
from pathlib import Path


def atomic_write(path, write, *, fsync: bool = False) -> Path:
    """Call ``write(tmp_path)`` and move the result to ``path`` with :func:`os.replace`.

    The temporary file ``.{name}.tmp-{pid}{suffix}`` sits in the same directory (so the
    rename is atomic) and keeps the suffix (so writers that infer a format from it, like
    matplotlib, work). On any exception it is removed and the exception re-raised.
    ``fsync`` flushes the file to disk before the rename (checkpoints that must survive a
    power loss).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path, text: str) -> Path:
    """Atomically write a text file."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
