r"""One data path for learning: store groups -> splits -> :class:`TrajectoryData` records.

:func:`open_store_groups` opens the molecule groups of a dataset store (xarray, lazy),
:func:`trajectory_splits` assigns their trajectories to train/val/test by geometry, and
:func:`trajectory_data` loads one trajectory as a :class:`TrajectoryData` of numpy arrays
(atomic units, positions in Å, PySCF AO order), everything a model, a baseline or the
evaluation needs. Nothing here imports torch.

A model that learns only the two-electron change of the Fock matrix uses

.. math:: \Delta G(t) = F[P(t)] - F_0 = \texttt{fock}[t] - \texttt{fock\_ground},

with :math:`F` the electronic Fock matrix without the field term (``fock`` is ``None`` for
a group without Fock frames, e.g. imported NWChem files; see :mod:`rtml.data._assembly`).
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple

import numpy as np

from rtml._errors import InputError
from rtml.data._splits import SPLITS, _check_fractions, _unit_interval, assign_splits
from rtml.data._xarray import open_dataset


class TrajectoryData(NamedTuple):
    """One reference trajectory with everything a model needs (numpy, atomic units; Å).

    The first eleven fields are those of the original record in :mod:`rtml.model`, in the
    same order; the rest have defaults (``None``) so positional construction with eleven
    values still works.
    """

    molecule: str
    rho: np.ndarray                 # (T, n_spin, n, n) complex AO density P(t)
    field: np.ndarray               # (T, 3) applied field E(t), a.u.
    positions_angstrom: np.ndarray  # (n_atoms, 3)
    atomic_numbers: np.ndarray      # (n_atoms,)
    basis_atom_index: np.ndarray    # (n,)
    basis_angular_momentum: np.ndarray
    basis_magnetic_quantum: np.ndarray
    overlap: np.ndarray             # (n, n)
    n_electrons: int
    multiplicity: int
    core_hamiltonian: np.ndarray | None = None   # (n, n) h = T + V_nuc, Hartree
    rho_ground: np.ndarray | None = None         # (n_spin, n, n) float P0 (None: not recorded)
    fock_ground: np.ndarray | None = None        # (n_spin, n, n) float F0 = F[P0], Hartree
    fock: np.ndarray | None = None               # (T, n_spin, n, n) complex F[P(t)], no field
    time: np.ndarray | None = None               # (T,) a.u. of time
    basis: str | None = None
    xc: str | None = None
    charge: int | None = None
    dipole_origin_bohr: np.ndarray | None = None  # (3,)
    field_spec: dict | None = None  # kind, spec, amplitude, polarization, omega, t0, ...
    traj_id: str | None = None
    geometry_id: str | None = None


def _nan_to_none(value):
    value = float(value)
    return None if math.isnan(value) else value


def _field_spec(ds, row: int) -> dict:
    """The field of row ``row`` as a dict like :meth:`rtml.fields.Field.to_json_dict`,
    rebuilt from the store's field columns (``omega_source`` and ``units`` are not stored;
    NaN parameters are ``None``). A spec that is itself JSON (a foreign file's field) is
    parsed and returned as is."""
    spec = str(ds.field_spec[row].values)
    if spec.startswith("{"):
        try:
            return json.loads(spec)
        except json.JSONDecodeError:
            pass
    pol = np.asarray(ds.field_polarization[row].values, dtype=float)
    return {
        "kind": str(ds.field_kind[row].values),
        "spec": spec,
        "amplitude": _nan_to_none(ds.field_amplitude[row].values),
        "polarization": None if np.isnan(pol).any() else pol.tolist(),
        "omega": _nan_to_none(ds.field_omega[row].values),
        "t0": _nan_to_none(ds.field_t0[row].values),
        "sigma": _nan_to_none(ds.field_sigma[row].values),
        "duration": _nan_to_none(ds.field_duration[row].values),
    }


def _ground(ds, name: str, row: int) -> np.ndarray | None:
    """A ground-state array of row ``row``; None when the group lacks it or it is NaN."""
    if name not in ds.variables:
        return None
    value = np.asarray(ds[name][row].values, dtype=np.float64)
    return None if np.isnan(value).any() else value


def trajectory_data(ds, row: int, molecule: str) -> TrajectoryData:
    """Trajectory ``row`` of a store group (:func:`rtml.data.open_dataset`) as numpy arrays.

    Args:
        ds: the molecule group's :class:`xarray.Dataset`.
        row: position along ``traj_id`` (``< n_committed``).
        molecule: the group name.

    Returns:
        :class:`TrajectoryData`; ``fock`` is None when the group has no Fock frames,
        ``rho_ground``/``fock_ground`` when the trajectory has no recorded ground state.
    """
    attrs = ds.attrs
    return TrajectoryData(
        molecule=molecule, rho=ds.rho[row].values, field=ds.field[row].values,
        positions_angstrom=ds.positions[row].values, atomic_numbers=ds.atomic_numbers.values,
        basis_atom_index=ds.ao_i_atom.values, basis_angular_momentum=ds.ao_i_l.values,
        basis_magnetic_quantum=ds.ao_i_m.values, overlap=ds.overlap[row].values,
        n_electrons=int(attrs["n_electrons"]), multiplicity=int(attrs["multiplicity"]),
        core_hamiltonian=ds.core_hamiltonian[row].values,
        rho_ground=_ground(ds, "rho_ground", row),
        fock_ground=_ground(ds, "fock_ground", row),
        fock=ds.fock[row].values if "fock" in ds.variables else None,
        time=ds.time.values, basis=str(attrs["basis"]), xc=str(attrs["xc"]),
        charge=int(attrs["charge"]), dipole_origin_bohr=ds.dipole_origin[row].values,
        field_spec=_field_spec(ds, row), traj_id=str(ds.traj_id[row].values),
        geometry_id=str(ds.geometry_id[row].values),
    )


def open_store_groups(store, molecules=None) -> dict:
    """xarray Datasets of the requested molecule groups (all with trajectories if None).

    Raises:
        InputError: a requested molecule has no trajectories, or the store holds none.
    """
    groups = open_dataset(store)
    if molecules:
        missing = [m for m in molecules if m not in groups]
        if missing:
            raise InputError(f"store '{store}' has no trajectories for {', '.join(missing)} "
                             f"(it has: {', '.join(groups) or 'none'})")
        groups = {m: groups[m] for m in molecules}
    if not groups:
        raise InputError(f"store '{store}' holds no trajectories")
    return groups


class MoleculeSplit(dict):
    """``{"train": rows, "val": rows, "test": rows}`` of one molecule, plus the flag
    :attr:`val_source`: ``"hash"`` (val geometries from :func:`assign_splits`),
    ``"train"`` (val carved from the training geometries), ``"none"`` (val is empty: the
    molecule is held out, the val fraction is 0, or it has fewer than 2 training
    geometries). Iterating gives only the three split names."""

    def __init__(self, rows: dict, val_source: str):
        super().__init__(rows)
        self.val_source = val_source

    @property
    def val_missing(self) -> bool:
        """True when a trained-on molecule has no validation trajectories."""
        return not self["val"]


def trajectory_splits(datasets: dict, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                      held_out_molecules=()) -> dict[str, MoleculeSplit]:
    """Row indices of each molecule's trajectories per split, by geometry.

    The split of a geometry is :func:`rtml.data.assign_splits` (stable SHA-256 hash, the
    same as :class:`rtml.data.TrajectoryWindows`); molecules in ``held_out_molecules`` go
    to ``test`` whole (zero-shot). Validation never comes from the test split: when a
    trained-on molecule ends up with no ``val`` geometry and the val fraction is > 0, its
    last training geometry in hash order (the largest ``u`` of :func:`assign_splits`) is
    moved to ``val`` if it has at least 2 training geometries; otherwise ``val`` stays
    empty and :attr:`MoleculeSplit.val_source` is ``"none"``. No geometry is in two splits.

    Returns:
        ``{molecule: MoleculeSplit({"train": [...], "val": [...], "test": [...]})}``, rows
        in store order.
    """
    f_val = _check_fractions(fractions)[1]
    keys = [(mol, str(g)) for mol, ds in datasets.items() for g in ds.geometry_id.values]
    assignment = assign_splits(keys, fractions=fractions, seed=seed)
    out = {}
    for mol, ds in datasets.items():
        geometries = [str(g) for g in ds.geometry_id.values]
        held_out = mol in held_out_molecules
        split_of = {g: "test" if held_out else assignment[(mol, g)] for g in geometries}
        source = "none" if held_out else "hash"
        if not held_out and "val" not in split_of.values():
            train = sorted({g for g, s in split_of.items() if s == "train"},
                           key=lambda g: _unit_interval(f"{seed}:{mol}/{g}"))
            if f_val > 0 and len(train) >= 2:
                split_of[train[-1]] = "val"
                source = "train"
            else:
                source = "none"
        rows = {s: [] for s in SPLITS}
        for row, geometry in enumerate(geometries):
            rows[split_of[geometry]].append(row)
        out[mol] = MoleculeSplit(rows, source)
    return out
