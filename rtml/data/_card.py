"""The dataset store's summary (:func:`store_info`) and its dataset card.

The card, ``STORE.README.md`` beside the store directory (inside it, a file that is not a
Zarr node would make zarr warn whenever a reader lists the store), is rebuilt by every
assembly (:mod:`rtml.data._assembly`); its schema table lists the rows of
:data:`rtml.data._schema.PER_TRAJECTORY` and :data:`~rtml.data._schema.STATIC`, so a
quantity added to the schema is documented there without a change here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from rtml._atomic import atomic_write
from rtml._errors import InputError
from rtml.data._commit import committed_counts
from rtml.data._schema import (AO_ORDER_CONVENTION, DENSITY_CONVENTION,
                               DIPOLE_ORIGIN_CONVENTION, GROUP_OPTIONAL, INDEX_COLUMNS,
                               PER_TRAJECTORY, SPIN_LABELS, STATIC, STORE_FORMAT_NAME,
                               STORE_FORMAT_VERSION, TRAJ_DIM, ZSTD_LEVEL, check_is_store,
                               strings)

#: Second line of every card: marks the file as rtml's, which the next assembly replaces.
_CARD_MARK = "<!-- dataset card written by rtml dataset assemble; rewritten by each assembly -->"


def card_path(store_path: Path) -> Path:
    """The dataset card of the store ``store_path``: ``STORE.README.md`` beside it."""
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".README.md")


def check_card_path(card: Path) -> None:
    """Raise :class:`InputError` when ``card`` exists and is not a card rtml wrote (the
    assembly would replace it), before anything is written."""
    if not (card.exists() or card.is_symlink()):
        return
    try:
        ours = (card.is_file() and not card.is_symlink()
                and card.read_text(encoding="utf-8").splitlines()[1:2] == [_CARD_MARK])
    except (OSError, UnicodeDecodeError):
        ours = False
    if not ours:
        raise InputError(f"'{card}' exists and is not an rtml dataset card; the assembly "
                         "writes the store's card there: move that file away")


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

    Returns a JSON-ready dict ``{"store", "card", "format_version", "rho_dtype",
    "size_bytes", "n_trajectories", "molecules": {name: {...}}, "provenance", "history",
    ...}``; ``card`` is the dataset card's path (None when it is missing).

    Raises:
        InputError: ``store_path`` is not an rtml dataset store.
    """
    path = Path(store_path)
    check_is_store(path)
    root = zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)
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
    card = card_path(path)
    return {
        "store": str(path),
        "card": str(card) if card.is_file() else None,
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


def write_card(store_path: Path) -> None:
    """Write the dataset card of the store at ``store_path`` beside it (:func:`card_path`),
    atomically (:func:`rtml.atomic_write`)."""
    root = zarr.open_group(str(store_path), mode="r", zarr_format=3, use_consolidated=False)
    text = dataset_card(store_path.name, root)
    atomic_write(card_path(store_path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _example(root) -> tuple[str, str, float, int]:
    """A molecule, trajectory id, and a frame's time and step, for the card's snippets."""
    counts = committed_counts(root)
    mol = next((m for m, n in counts.items() if n), None)
    if mol is None:
        return "lih", "lih/eq/t00-kick_0.001_z", 0.6, 3
    g = root[mol]
    k = min(3, g["time"].shape[0] - 1)
    return mol, strings(g["traj_id"][:1])[0], float(g["time"][k]), int(g["step"][k])


def dataset_card(name: str, root) -> str:
    """The Markdown dataset card of the store ``root`` named ``name``."""
    attrs = root.attrs.asdict()
    prov = attrs.get("provenance", {})
    example, example_id, example_time, example_step = _example(root)
    lines = [
        f"# {attrs.get('title', 'rtml dataset')}: `{name}`",
        _CARD_MARK,
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
        f"and **`n_committed`**: only rows `< n_committed` along `{TRAJ_DIM}` are valid (an "
        "interrupted append leaves rows beyond it, overwritten by the next append; the "
        "consolidated metadata that plain xarray reads lists the committed rows only). The "
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
        "## Labels",
        "",
        f"- `{TRAJ_DIM}`: the trajectories of a group, labelled `molecule/geometry_id/file stem`.",
        "- `time`: exact, `time = step * dt` with dt's decimal value rounded once to float64, "
        "so `sel(time=0.6)` selects the frame 3 steps of 0.2 in (not 0.6000000000000001); "
        "`step` is the integer propagation step of each frame.",
        "- `xyz`: x, y, z; `spin`: " + " or ".join(", ".join(v) for v in SPIN_LABELS.values())
        + " (n_spin = 1 or 2).",
        "- `ao_i_atom`, `ao_i_l`, `ao_i_m` (and `ao_j_*`): the atom, l and m of each AO on "
        "the AO axes of every matrix.",
        "- `source_file`: the trajectory file relative to the directory holding the store; "
        "`source_sha256`: the SHA-256 of its bytes.",
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
        "Plain xarray works too, without rtml (the store's consolidated metadata lists only "
        "committed rows):",
        "",
        "```python",
        "import xarray as xr",
        f"ds = xr.open_zarr('{name}', group='{example}')",
        f"one = ds.sel({TRAJ_DIM}='{example_id}')",
        f"one.dipole.sel(time={example_time!r}, xyz='z')",
        f"ds.set_xindex('step').sel(step={example_step})          # by integer step",
        f"tree = xr.open_datatree('{name}', engine='zarr')  # every group at once",
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
