"""``rtml dataset assemble``: trajectory files into the Zarr dataset store."""

from __future__ import annotations

from rtml.cli._dataset import expand_trajectory_paths
from rtml.data import assemble_store


def cmd_dataset_assemble(args) -> int:
    """Assemble (or append to) the store; print what was added per molecule."""
    files = expand_trajectory_paths(args.files)
    summary = assemble_store(files, args.output, dtype=args.dtype, chunk_mib=args.chunk_mib,
                             progress=False if args.quiet else None,
                             allow_static=args.allow_static)
    verb = "created" if summary["created"] else "updated"
    print(f"{summary['store']}: {verb}, {summary['added']} trajectories added, "
          f"{summary['skipped']} already present")
    for mol, counts in summary["molecules"].items():
        print(f"  {mol:<8} +{counts['added']:<5d} (skipped {counts['skipped']}), "
              f"{counts['n_trajectories']} in store")
    return 0
