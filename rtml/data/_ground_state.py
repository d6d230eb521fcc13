"""Ground-state files: a converged SCF density and its LR-TDDFT excitations, for reuse.

Written by ``rtml ground-state`` (the workflow's ground-state rule) and read by
``rtml propagate --ground-state``, which restarts the SCF from the saved density (a few
cycles) and takes resonant frequencies and polarisations from the saved excitations.

HDF5 layout (float64; positions in Å, everything else atomic units; AO order PySCF's):

``geometry/positions`` [n_atoms, 3] Å, ``geometry/atomic_numbers`` [n_atoms],
``scf/density`` [n_spin, nbf, nbf] (total density when n_spin = 1),
``excitations/energies`` [n_states] Hartree (ascending, full LR-TDDFT, not TDA),
``excitations/oscillator_strengths`` [n_states], ``excitations/transition_dipoles``
[n_states, 3] e*bohr. Root attributes: molecule, charge, multiplicity, basis, xc,
grid_level, energy, dipole, dipole_origin, commutator_norm, units, provenance (JSON),
format = "rtml-ground-state", format_version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from rtml._atomic import atomic_write
from rtml._errors import InputError
from rtml.data._trajectory import SystemRecord

FORMAT_NAME = "rtml-ground-state"
FORMAT_VERSION = 1


@dataclass
class GroundStateRecord(SystemRecord):
    """What a ground-state file holds (see module docstring for units)."""

    grid_level: int
    energy: float
    dipole: np.ndarray
    dipole_origin_bohr: np.ndarray
    commutator_norm: float
    density: np.ndarray
    excitation_energies: np.ndarray
    oscillator_strengths: np.ndarray
    transition_dipoles: np.ndarray
    provenance: dict

    @property
    def energies(self) -> np.ndarray:
        """Alias so a record can stand in for :class:`rtml.tddft.Excitations`."""
        return self.excitation_energies


def write_ground_state(path, record: GroundStateRecord) -> Path:
    """Write a ground-state file atomically (temporary name, then rename)."""
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f["geometry/positions"] = np.asarray(record.positions_angstrom, dtype=float)
            f["geometry/atomic_numbers"] = np.asarray(record.atomic_numbers, dtype=float)
            f["scf/density"] = np.asarray(record.density, dtype=float)
            f["excitations/energies"] = np.asarray(record.excitation_energies, dtype=float)
            f["excitations/oscillator_strengths"] = np.asarray(record.oscillator_strengths, dtype=float)
            f["excitations/transition_dipoles"] = np.asarray(record.transition_dipoles, dtype=float).reshape(-1, 3)
            attrs = f.attrs
            attrs.update({
                "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "molecule": record.molecule, "charge": int(record.charge),
                "multiplicity": int(record.multiplicity), "basis": record.basis, "xc": record.xc,
                "grid_level": int(record.grid_level), "energy": float(record.energy),
                "dipole": np.asarray(record.dipole, dtype=float),
                "dipole_origin": np.asarray(record.dipole_origin_bohr, dtype=float),
                "commutator_norm": float(record.commutator_norm),
                "units": json.dumps({"positions": "angstrom", "energy": "hartree",
                                     "excitation_energies": "hartree", "dipole": "e*bohr",
                                     "dipole_origin": "bohr", "note": "AO order is PySCF's"}),
                "provenance": json.dumps(record.provenance, sort_keys=True),
            })

    return atomic_write(path, write)


def read_ground_state(path) -> GroundStateRecord:
    """Read a ground-state file; a missing or foreign file is an :class:`InputError`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ground-state file '{path}' does not exist")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT_NAME:
                raise InputError(f"'{path}' is not an rtml ground-state file")
            a = f.attrs
            return GroundStateRecord(
                molecule=str(a["molecule"]),
                atomic_numbers=f["geometry/atomic_numbers"][()].astype(int),
                positions_angstrom=f["geometry/positions"][()],
                charge=int(a["charge"]), multiplicity=int(a["multiplicity"]),
                basis=str(a["basis"]), xc=str(a["xc"]), grid_level=int(a["grid_level"]),
                energy=float(a["energy"]), dipole=np.asarray(a["dipole"]),
                dipole_origin_bohr=np.asarray(a["dipole_origin"]),
                commutator_norm=float(a["commutator_norm"]), density=f["scf/density"][()],
                excitation_energies=f["excitations/energies"][()],
                oscillator_strengths=f["excitations/oscillator_strengths"][()],
                transition_dipoles=f["excitations/transition_dipoles"][()],
                provenance=json.loads(a["provenance"]),
            )
    except (OSError, KeyError, RuntimeError) as err:  # h5py on a corrupt file
        raise InputError(f"cannot read ground-state file '{path}': {err}") from None
