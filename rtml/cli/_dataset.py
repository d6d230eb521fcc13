"""``rtml dataset``: assemble trajectory files into the Zarr dataset store, and inspect one.

::

    rtml dataset assemble FILES_OR_DIRS... -o STORE [--dtype complex64|complex128] [--chunk-mib X]
                          [--allow-static]
    rtml dataset info STORE [--json]

``assemble`` checks every new file as ``rtml validate`` does, then builds a new store
atomically, or appends the trajectories not in it yet to an existing one, all or none (see
:func:`rtml.data.assemble_store`). Directories are searched recursively
for ``*.h5``, skipping hidden entries and ``*.ckpt`` checkpoint folders.

:func:`add_dataset_parser` registers the subcommand on the ``rtml`` parser; the handlers
(``_dataset_assemble.py``, ``_dataset_info.py``) are imported when they run. Each returns
an exit status and raises :class:`rtml.InputError` on bad input (the ``rtml`` entry point
prints ``rtml: error: ...`` and exits 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtml._errors import InputError
from rtml.cli._commands import Command


def expand_trajectory_paths(items) -> list[Path]:
    """Files as given, directories searched recursively for ``*.h5`` (sorted).

    Raises:
        InputError: a path that does not exist, or a directory without ``*.h5`` files.
    """
    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*.h5")
                if p.is_file() and not any(part.startswith(".") or part.endswith(".ckpt")
                                           for part in p.relative_to(path).parts))
            if not found:
                raise InputError(f"directory '{path}' holds no *.h5 trajectory files")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(f"'{path}': no such file or directory")
    seen, unique = set(), []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _positive_float(text: str) -> float:
    """An :mod:`argparse` type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def add_dataset_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``rtml dataset {assemble,info}`` on ``subparsers`` (from
    ``parser.add_subparsers``); each leaf sets ``func`` to its handler."""
    p = subparsers.add_parser(
        "dataset", help="assemble trajectory files into the Zarr dataset store; inspect it",
        description="The Zarr v3 dataset store: one group per molecule, chunked for "
        "training (positions in Å, everything else in atomic units).")
    sub = p.add_subparsers(dest="dataset_command", required=True, metavar="{assemble,info}")

    a = sub.add_parser("assemble", help="build a store, or append new trajectories to one",
                       description="Copy trajectory .h5 files into a dataset store. Every "
                       "new file must first pass the checks of 'rtml validate' (one that fails "
                       "stops the assembly before anything is written). A new store appears "
                       "atomically; an existing one gets only the trajectories it does not hold "
                       "yet (same traj_id and inputs hash are skipped), all of them or none.")
    a.add_argument("files", nargs="+", metavar="FILE_OR_DIR",
                   help="trajectory .h5 files, or directories searched for *.h5")
    a.add_argument("-o", "--output", required=True, metavar="STORE",
                   help="store directory (e.g. data.zarr); appended to if it exists. Its "
                        "dataset card is written beside it, STORE.README.md")
    a.add_argument("--dtype", choices=["complex128", "complex64"], default=None,
                   help="storage dtype of rho (default: complex128, or the existing store's)")
    a.add_argument("--chunk-mib", type=_positive_float, default=1.0, metavar="X",
                   help="largest rho chunk along time in MiB (default 1.0; new molecules only)")
    a.add_argument("--allow-static", action="store_true",
                   help="accept trajectories whose density does not respond to their field "
                        "(max|P(t) - P(0)| below numerical noise, 1e-8: the 'response' check "
                        "of rtml validate); refused by default as dead data")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    a.set_defaults(func=Command("_dataset_assemble", "cmd_dataset_assemble"))

    i = sub.add_parser("info", help="summary of a store: molecules, sizes, chunking, provenance")
    i.add_argument("store", metavar="STORE", help="Zarr dataset store (rtml dataset assemble)")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=Command("_dataset_info", "cmd_dataset_info"))
    return p
