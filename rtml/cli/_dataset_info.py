"""``rtml dataset info``: the summary of a dataset store."""

from __future__ import annotations

import json

from rtml.data import store_info


def _human(n: float) -> str:
    """A byte count in B, KiB, MiB, GiB or TiB."""
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
    if info.get("card"):
        lines.append(f"dataset card (schema, units, how to open it): {info['card']}")
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
    """Print the summary of a store as a table or JSON."""
    info = store_info(args.store)
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
    else:
        for line in format_info(info):
            print(line)
    return 0
