"""The dataset store's summary (:func:`store_info`) and its dataset card (``README.md``).

The card is rebuilt by every assembly (:mod:`rtml.data._assembly`); its schema table lists
the rows of :data:`rtml.data._schema.PER_TRAJECTORY` and :data:`~rtml.data._schema.STATIC`,
so a quantity added to the schema is documented there without a change here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rtml.data._commit import committed_counts
from rtml.data._schema import (AO_ORDER_CONVENTION, DENSITY_CONVENTION,
                               DIPOLE_ORIGIN_CONVENTION, GROUP_OPTIONAL, INDEX_COLUMNS,
                               PER_TRAJECTORY, STATIC, STORE_FORMAT_NAME, STORE_FORMAT_VERSION,
                               ZSTD_LEVEL, check_is_store, strings)


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def store_info(store_path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a dataset store: molecules, sizes, dtypes, chunk/shard shapes, provenance.

    Returns a JSON-ready dict ``{"store", "format_version", "rho_dtype", "size_bytes",
    "n_trajectories", "molecules": {name: {...}}, "provenance", "history", ...}``.

    Raises:
        InputError: ``store_path`` is not an rtml dataset store.
    """
    path = Path(store_path)
    check_is_store(path)
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    attrs = root.attrs.asdict()
    mols = {}
    for mol, n in committed_counts(root).items():
        g = root[mol]
        ga = g.attrs.asdict()
        rho = g["rho"]
        mols[mol] = {
            "n_trajectories": n,
            "n_geometries": len(set(strings(g["geometry_id"][:n]))) if n else 0,
            "n_basis": ga["n_basis"], "n_spin": ga["n_spin"], "n_atoms": ga["n_atoms"],
            "n_electrons": ga["n_electrons"], "n_time": ga["n_time"], "dt": ga["dt"],
            "save_every": ga["save_every"], "xc": ga["xc"], "basis": ga["basis"],
            "propagator": ga["propagator"], "rho_dtype": ga["rho_dtype"],
            **{f"has_{var.name}": var.name in g for var in GROUP_OPTIONAL},
            "has_ground_state": "rho_ground" in g,
            "rho_chunk_shape": list(rho.chunks), "rho_shard_shape": list(rho.shards or ()),
            "rho_chunk_mib": float(np.prod(rho.chunks) * rho.dtype.itemsize / 2 ** 20),
            "size_bytes": _dir_size(path / mol),
        }
    return {
        "store": str(path),
        "format": attrs.get("format"), "format_version": attrs.get("format_version"),
        "rho_dtype": attrs.get("rho_dtype"),
        "n_trajectories": int(sum(m["n_trajectories"] for m in mols.values())),
        "size_bytes": _dir_size(path),
        "codec": f"zstd level {ZSTD_LEVEL}",
        "molecules": mols,
        "date_created": attrs.get("date_created"), "date_modified": attrs.get("date_modified"),
        "dataset_sha256": attrs.get("dataset_sha256"),
        "provenance": attrs.get("provenance", {}),
        "source_software": attrs.get("source_software", {}),
        "history": attrs.get("history", ""),
    }


def write_card(path: Path, root, name: str) -> None:
    """Write ``README.md`` (the dataset card) into the store directory, atomically."""
    text = dataset_card(name, root)
    tmp = path / f".README.md.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path / "README.md")


