"""Trajectory records and their HDF5 files.

One RT-TDDFT run is one :class:`Trajectory` in memory and one HDF5 file on disk
(schema: :mod:`rtml.data._hdf5`; positions in Å, everything else in atomic units, PySCF
AO order). :func:`write_trajectory` writes it atomically, :func:`read_trajectory` reads it
back exactly, and :func:`validate_trajectory` checks a file's schema and physics (trace,
Hermiticity, idempotency, time grid, energy conservation).
"""

from rtml.data._hdf5 import FORMAT_NAME, FORMAT_VERSION, read_trajectory, write_trajectory
from rtml.data._ground_state import GroundStateRecord, read_ground_state, write_ground_state
from rtml.data._trajectory import Trajectory, trajectory_file_name
from rtml.data._validate import Check, ValidationReport, validate_trajectory

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
]
