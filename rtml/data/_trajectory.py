"""The per-trajectory record produced by the propagation engines.

One :class:`Trajectory` is one RT-TDDFT run of one molecule geometry under one field. It is
written to one HDF5 file (see :func:`rtml.data.write_trajectory` for the on-disk schema).
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass, field as dc_field, fields
from typing import Any

import numpy as np

from rtml.data._schema import DATASETS
from rtml.fields import parse_field


@dataclass
class SystemRecord:
    """Which molecule, geometry and level of theory a saved record belongs to (the head of
    a trajectory and of a ground-state record).

    Attributes
    ----------
    molecule : str
        Ladder name (``"h2o"``) or the stem of a user geometry file.
    atomic_numbers : (n_atoms,) int array
    positions_angstrom : (n_atoms, 3) float array, Å
    charge, multiplicity : int
    basis, xc : str
        Basis set name and PySCF functional name (``"hf"`` for RT-TDHF).
    """

    molecule: str
    atomic_numbers: np.ndarray
    positions_angstrom: np.ndarray
    charge: int
    multiplicity: int
    basis: str
    xc: str


@dataclass
class Trajectory(SystemRecord):
    """One RT-TDDFT trajectory, everything in atomic units except positions (Å).

    Attributes
    ----------
    molecule, atomic_numbers, positions_angstrom, charge, multiplicity, basis, xc
        As in :class:`SystemRecord`.
    n_electrons : int
    basis_atom_index, basis_angular_momentum, basis_magnetic_quantum : (nbf,) int arrays
        Atom (0-based), l and real-spherical-harmonic m of each AO, in PySCF AO order.
        For l=1 PySCF orders (px, py, pz), which are m = (+1, -1, 0).
    overlap, core_hamiltonian : (nbf, nbf) float arrays
        S and h = T + V_nuc in the AO basis (Hartree for h).
    density : (n_steps, n_spin, nbf, nbf) complex array
        AO density matrix P(t) at each saved step. n_spin=1: total density, Tr(PS)=N;
        n_spin=2: alpha and beta densities.
    time : (n_steps,) float array, a.u. of time
    field : (n_steps, 3) float array, a.u. of field strength
        Applied electric field E(t) at each saved time (zero for a delta kick, which is
        applied as an exact unitary before the first saved step).
    energy : (n_steps,) float array, Hartree
        Molecular energy E[P(t)] (electronic + nuclear repulsion) without the field term.
    dipole : (n_steps, 3) float array, e*bohr
        Total dipole (electrons and nuclei) about ``dipole_origin``.
    dt : float
        Propagation time step (a.u.).
    save_every : int
        Frames are saved every ``save_every`` propagation steps.
    propagator : str
    field_spec : dict
        The field's JSON description (``rtml.fields.Field.to_json_dict()``).
    dipole_origin_bohr : (3,) float array
        Origin of the dipole operator: the centre of nuclear charge, bohr.
    provenance : dict
        rtml version and git commit, PySCF version, hash of all inputs, ...
    extra_attrs : dict
        Further scalar or small-array attributes (ground-state energy and dipole, grid
        level, convergence settings, ...). Written as root attributes.
    datasets : dict[str, array]
        The schema's datasets that are not fields above (:data:`rtml.data._schema.DATASETS`,
        today the optional ones below), keyed by their ``attr``, present ones only. Each
        is also the attribute ``traj.<attr>`` (``None`` when absent; setting ``None``
        removes it), and ``fock``, ``ground_state_density``, ``ground_state_fock`` are
        also constructor keywords.
    fock : (n_steps, n_spin, nbf, nbf) complex array or None, Hartree
        AO Fock matrix F[P(t)] of each saved frame (core Hamiltonian + two-electron part,
        no field term E(t)·r), Hermitian: exact exchange of Im P gives it an imaginary
        antisymmetric part. n_spin=2: alpha and beta Fock matrices. The rtml engine
        records the matrix its step accepted for that time point (a full build, or the
        linear-response corrector's accepted prediction, within its tolerance of a fresh
        build; with the engine's default ``carry_model`` the linear model's prediction
        from a build up to many steps back, ~1e-3 of F - F0 off a fresh build). Optional:
        None for imported NWChem files.
    ground_state_density : (n_spin, nbf, nbf) float array or None, electrons
        SCF ground-state density P0 of this geometry, from the converged orbitals
        (idempotent; n_spin=1: total density). Optional: None for imported NWChem files.
    ground_state_fock : (n_spin, nbf, nbf) float array or None, Hartree
        F0 = F[P0] built with the same Fock build as the dynamics (so ``fock - F0`` is
        the two-electron change of the frames). Optional: None for imported NWChem files.
    """

    n_electrons: int
    basis_atom_index: np.ndarray
    basis_angular_momentum: np.ndarray
    basis_magnetic_quantum: np.ndarray
    overlap: np.ndarray
    core_hamiltonian: np.ndarray
    density: np.ndarray
    time: np.ndarray
    field: np.ndarray
    energy: np.ndarray
    dipole: np.ndarray
    dt: float
    save_every: int
    propagator: str
    field_spec: dict
    dipole_origin_bohr: np.ndarray
    provenance: dict
    extra_attrs: dict[str, Any] = dc_field(default_factory=dict)
    datasets: dict[str, np.ndarray] = dc_field(default_factory=dict)
    fock: InitVar[np.ndarray | None] = None
    ground_state_density: InitVar[np.ndarray | None] = None
    ground_state_fock: InitVar[np.ndarray | None] = None

    def __post_init__(self, fock, ground_state_density, ground_state_fock):
        keywords = {"fock": fock, "ground_state_density": ground_state_density,
                    "ground_state_fock": ground_state_fock}
        given = {**self.datasets, **{k: v for k, v in keywords.items() if v is not None}}
        unknown = sorted(set(given) - set(_MAPPED))
        if unknown:
            raise TypeError(f"Trajectory: {', '.join(map(repr, unknown))} is not a dataset of "
                            "the trajectory schema")
        self.datasets = {name: value for name, value in given.items() if value is not None}

    @property
    def dims(self) -> dict[str, int]:
        """``n_atoms, n_basis, n_steps, n_spin``: the values of the schema's symbolic dims."""
        return {"n_atoms": self.n_atoms, "n_basis": self.n_basis, "n_steps": self.n_steps,
                "n_spin": self.n_spin}

    @property
    def n_steps(self) -> int:
        """Number of saved frames."""
        return int(self.density.shape[0])

    @property
    def n_spin(self) -> int:
        return int(self.density.shape[1])

    @property
    def n_basis(self) -> int:
        return int(self.density.shape[-1])

    @property
    def n_atoms(self) -> int:
        return int(len(self.atomic_numbers))


