"""Trajectory records, their HDF5 files, and the Zarr dataset store built from them.

One RT-TDDFT run is one :class:`Trajectory` in memory and one HDF5 file on disk
(schema: :mod:`rtml.data._hdf5`; positions in Å, everything else in atomic units, PySCF
AO order). :func:`write_trajectory` writes it atomically, :func:`read_trajectory` reads it
back exactly, and :func:`validate_trajectory` checks a file's schema and physics (trace,
Hermiticity, idempotency, time grid, energy conservation).

Many trajectories make one dataset store (Zarr v3, one group per molecule; layout in
:mod:`rtml.data._store`): :func:`assemble_store` builds or appends to it, :func:`store_info`
summarises it, :func:`open_dataset` / :func:`open_index` open it with xarray / pandas, and
:class:`TrajectoryWindows`, :class:`EqualBasisBatchSampler`, :func:`collate_windows` and
:func:`assign_splits` feed it to PyTorch. Those four live in :mod:`rtml.data._windows`,
imported (with torch) on first access, so ``import rtml.data`` does not import torch.

For learning, :func:`open_store_groups`, :func:`trajectory_splits` (geometry-disjoint,
validation never taken from test) and :func:`trajectory_data` give one trajectory as a
:class:`TrajectoryData` record of numpy arrays (:mod:`rtml.data._learning`, no torch),
including the frames' Fock matrices and the ground state P0, F0 when the store has them.
"""

from rtml.data._hdf5 import FORMAT_NAME, FORMAT_VERSION, read_trajectory, write_trajectory
from rtml.data._store import STORE_FORMAT_NAME, STORE_FORMAT_VERSION, assemble_store, store_info
from rtml.data._ground_state import GroundStateRecord, read_ground_state, write_ground_state
from rtml.data._trajectory import Trajectory, trajectory_file_name
from rtml.data._validate import Check, ValidationReport, validate_trajectory
from rtml.data._xarray import open_dataset, open_index
from rtml.data._splits import assign_splits
from rtml.data._learning import (MoleculeSplit, TrajectoryData, open_store_groups,
                                 trajectory_data, trajectory_splits)

_TORCH_NAMES = ("TrajectoryWindows", "EqualBasisBatchSampler", "collate_windows")

__all__ = [
    "Trajectory",
    "trajectory_file_name",
    "GroundStateRecord",
    "write_ground_state",
    "read_ground_state",
    "write_trajectory",
    "read_trajectory",
    "validate_trajectory",
    "ValidationReport",
    "Check",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "assemble_store",
    "store_info",
    "open_dataset",
    "open_index",
    "STORE_FORMAT_NAME",
    "STORE_FORMAT_VERSION",
    "assign_splits",
    "TrajectoryData",
    "trajectory_data",
    "open_store_groups",
    "trajectory_splits",
    "MoleculeSplit",
    *_TORCH_NAMES,
]


def __getattr__(name):
    if name in _TORCH_NAMES:
        from rtml.data import _windows

        return getattr(_windows, name)
    raise AttributeError(f"module 'rtml.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
