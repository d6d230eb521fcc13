"""Open the rtml dataset store (:mod:`rtml.data._assembly`) with xarray and pandas.

Every molecule group becomes one lazy, dask-backed :class:`xarray.Dataset` trimmed to its
committed trajectories (group attribute ``n_committed``), with dims ``traj, time, spin,
ao_i, ao_j, atom, ao, xyz``. Data variables are ``rho``, ``dipole``, ``energy``,
``field`` and, in groups whose trajectories all recorded it, ``fock`` (traj, time, spin,
ao_i, ao_j; F[P(t)] without the field term, dtype of ``rho``); everything else (``time``,
``traj_id``, field parameters, ``positions``, ``overlap``, ``core_hamiltonian``,
``rho_ground`` and ``fock_ground`` (traj, spin, ao_i, ao_j; the SCF ground state P0 and
F0 = F[P0], NaN where not recorded), AO labels, ...) is a coordinate.
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

import pandas as pd
import xarray as xr
import zarr

from rtml._errors import InputError
from rtml.data._schema import INDEX_COLUMNS, INDEX_GROUP, check_is_store


def _root_attrs(path: Path) -> dict[str, Any]:
    check_is_store(path)
    return zarr.open_group(str(path), mode="r", zarr_format=3).attrs.asdict()


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
        >>> ds = open_dataset("data.zarr", "lih")            # doctest: +SKIP
        >>> ds.rho.isel(traj=0, time=slice(0, 10)).values    # doctest: +SKIP
    """
    path = Path(path)
    attrs = _root_attrs(path)
    molecules = list(attrs.get("molecules", []))
    if molecule is None:
        out = {}
        for mol in molecules:
            ds = _open_group(path, mol, chunks)
            if ds.sizes["traj"]:
                out[mol] = ds
        return out
    if molecule not in molecules:
        raise InputError(f"store '{path}' has no molecule '{molecule}' "
                         f"(it has: {', '.join(molecules) or 'none'})")
    return _open_group(path, molecule, chunks)


def _open_group(path: Path, molecule: str, chunks: Any):
    ds = xr.open_zarr(str(path), group=molecule, consolidated=False, zarr_format=3,
                      chunks={} if chunks is None else chunks)
    n = int(ds.attrs["n_committed"])
    return ds.isel(traj=slice(0, n))


def open_index(path: str | os.PathLike):
    """The store's ``index`` table as a :class:`pandas.DataFrame`, one row per committed
    trajectory: ``traj_id, molecule, row`` (position in its group), ``n_basis, n_spin,
    n_time, geometry_id, field_kind, field_spec, inputs_sha256, source_file``."""
    path = Path(path)
    _root_attrs(path)
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    try:
        ig = root[INDEX_GROUP]
    except KeyError:
        raise InputError(f"store '{path}' has no index group") from None
    data = {}
    for name, kind in INDEX_COLUMNS:
        values = ig[name][...]
        data[name] = [str(v) for v in values] if kind is str else values.astype(kind)
    return pd.DataFrame(data)