def dataset_card(name: str, root) -> str:
    """The Markdown dataset card of the store ``root`` named ``name``."""
    attrs = root.attrs.asdict()
    prov = attrs.get("provenance", {})
    example = (attrs.get("molecules") or ["lih"])[0]
    lines = [
        f"# {attrs.get('title', 'rtml dataset')}: `{name}`",
        "",
        str(attrs.get("summary", "")),
        "",
        f"- format: `{STORE_FORMAT_NAME}` version {STORE_FORMAT_VERSION} (Zarr v3 directory "
        "store), conventions " + str(attrs.get("Conventions", "")),
        f"- created {attrs.get('date_created')}, modified {attrs.get('date_modified')}",
        f"- trajectories: {attrs.get('n_trajectories', 0)}; dataset SHA-256 "
        f"`{attrs.get('dataset_sha256', '')}` (of the sorted traj_id + inputs_sha256 pairs)",
        f"- rho dtype: {attrs.get('rho_dtype')}; compression zstd level {ZSTD_LEVEL}",
        "",
        "## Contents",
        "",
        "| molecule | trajectories | geometries | nbf | n_spin | atoms | electrons | frames "
        "| dt (a.u.) | save every | xc | basis | rho chunk | rho shard | fock |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mol, n in committed_counts(root).items():
        g = root[mol]
        ga = g.attrs.asdict()
        n_geo = len(set(strings(g["geometry_id"][:n]))) if n else 0
        rho = g["rho"]
        lines.append(
            f"| {mol} | {n} | {n_geo} | {ga['n_basis']} | {ga['n_spin']} | {ga['n_atoms']} | "
            f"{ga['n_electrons']} | {ga['n_time']} | {ga['dt']:g} | {ga['save_every']} | "
            f"{ga['xc']} | {ga['basis']} | {tuple(rho.chunks)} | {tuple(rho.shards or ())} | "
            f"{'yes' if 'fock' in g else 'no'} |")
    lines += [
        "",
        "## Units and conventions",
        "",
        "- Positions are in Ångström; everything else is in atomic units (Hartree, bohr, "
        "a.u. of time, e·bohr, a.u. of field). Each array states its unit in its `units` "
        "attribute.",
        f"- AO order: {AO_ORDER_CONVENTION}.",
        f"- Density: {DENSITY_CONVENTION}.",
        f"- Dipole: {DIPOLE_ORIGIN_CONVENTION}.",
        "- Field: E(t) couples in the length gauge, H(t) = F[P] + E(t)·r (electron charge "
        "-1). A delta kick is applied as an exact unitary before the first frame; its "
        "stored field values are zero and `kick_strength` holds kappa.",
        "",
        "## Schema (each molecule group)",
        "",
        "| array | dims | dtype | units | description |",
        "|---|---|---|---|---|",
    ]
    for var in PER_TRAJECTORY + STATIC:
        dtype = attrs.get("rho_dtype") if var.dtype == "rho" else var.dtype
        role = "data" if var.data else "coord"
        lines.append(f"| `{var.name}` ({role}) | ({', '.join(var.dims)}) | {dtype} | "
                     f"{var.units or '-'} | {var.long_name} |")
    lines += [
        "",
        "Group attributes: molecule, n_basis, n_spin, n_atoms, n_time, n_electrons, charge, "
        "multiplicity, xc, basis, dt, save_every, propagator, rho_dtype, has_fock, units, "
        "conventions, "
        "and **`n_committed`**: only rows `< n_committed` along `traj` are valid (an "
        "interrupted append leaves rows beyond it, overwritten by the next append). The "
        "commit record is the root attribute `n_committed` (molecule: rows), written in one "
        "step with `n_trajectories` and `dataset_sha256`; the group attributes and the "
        "`index` table are copies written after it, which an interrupted assembly can leave "
        "behind the record (never ahead of it) until the next assembly.",
        "",
        "`fock` (optional) is present only in groups whose trajectories all recorded their "
        "frames' Fock matrix (group attribute `has_fock`; files imported from NWChem have "
        "none): F[P(t)] without the field term, as accepted by the propagator. "
        "`rho_ground`/`fock_ground` are the geometry's SCF ground state P0 and F0 = F[P0] "
        "(same Fock build), NaN where not recorded; `fock - fock_ground` is the "
        "two-electron change of each frame.",
        "",
        "`rho` (and `fock`) is sharded one trajectory per shard (one file per trajectory), "
        "with inner "
        "chunks along time of at most the chunk size given at assembly; every other "
        "per-trajectory array is chunked one trajectory per chunk.",
        "",
        "The root group `index` is a table of all committed trajectories (1-D arrays: "
        + ", ".join(f"`{c}`" for c, _ in INDEX_COLUMNS) + ").",
        "",
        "## How to open it",
        "",
        "```python",
        "import rtml.data as rd",
        f"ds = rd.open_dataset('{name}', molecule='{example}')   # xarray.Dataset, dask-backed",
        f"all_groups = rd.open_dataset('{name}')          # dict: molecule -> Dataset",
        f"index = rd.open_index('{name}')                 # pandas.DataFrame",
        "",
        "# PyTorch: time windows, geometry-disjoint splits, batches of equal basis size",
        "from torch.utils.data import DataLoader",
        f"train = rd.TrajectoryWindows('{name}', window=32, stride=16, split='train')",
        "loader = DataLoader(train, batch_sampler=rd.EqualBasisBatchSampler(train, 16),",
        "                    num_workers=2, collate_fn=rd.collate_windows)",
        "```",
        "",
        "Plain xarray works too (trim to `n_committed` yourself):",
        "",
        "```python",
        "import xarray as xr",
        f"ds = xr.open_zarr('{name}', group='{example}', consolidated=False)",
        "ds = ds.isel(traj=slice(0, ds.attrs['n_committed']))",
        "```",
        "",
        "## Provenance",
        "",
    ]
    for key in ("rtml_version", "rtml_git_commit", "pyscf_version", "numpy_version",
                "zarr_version", "python_version"):
        if key in prov:
            lines.append(f"- assembled with {key.replace('_', ' ')}: {prov[key]}")
    for key, values in sorted(attrs.get("source_software", {}).items()):
        lines.append(f"- trajectories produced with {key.replace('_', ' ')}: "
                     f"{', '.join(values)}")
    lines += ["", "## History", ""]
    lines += [f"- {h}" for h in str(attrs.get("history", "")).splitlines() if h.strip()]
    lines.append("")
    return "\n".join(lines)
