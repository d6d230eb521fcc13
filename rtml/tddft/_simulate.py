"""The PySCF engine end to end: system -> ground state -> fields resolved -> propagation ->
:class:`~rtml.data.Trajectory` records (and the saved ground state of ``rtml ground-state``).

The ground state depends on the system alone (:class:`rtml.chem.SystemSpec`:
:func:`converged_ground_state`); resolving S<n>/B<n>/auto fields from its LR-TDDFT
excitations is a separate step (:func:`resolve_fields`) that only propagation needs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml._errors import InputError
from rtml._provenance import inputs_hash, provenance
from rtml.chem import MoleculeSpec, SystemSpec
from rtml.data import GroundStateRecord, Trajectory
from rtml.fields import Field, resolve_field
from rtml.tddft._checkpoint import Checkpoint, CheckpointFrames
from rtml.tddft._engine import PropagationSettings, propagate
from rtml.tddft._ground_state import (Excitations, GroundState, excitation_energies,
                                     ground_state_fock, run_ground_state)
from rtml.tddft._record import trajectory_record

log = logging.getLogger("rtml.tddft")

ENGINE_NAME = "pyscf"
#: LR-TDDFT states computed to resolve S<n>/B<n> fields (B<n> ranks among these).
DEFAULT_EXCITED_STATES = 10


@dataclass(init=False)
class SimulationInputs:
    """Everything that determines a batch of trajectories (hashed for provenance/resume).

    Attributes
    ----------
    system : SystemSpec
        Molecule, geometry (Å) and level of theory; the constructor takes its fields
        (``molecule``, ``positions_angstrom``, ``basis``, ``xc``, ``grid_level``,
        ``geometry_id``) as keywords.
    fields : list of Field
    settings : PropagationSettings
    """

    system: SystemSpec
    fields: list[Field]
    settings: PropagationSettings

    def __init__(self, molecule: MoleculeSpec, fields: list[Field], settings: PropagationSettings,
                 positions_angstrom=None, basis: str | None = None, xc: str | None = None,
                 grid_level: int = 3, geometry_id: str = "eq"):
        self.system = SystemSpec(molecule=molecule, positions_angstrom=positions_angstrom,
                                 basis=basis, xc=xc, grid_level=grid_level, geometry_id=geometry_id)
        self.fields = fields
        self.settings = settings

    @classmethod
    def from_system(cls, system: SystemSpec, fields: list[Field],
                    settings: PropagationSettings) -> SimulationInputs:
        """The inputs of a batch of ``fields`` on ``system``."""
        return cls(system.molecule, fields, settings, system.positions_angstrom, system.basis,
                   system.xc, system.grid_level, system.geometry_id)

    def with_fields(self, fields: list[Field]) -> SimulationInputs:
        """The same system and settings with other (e.g. resolved) fields."""
        return self.from_system(self.system, fields, self.settings)

    def hash_dict(self, fields=None, engine: str = ENGINE_NAME) -> dict:
        """What is hashed for provenance and resume: engine, system, fields, settings."""
        fields = self.fields if fields is None else fields
        return {"engine": engine, **self.system.hash_dict(),
                "fields": [f.to_spec() for f in fields], "settings": self.settings.to_dict()}


def converged_ground_state(system: SystemSpec, verbose: int = 0, scf_max_cycle: int = 200,
                           saved: GroundStateRecord | None = None,
                           initial_guess=None) -> GroundState:
    """The converged, engine-checked ground state of ``system`` (:func:`run_ground_state`).

    Args:
        saved: optional ground state of the same geometry and level of theory (``rtml
            ground-state``): its density starts the SCF.
        initial_guess: optional callable(mol) -> PySCF ``dm0`` (e.g. the learned guess,
            :func:`rtml.model.guess_density`), used when ``saved`` is not given; PySCF's
            default (minao) otherwise.
    """
    mol = system.mole(verbose)
    dm0, source = None, "minao guess"
    if saved is not None:
        _check_saved_ground_state(saved, system, mol)
        dm0 = saved.density[0] if saved.density.shape[0] == 1 else saved.density
        source = "saved ground state"
    elif initial_guess is not None:
        dm0, source = initial_guess(mol), "learned guess"
    gs = run_ground_state(mol, system.xc_name, grid_level=system.grid_level, verbose=verbose,
                          max_cycle=scf_max_cycle, dm0=dm0)
    log.info("ground state: E = %.10f Ha, ||FPS-SPF|| = %.1e, nao = %d, %s SCF cycles from the %s",
             gs.energy, gs.commutator_norm, mol.nao, getattr(gs.mf, "cycles", "?"), source)
    return gs


def resolve_fields(fields: list[Field], ground_state: GroundState, excitations=None,
                   nstates: int = DEFAULT_EXCITED_STATES) -> list[Field]:
    """The fields with S<n>/B<n> frequencies and ``auto`` polarisations resolved.

    Args:
        excitations: :class:`Excitations` (or a saved :class:`rtml.data.GroundStateRecord`)
            of ``ground_state``; computed (at least ``nstates``, at least the largest n
            asked for) only when some field needs them and none are given.
    """
    fields = list(fields)
    unresolved = [f for f in fields if not f.is_resolved]
    if not unresolved:
        return fields
    if excitations is None:
        needed = max(int(f.omega_source[1:]) for f in unresolved)
        excitations = excitation_energies(ground_state, nstates=max(needed, nstates))
    fields = [resolve_field(f, excitations) for f in fields]
    for f in fields:
        if f.omega_source:
            log.info("resonant drive %s: omega = %.6f Ha, polarisation %s", f.omega_source,
                     f.omega, np.round(f.polarization, 6).tolist())
    return fields


def prepare_ground_state(inputs: SimulationInputs, verbose: int = 0, scf_max_cycle: int = 200,
                         saved=None, nstates: int = DEFAULT_EXCITED_STATES,
                         initial_guess=None) -> tuple[GroundState, list[Field]]:
    """Converged ground state and the fields with LR-TDDFT frequencies/polarisations resolved.

    Args:
        saved: optional :class:`rtml.data.GroundStateRecord` of the same geometry and level
            of theory: its density starts the SCF and its excitations resolve the fields.
        nstates: LR-TDDFT states to compute when ``saved`` is not given (at least the
            largest S<n>/B<n> asked for).
        initial_guess: as :func:`converged_ground_state`.
    """
    gs = converged_ground_state(inputs.system, verbose, scf_max_cycle, saved, initial_guess)
    return gs, resolve_fields(inputs.fields, gs, saved, nstates)


def _check_saved_ground_state(saved, system: SystemSpec, mol) -> None:
    """A saved ground state must belong to the same molecule, geometry and level of theory."""
    same = (np.array_equal(np.asarray(saved.atomic_numbers), mol.atom_charges())
            and np.allclose(saved.positions_angstrom, system.positions, atol=1e-10, rtol=0)
            and saved.basis.lower() == system.basis_name.lower()
            and saved.xc.lower() == system.xc_name
            and saved.grid_level == system.grid_level
            and saved.charge == mol.charge and saved.multiplicity == mol.spin + 1)
    if not same:
        raise InputError(f"ground-state file for {saved.molecule} ({saved.xc}/{saved.basis}, grid "
                         f"{saved.grid_level}) does not match this geometry and level of theory")


def ground_state_record(system: SystemSpec, ground_state: GroundState, excitations: Excitations,
                        nstates: int) -> GroundStateRecord:
    """What ``rtml ground-state`` saves: SCF density and LR-TDDFT states (``nstates`` asked for)."""
    # hashed like a field-free PySCF batch without settings (the format's hash since version 1)
    hashed = {"engine": ENGINE_NAME, **system.hash_dict(), "fields": [], "nstates": nstates}
    mol = ground_state.context.mol
    return GroundStateRecord(
        molecule=system.molecule.name, atomic_numbers=mol.atom_charges(),
        positions_angstrom=system.positions, charge=system.molecule.charge,
        multiplicity=system.molecule.multiplicity, basis=system.basis_name, xc=system.xc_name,
        grid_level=system.grid_level, energy=ground_state.energy, dipole=ground_state.dipole,
        dipole_origin_bohr=ground_state.context.dipole_origin,
        commutator_norm=ground_state.commutator_norm, density=ground_state.density,
        excitation_energies=excitations.energies,
        oscillator_strengths=excitations.oscillator_strengths,
        transition_dipoles=excitations.transition_dipoles,
        provenance=provenance(inputs_hash(hashed), geometry_id=system.geometry_id))


def simulate(inputs: SimulationInputs, checkpoint_dir: str | Path | None = None, progress=None,
             ground_state: GroundState | None = None) -> Sequence[Trajectory]:
    """Run the ground state and a batched propagation; return one Trajectory per field.

    With ``checkpoint_dir`` the propagation checkpoints there every
    ``settings.checkpoint_every`` steps and resumes from it when it exists for the same
    inputs; the trajectories are then read from it, one each time one is indexed (only its
    frames in memory), so the caller removes it once they are written. With
    ``ground_state`` given, ``inputs.fields`` must already be resolved.
    """
    if ground_state is None:
        ground_state, fields = prepare_ground_state(inputs)
    else:
        fields = inputs.fields
    batch_hash = inputs_hash(inputs.hash_dict(fields))
    checkpoint = Checkpoint(checkpoint_dir, batch_hash) if checkpoint_dir is not None else None
    frames, stats = propagate(ground_state, fields, inputs.settings, checkpoint=checkpoint,
                              progress=progress)
    log.info("propagation: %d steps x %d fields, %.2f Fock builds/step, %.3f s/step",
             inputs.settings.n_steps, len(fields), stats["builds_per_step"],
             stats["wall_time_per_step_s"])
    return batch_trajectory_records(inputs, ground_state, fields, frames, stats)


def batch_trajectory_records(inputs: SimulationInputs, ground_state: GroundState,
                             fields: list[Field], frames, stats: dict,
                             engine: str = ENGINE_NAME, propagator: str | None = None,
                             engine_provenance: dict | None = None,
                             member_extras=None) -> Sequence[Trajectory]:
    """One :class:`Trajectory` per field from a batch propagated from ``ground_state``.

    ``frames`` are batched as :func:`rtml.tddft.propagate` returns them (``(T, nb, ...)``;
    ``frames["fock"]`` may be None): a dict gives a list of records, a
    :class:`~rtml.tddft.CheckpointFrames` a sequence that reads each record's frames from the
    checkpoint when it is indexed. ``engine``/``propagator`` name what produced them
    (default: this engine and the settings' propagator); ``engine_provenance`` adds to the
    provenance (e.g. the model's hash for ``engine="model"``). ``member_extras``, one
    ``(datasets, attrs)`` pair per field, adds a member's own optional datasets and root
    attributes (the hybrid engine's frame sources and re-anchoring events). Each record's
    inputs hash is that of the PySCF batch of its one field.
    """
    settings = inputs.settings
    system = inputs.system
    density0 = np.array(ground_state.density, dtype=np.float64)
    fock0 = np.array(ground_state_fock(ground_state), dtype=np.float64)
    extra_attrs = {
        "geometry_id": system.geometry_id,
        "grid_level": system.grid_level,
        "ground_state_energy": ground_state.energy,
        "ground_state_dipole": ground_state.dipole,
        "ground_state_commutator": ground_state.commutator_norm,
        "pc_tol": settings.pc_tol,
        "fock_builds_per_step": stats["builds_per_step"],
        "batch_size": len(fields),
    }

    def record(b: int) -> Trajectory:
        datasets, attrs = member_extras[b] if member_extras is not None else ({}, {})
        return trajectory_record(system, ground_state.context.mol, fields[b],
                                 _member_frames(frames, b), dt=settings.dt,
                                 save_every=settings.save_every,
                                 propagator=propagator or settings.propagator, engine=engine,
                                 inputs_sha256=inputs_hash(inputs.hash_dict([fields[b]])),
                                 extra_attrs={**extra_attrs, **attrs},
                                 engine_provenance=engine_provenance,
                                 ground_state_density=density0, ground_state_fock=fock0,
                                 datasets=datasets)

    if isinstance(frames, CheckpointFrames):
        return _RecordsOnDemand(record, len(fields))
    return [record(b) for b in range(len(fields))]


class _RecordsOnDemand(Sequence):
    """Records built when indexed (``record(b)``), none of them kept."""

    def __init__(self, record: Callable[[int], Trajectory], n: int):
        self._record = record
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self._record(b) for b in range(self._n)[index]]
        return self._record(range(self._n)[index])  # range checks and wraps the index


def _member_frames(frames, member: int) -> dict:
    """Frames of batch member ``member``: (T, nb, ...) arrays -> (T, ...); time is shared."""
    if isinstance(frames, CheckpointFrames):
        return frames.member(member)
    out = {"time": frames["time"]}
    for key in ("density", "fock", "field", "energy", "dipole"):
        out[key] = None if frames.get(key) is None else frames[key][:, member]
    return out
