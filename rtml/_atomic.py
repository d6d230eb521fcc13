"""Output safety: atomic file and directory writes, and the checks before a job writes.

A file or directory is written under a temporary sibling name, then renamed over the target,
so a reader (or a rerun after a crash) sees either the old output or the complete new one,
never a half-written one at the target path. A process killed in between (SIGKILL, power
loss) leaves its temporary sibling behind; the next run at the same path removes it
(:func:`remove_stale_temporaries`).

What ``--force`` may replace: a regular file, or a directory holding only files of the kind
the command writes (:func:`check_output_path`). Symbolic links, FIFOs, sockets and device
files are never replaced, and outputs are never written through a symbolic link.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
from pathlib import Path

from rtml._errors import InputError

log = logging.getLogger("rtml")

#: What a path that is neither a regular file, a directory nor a link is, by its mode.
_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def _special_kind(path: Path) -> str | None:
    """``"a FIFO"``, ``"a socket"``, ... when ``path`` is such a file (not followed if a
    link), else None (absent, regular file, directory or symbolic link)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), None)


def check_output_path(out, force: bool, rtml_files: str | None = None) -> None:
    r"""Refuse an output path before any work is done.

    ``out`` may not exist yet, may be an empty directory (pre-created by a workflow manager),
    or, with ``force``, may be what the command itself writes: a regular file, or a
    directory whose entries are all regular files named as ``rtml_files`` says. Its parent
    directory is created and must be writable. Temporaries of ``out`` left by killed rtml
    processes are removed (:func:`remove_stale_temporaries`).

    Args:
        out: the output file or directory.
        force: replace an existing output (``--force``).
        rtml_files: regular expression (full match) for the names of the files the command
            writes into an output directory, e.g. ``r"t\d{2,}-.+\.h5"``; None when it never
            writes a directory (then a non-empty directory at ``out`` is never replaced).

    Raises:
        InputError: ``out`` is a symbolic link (outputs are never written through one), a
            FIFO, socket or device file, a directory holding anything rtml did not write, or
            exists without ``force``; or its directory cannot be created or written.
    """
    out = Path(out)
    if out.is_symlink():
        raise InputError(f"output '{out}' is a symbolic link (to '{os.readlink(out)}'); rtml "
                         "refuses to write through links: give the target path itself")
    kind = _special_kind(out)
    if kind is not None:
        raise InputError(f"output '{out}' is {kind}, not a regular file or directory; "
                         "rtml never replaces it, even with --force")
    empty_dir = out.is_dir() and not any(out.iterdir())
    if out.exists() and not force and not empty_dir:
        raise InputError(f"output '{out}' exists; remove it or pass --force")
    if out.is_dir() and not empty_dir:
        foreign = _first_foreign_entry(out, rtml_files)
        if foreign is not None:
            raise InputError(f"output '{out}' is a directory rtml did not write (it holds "
                             f"'{foreign}'); --force replaces only rtml's own outputs: remove "
                             "it yourself or choose another path")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create output directory '{out.parent}': {err.strerror}") from None
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"output directory '{out.parent}' is not writable")
    remove_stale_temporaries(out.parent, out.name)


def _first_foreign_entry(directory: Path, rtml_files: str | None) -> str | None:
    """The name of an entry of ``directory`` that is not a regular file matching
    ``rtml_files`` (None when there is none)."""
    pattern = re.compile(rtml_files) if rtml_files is not None else None
    for entry in sorted(directory.iterdir()):
        regular = entry.is_file() and not entry.is_symlink()
        if pattern is None or not regular or not pattern.fullmatch(entry.name):
            return entry.name
    return None


def _process_running(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (this process counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_temporaries(directory, name: str | None = None) -> list[Path]:
    """Remove the temporaries in ``directory`` of rtml processes that are no longer running.

    They are the ``.{name}.tmp-{pid}...`` files and directories of :func:`atomic_write`,
    :func:`atomic_directory` and ``rtml.data.write_trajectory``, and the ``.{name}.old-{pid}``
    directories moved aside by a replacement, where a process was killed before it could
    remove them. Only those of ``name`` are considered when it is given (an output path's),
    all of them otherwise (a checkpoint directory's). One whose process ``pid`` still runs on
    this host (a concurrent run) is kept; processes on other hosts sharing the file system
    are not visible, so two hosts must not write the same output path at once.

    Returns:
        The paths removed (each is logged).
    """
    directory = Path(directory)
    stem = re.escape(name) if name is not None else r".+"
    pattern = re.compile(rf"\.{stem}\.(?:tmp|old)-(?P<pid>\d+)(?:\D.*)?")
    removed = []
    if not directory.is_dir():
        return removed
    for entry in sorted(directory.iterdir()):
        match = pattern.fullmatch(entry.name)
        if match is None or _process_running(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        log.info("removed '%s', left by process %s that no longer runs", entry, match["pid"])
        removed.append(entry)
    return removed


def _temporary_sibling(path: Path, suffix: str) -> Path:
    """``.{name}.tmp-{pid}{suffix}`` beside ``path`` (same file system: the rename is atomic)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")


def _replace_path(tmp: Path, out: Path) -> None:
    """Move a finished file or directory into place with :func:`os.replace`; a directory at
    ``out`` is first renamed aside, then removed. (A directory cannot replace a file:
    :class:`NotADirectoryError`.)"""
    kind = _special_kind(out)
    if kind is not None:  # checked before the work too; this is the last line of defence
        raise InputError(f"output '{out}' is {kind}, not a regular file or directory; "
                         "rtml never replaces it")
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
