"""Open the rtml dataset store (:mod:`rtml.data._assembly`) with xarray and pandas.

Every molecule group becomes one lazy, dask-backed :class:`xarray.Dataset` trimmed to its
committed trajectories (the store's commit record, :mod:`rtml.data._commit`), with dims
``traj_id, time, spin, ao_i, ao_j, atom, xyz``, labelled by the coordinates ``traj_id``,
``time`` (exact: ``sel(time=0.6)``), ``spin`` and ``xyz``, and indexed by ``step`` too
(``sel(step=3)``). Data variables are ``rho``, ``dipole``, ``energy``, ``field`` and, in
groups whose trajectories all recorded it, ``fock`` (traj_id, time, spin, ao_i, ao_j;
F[P(t)] without the field term, dtype of ``rho``); everything else (field parameters,
``positions``, ``overlap``, ``core_hamiltonian``, ``rho_ground`` and ``fock_ground``
(traj_id, spin, ao_i, ao_j; the SCF ground state P0 and F0 = F[P0], NaN where not
recorded), the AO labels ``ao_i_atom, ao_i_l, ao_i_m`` and ``ao_j_*``, ...) is a coordinate.
:func:`rtml.data.trajectory_data` turns one row into the numpy record models use.

Without a molecule, :func:`open_dataset` returns a plain ``dict`` of these Datasets rather
than an :class:`xarray.DataTree`: the groups have unrelated dimension sizes (nbf, n_time),
each needs its own ``n_committed`` trim, and the root's ``index`` group is a table, not a
dataset of the tree; a dict keeps each Dataset exactly as :func:`open_dataset` with a
molecule gives it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import zarr

from rtml._errors import InputError
from rtml.data._commit import committed_counts, read_index
from rtml.data._schema import INDEX_COLUMNS, TRAJ_DIM, check_is_store


def _open_root(path: Path):
    """The root group as it is on disk (the commit record), not the consolidated copy."""
    check_is_store(path)
    return zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)


def open_dataset(path: str | os.PathLike, molecule: str | None = None, *,
                 chunks: Any = None):
    """Open a dataset store lazily with xarray.

    Args:
        path: the store directory written by :func:`rtml.data.assemble_store`.
        molecule: a molecule group name (``"lih"``); ``None`` for all of them.
        chunks: dask chunks passed to :func:`xarray.open_zarr`; ``None`` (default) uses the
            store's chunks (``rho``: the inner chunks along time, one trajectory each).

    Returns:
        With ``molecule``: an :class:`xarray.Dataset` (rows ``< n_committed`` only).
        Without: ``dict[str, xarray.Dataset]`` of every molecule group with at least one
        committed trajectory, in store order.

    Raises:
        InputError: not a dataset store, or no such molecule in it.

    Example:
        >>> ds = open_dataset("data.zarr", "lih")                       # doctest: +SKIP
        >>> ds.rho.sel(traj_id="lih/eq/t00-kick_0.001_z", time=0.6).values  # doctest: +SKIP
        >>> ds.dipole.sel(step=3, xyz="z").values                       # doctest: +SKIP
    """
    path = Path(path)
    root = _open_root(path)
    counts = committed_counts(root)
    if molecule is None:
        return {mol: _open_group(path, root[mol], chunks, n) for mol, n in counts.items() if n}
    if molecule not in counts:
        raise InputError(f"store '{path}' has no molecule '{molecule}' "
                         f"(it has: {', '.join(counts) or 'none'})")
    return _open_group(path, root[molecule], chunks, counts[molecule])


def _open_group(path: Path, group, chunks: Any, n_committed: int):
    """The Dataset of molecule group ``group``, its first ``n_committed`` rows (attribute
    set to match), with an index on ``step`` besides ``time``.

    An assembly killed while growing the group's arrays along ``traj_id`` leaves them of
    different lengths (each at least ``n_committed``), which one Dataset cannot hold: the
    arrays are then opened in sets of equal length, trimmed, and merged.
    """
    lengths: dict[int, list[str]] = {}
    for name, array in group.arrays():
        if tuple(array.metadata.dimension_names or ())[:1] == (TRAJ_DIM,):
            lengths.setdefault(array.shape[0], []).append(name)
    kwargs = dict(group=group.basename, consolidated=False, zarr_format=3,
                  chunks={} if chunks is None else chunks)
    if len(lengths) <= 1:
        ds = xr.open_zarr(str(path), **kwargs).isel({TRAJ_DIM: slice(0, n_committed)})
    else:
        every = [name for names in lengths.values() for name in names]
        parts = [xr.open_zarr(str(path), drop_variables=[v for v in every if v not in names],
                              **kwargs).isel({TRAJ_DIM: slice(0, n_committed)})
                 for names in lengths.values()]
        ds = xr.merge(parts, compat="override", combine_attrs="override")
        coordinates = str(group.attrs.get("coordinates", "")).split()
        ds = ds.set_coords([name for name in coordinates if name in ds.data_vars])
    ds.attrs["n_committed"] = n_committed
    return ds.set_xindex("step")


def open_index(path: str | os.PathLike):
    """The store's ``index`` table as a :class:`pandas.DataFrame`, one row per committed
    trajectory: ``traj_id, molecule, row`` (position in its group), ``n_basis, n_spin,
    n_time, geometry_id, field_kind, field_spec, inputs_sha256, source_file`` (relative to
    the directory holding the store), ``source_sha256``. It always
    agrees with the commit record (rows the stored index lacks after an interrupted
    assembly are read from the groups)."""
    index = read_index(_open_root(Path(path)))
    return pd.DataFrame({name: index[name] if kind is str
                         else np.asarray(index[name], dtype=kind)
                         for name, kind in INDEX_COLUMNS})
