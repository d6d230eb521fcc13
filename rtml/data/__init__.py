"""Trajectory records, their HDF5 files, and the Zarr dataset store built from them.

One RT-TDDFT run is one :class:`Trajectory` in memory and one HDF5 file on disk (positions
in Å, everything else in atomic units, PySCF AO order). :func:`write_trajectory` writes it
atomically (per-frame matrices held as :class:`FrameBlocks` are copied one block at a
time), :func:`read_trajectory` reads it back exactly, and :func:`validate_trajectory`
checks a file's schema and physics (trace, Hermiticity, idempotency, a response to the
field above numerical noise, time grid, energy conservation).

Many trajectories make one dataset store (Zarr v3, one group per molecule):
:func:`assemble_store` validates new files, then builds or appends to it (all or nothing), :func:`store_info` summarises it,
:func:`open_dataset` / :func:`open_index` open it with xarray / pandas, and
:class:`TrajectoryWindows`, :class:`EqualBasisBatchSampler`, :func:`collate_windows` and
:func:`assign_splits` feed it to PyTorch. The first three are imported (with torch) on
first access, so ``import rtml.data`` does not import torch.

For learning, :func:`open_store_groups`, :func:`trajectory_splits` (geometry-disjoint,
validation never taken from test) and :func:`trajectory_data` give one trajectory as a
:class:`TrajectoryData` record of numpy arrays (:mod:`rtml.data._learning`, no torch),
including the frames' Fock matrices and the ground state P0, F0 when the store has them.

The schema of both formats is public, for programs that read the files without rtml:
:data:`TRAJECTORY_DATASETS` (one row per dataset of a trajectory file: HDF5 path, shape,
kind, units, required or optional; :func:`trajectory_datasets_table` prints it as the
reStructuredText table of the format docs) and :data:`TRAJECTORY_ROOT_ATTRIBUTES`; in the
store, :data:`STORE_PER_TRAJECTORY_ARRAYS` and :data:`STORE_STATIC_ARRAYS` (the arrays of a
molecule group: name, dims, dtype, units), :data:`STORE_INDEX_COLUMNS` (the columns of the
index table) and :func:`time_chunking` (the chunk and shard length of ``rho`` along time).
"""

from rtml.data._schema import (FORMAT_NAME, FORMAT_VERSION, STORE_FORMAT_NAME,
                               STORE_FORMAT_VERSION, DATASETS as TRAJECTORY_DATASETS,
                               INDEX_COLUMNS as STORE_INDEX_COLUMNS,
                               PER_TRAJECTORY as STORE_PER_TRAJECTORY_ARRAYS,
                               ROOT_ATTRIBUTES as TRAJECTORY_ROOT_ATTRIBUTES,
                               STATIC as STORE_STATIC_ARRAYS,
                               datasets_table as trajectory_datasets_table)
from rtml.data._frames import FrameBlocks, frames_in_memory
from rtml.data._hdf5 import read_trajectory, write_trajectory
from rtml.data._assembly import assemble_store, time_chunking
from rtml.data._card import store_info
from rtml.data._ground_state import GroundStateRecord, read_ground_state, write_ground_state
from rtml.data._trajectory import SystemRecord, Trajectory, trajectory_file_name
from rtml.data._validate import RESPONSE_ATOL, Check, ValidationReport, validate_trajectory
from rtml.data._xarray import open_dataset, open_index
from rtml.data._splits import assign_splits
from rtml.data._learning import (MoleculeSplit, TrajectoryData, open_store_groups,
                                 trajectory_data, trajectory_splits)

_TORCH_NAMES = ("TrajectoryWindows", "EqualBasisBatchSampler", "collate_windows")

__all__ = [
    "SystemRecord",
    "Trajectory",
    "trajectory_file_name",
    "FrameBlocks",
    "frames_in_memory",
    "GroundStateRecord",
    "write_ground_state",
    "read_ground_state",
    "write_trajectory",
    "read_trajectory",
    "validate_trajectory",
    "RESPONSE_ATOL",
    "ValidationReport",
    "Check",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TRAJECTORY_DATASETS",
    "TRAJECTORY_ROOT_ATTRIBUTES",
    "trajectory_datasets_table",
    "assemble_store",
    "store_info",
    "open_dataset",
    "open_index",
    "STORE_FORMAT_NAME",
    "STORE_FORMAT_VERSION",
    "STORE_PER_TRAJECTORY_ARRAYS",
    "STORE_STATIC_ARRAYS",
    "STORE_INDEX_COLUMNS",
    "time_chunking",
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
        from rtml.data import _windows  # here, not at the top: only these names need torch

        return getattr(_windows, name)
    raise AttributeError(f"module 'rtml.data' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
