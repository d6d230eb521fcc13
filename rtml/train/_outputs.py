"""The files of a model directory (``model.pt``, ``checkpoint.pt``, ``train_metrics.csv``):
checked before training, written atomically, with a failed write reported in one line.

Every file is written whole under a temporary sibling name and renamed into place
(:func:`rtml._atomic.atomic_write`), so a kill or a full disk leaves the previous version
intact and no temporary behind.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import torch

from rtml._atomic import atomic_write
from rtml._errors import InputError, RtmlError

__all__ = ["check_model_dir", "save_state", "write_rows"]


def check_model_dir(out: Path) -> None:
    """Refuse a model directory that cannot be written, before any work is done.

    Raises:
        InputError: ``out`` exists and is not a directory, or the directory (or its
            nearest existing parent, when it must be created) is not writable.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"output '{out}' exists and is not a directory")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise InputError(f"cannot write the model directory '{out}': '{existing}' is not writable")


def _report_write_errors(path: Path, write) -> None:
    """Run ``write()``; an :class:`OSError` (disk full, quota, file too large) becomes one
    :class:`RtmlError` line naming ``path``."""
    try:
        write()
    except OSError as err:
        raise RtmlError(f"cannot write '{path}': {err.strerror or err}; the previous "
                        "version, if any, is left as it was") from None


def save_state(path: Path, state: dict, *, fsync: bool = False) -> None:
    """``torch.save`` of ``state`` to ``path``, atomically.

    The state is serialised in memory and written by Python, so a full disk raises
    :class:`OSError` (``ENOSPC``) rather than torch's multi-line ``RuntimeError``.
    ``fsync``: flush to disk before the rename (checkpoints).
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _report_write_errors(path, lambda: atomic_write(
        path, lambda tmp: Path(tmp).write_bytes(buffer.getbuffer()), fsync=fsync))


def write_rows(path: Path, rows: list[dict], fieldnames: list[str]) -> None:
    """Write ``rows`` (dicts keyed by ``fieldnames``) as a CSV table with a header, atomically."""
    def write(tmp):
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)

    _report_write_errors(path, lambda: atomic_write(path, write))
