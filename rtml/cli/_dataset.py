"""``rtml dataset``: assemble trajectory files into the Zarr dataset store, and inspect one.

::

    rtml dataset assemble FILES_OR_DIRS... -o STORE [--dtype complex64|complex128] [--chunk-mib X]
    rtml dataset info STORE [--json]

``assemble`` builds a new store atomically, or appends the trajectories not in it yet to an
existing one (see :func:`rtml.data.assemble_store`). Directories are searched recursively
for ``*.h5``, skipping hidden entries and ``*.ckpt`` checkpoint folders.

:func:`add_dataset_parser` registers the subcommand on the ``rtml`` parser; each handler
returns an exit status and raises :class:`rtml._errors.InputError` on bad input (the
``rtml`` entry point prints ``rtml: error: ...`` and exits 2).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rtml._errors import InputError


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


def cmd_dataset_assemble(args) -> int:
    from rtml.data import assemble_store

    files = expand_trajectory_paths(args.files)
    summary = assemble_store(files, args.output, dtype=args.dtype, chunk_mib=args.chunk_mib,
                             progress=False if args.quiet else None)
    verb = "created" if summary["created"] else "updated"
    print(f"{summary['store']}: {verb}, {summary['added']} trajectories added, "
          f"{summary['skipped']} already present")
    for mol, counts in summary["molecules"].items():
        print(f"  {mol:<8} +{counts['added']:<5d} (skipped {counts['skipped']}), "
              f"{counts['n_trajectories']} in store")
    return 0


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024.0
    return f"{n:.1f} TiB"


def format_info(info: dict) -> list[str]:
    """Human-readable lines of :func:`rtml.data.store_info` output."""
    prov = info.get("provenance", {})
    lines = [
        f"{info['store']}: rtml dataset (format {info['format_version']}), "
        f"{info['n_trajectories']} trajectories, rho {info['rho_dtype']}, "
        f"{_human(info['size_bytes'])} on disk ({info['codec']})",
        f"created {info['date_created']}, modified {info['date_modified']}; "
        f"dataset sha256 {str(info.get('dataset_sha256'))[:16]}...",
        f"assembled with rtml {prov.get('rtml_version')} ({prov.get('rtml_git_commit')}), "
        f"PySCF {prov.get('pyscf_version')}, zarr {prov.get('zarr_version')}",
    ]
    for key, values in sorted(info.get("source_software", {}).items()):
        lines.append(f"trajectories from {key}: {', '.join(values)}")
    lines.append(f"{'molecule':<9}{'traj':>6}{'geom':>6}{'nbf':>5}{'spin':>5}{'frames':>8}"
                 f"{'dt':>7}  {'xc/basis':<14}{'rho chunk':<22}{'rho shard':<22}{'size':>10}")
    for mol, m in info["molecules"].items():
        lines.append(
            f"{mol:<9}{m['n_trajectories']:>6}{m['n_geometries']:>6}{m['n_basis']:>5}"
            f"{m['n_spin']:>5}{m['n_time']:>8}{m['dt']:>7g}  "
            f"{m['xc'] + '/' + m['basis']:<14}{str(tuple(m['rho_chunk_shape'])):<22}"
            f"{str(tuple(m['rho_shard_shape'])):<22}{_human(m['size_bytes']):>10}")
    return lines


def cmd_dataset_info(args) -> int:
    from rtml.data import store_info

    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        for line in format_info(info):
            print(line)
    return 0


def _positive_float(text: str) -> float:
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
                       description="Copy trajectory .h5 files into a dataset store. A new "
                       "store appears atomically; an existing one gets only the trajectories "
                       "it does not hold yet (same traj_id and inputs hash are skipped).")
    a.add_argument("files", nargs="+", metavar="FILE_OR_DIR",
                   help="trajectory .h5 files, or directories searched for *.h5")
    a.add_argument("-o", "--output", required=True, metavar="STORE",
                   help="store directory (e.g. data.zarr); appended to if it exists")
    a.add_argument("--dtype", choices=["complex128", "complex64"], default=None,
                   help="storage dtype of rho (default: complex128, or the existing store's)")
    a.add_argument("--chunk-mib", type=_positive_float, default=1.0, metavar="X",
                   help="largest rho chunk along time in MiB (default 1.0; new molecules only)")
    a.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    a.set_defaults(func=cmd_dataset_assemble)

    i = sub.add_parser("info", help="summary of a store: molecules, sizes, chunking, provenance")
    i.add_argument("store", metavar="STORE")
    i.add_argument("--json", action="store_true", help="print JSON instead of a table")
    i.set_defaults(func=cmd_dataset_info)
    return p