def _dataset_property(name: str) -> property:
    """``traj.<name>``: the ``datasets`` entry, ``None`` when absent (setting ``None``
    removes it)."""

    def get(self):
        return self.datasets.get(name)

    def set_(self, value):
        if value is None:
            self.datasets.pop(name, None)
        else:
            self.datasets[name] = value

    return property(get, set_, doc=f"The {name!r} dataset, or None (see ``datasets``).")


#: Schema datasets the record carries in ``datasets`` rather than as fields.
_MAPPED = tuple(d.attr for d in DATASETS if d.attr not in {f.name for f in fields(Trajectory)})
for _name in _MAPPED:
    setattr(Trajectory, _name, _dataset_property(_name))


def trajectory_file_name(index: int, spec: str) -> str:
    """File name of trajectory ``index`` of a batch, from its field spec as given.

    ``t{index:02d}-{slug}.h5`` with the canonical spec (:meth:`rtml.fields.Field.to_spec`
    of the *unresolved* field, so names are known before LR-TDDFT runs) and ':' and ','
    replaced by '_'. Example: ``trajectory_file_name(3, "kick:1e-3:z")`` ->
    ``"t03-kick_0.001_z.h5"``.
    """
    slug = parse_field(spec).to_spec().replace(":", "_").replace(",", "_")
    return f"t{index:02d}-{slug}.h5"
