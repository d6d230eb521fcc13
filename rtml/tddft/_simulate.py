"""From a molecule and a list of fields to finished :class:`~rtml.data.Trajectory` records."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml._errors import InputError
from rtml._provenance import inputs_hash, provenance
from rtml.chem import MoleculeSpec, build_mole
from rtml.data import Trajectory
from rtml.fields import Field, resolve_field
from rtml.tddft._checkpoint import Checkpoint
from rtml.tddft._engine import PropagationSettings, propagate
from rtml.tddft._ground_state import (GroundState, excitation_energies, ground_state_fock,
                                     run_ground_state)

log = logging.getLogger("rtml.tddft")

ENGINE_NAME = "pyscf"


@dataclass
class SimulationInputs:
    """Everything that determines a batch of trajectories (hashed for provenance/resume).

    Attributes
    ----------
    molecule : MoleculeSpec
    fields : list of Field
    settings : PropagationSettings
    positions_angstrom : (n_atoms, 3) array or None
        Geometry override (sampled geometry); default the spec's equilibrium.
    basis, xc : str or None
        Overrides of the molecule's defaults.
    grid_level : int
        PySCF DFT grid level (0-9).
    geometry_id : str
        Identifier of the geometry sample (``"eq"`` for the equilibrium).
    """

    molecule: MoleculeSpec
    fields: list[Field]
    settings: PropagationSettings
    positions_angstrom: np.ndarray | None = None
    basis: str | None = None
    xc: str | None = None
    grid_level: int = 3
    geometry_id: str = "eq"

    @property
    def positions(self) -> np.ndarray:
        pos = self.molecule.positions_angstrom if self.positions_angstrom is None else self.positions_angstrom
        return np.asarray(pos, dtype=float)

    @property
    def basis_name(self) -> str:
        return self.basis or self.molecule.basis

    @property
    def xc_name(self) -> str:
        return (self.xc or self.molecule.xc).lower()

    def hash_dict(self, fields=None) -> dict:
        fields = self.fields if fields is None else fields
        return {
            "engine": ENGINE_NAME,
            "molecule": self.molecule.name,
            "symbols": list(self.molecule.symbols),
            "positions_angstrom": self.positions.tolist(),
            "charge": self.molecule.charge,
            "multiplicity": self.molecule.multiplicity,
            "basis": self.basis_name,
            "xc": self.xc_name,
            "grid_level": self.grid_level,
            "fields": [f.to_spec() for f in fields],
            "settings": self.settings.to_dict(),
        }


def basis_metadata(mol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom index, angular momentum l and real-harmonic m of every AO, in PySCF order.

    PySCF orders spherical p functions (px, py, pz), i.e. m = (+1, -1, 0); d and higher
    shells run m = -l..l.
    """
    atom, ang, mag = [], [], []
    for shell in range(mol.nbas):
        l = mol.bas_angular(shell)
        ms = [1, -1, 0] if l == 1 else list(range(-l, l + 1))
        for _ in range(mol.bas_nctr(shell)):
            atom += [mol.bas_atom(shell)] * len(ms)
            ang += [l] * len(ms)
            mag += ms
    return np.array(atom), np.array(ang), np.array(mag)


#: LR-TDDFT states computed to resolve S<n>/B<n> fields (B<n> ranks among these).
DEFAULT_EXCITED_STATES = 10


def prepare_ground_state(inputs: SimulationInputs, verbose: int = 0, scf_max_cycle: int = 200,
                         saved=None, nstates: int = DEFAULT_EXCITED_STATES) -> tuple[GroundState, list[Field]]:
    """Converged ground state and the fields with LR-TDDFT frequencies/polarisations resolved.

    Args:
        saved: optional :class:`rtml.data.GroundStateRecord` of the same geometry and level
            of theory: its density starts the SCF and its excitations resolve the fields.
        nstates: LR-TDDFT states to compute when ``saved`` is not given (at least the
            largest S<n>/B<n> asked for).
    """
    mol = build_mole(inputs.molecule, basis=inputs.basis_name, positions_angstrom=inputs.positions,
                     verbose=verbose)
    dm0 = None
    if saved is not None:
        _check_saved_ground_state(saved, inputs, mol)
        dm0 = saved.density[0] if saved.density.shape[0] == 1 else saved.density
    gs = run_ground_state(mol, inputs.xc_name, grid_level=inputs.grid_level, verbose=verbose,
                          max_cycle=scf_max_cycle, dm0=dm0)
    log.info("ground state: E = %.10f Ha, ||FPS-SPF|| = %.1e, nao = %d", gs.energy,
             gs.commutator_norm, mol.nao)
    fields = list(inputs.fields)
    unresolved = [f for f in fields if not f.is_resolved]
    if unresolved:
        excitations = saved
        if excitations is None:
            needed = max(int(f.omega_source[1:]) for f in unresolved)
            excitations = excitation_energies(gs, nstates=max(needed, nstates))
        fields = [resolve_field(f, excitations) for f in fields]
        for f in fields:
            if f.omega_source:
                log.info("resonant drive %s: omega = %.6f Ha, polarisation %s", f.omega_source,
                         f.omega, np.round(f.polarization, 6).tolist())
    return gs, fields


def _check_saved_ground_state(saved, inputs: SimulationInputs, mol) -> None:
    """A saved ground state must belong to the same molecule, geometry and level of theory."""
    same = (np.array_equal(np.asarray(saved.atomic_numbers), mol.atom_charges())
            and np.allclose(saved.positions_angstrom, inputs.positions, atol=1e-10, rtol=0)
            and saved.basis.lower() == inputs.basis_name.lower()
            and saved.xc.lower() == inputs.xc_name
            and saved.grid_level == inputs.grid_level
            and saved.charge == mol.charge and saved.multiplicity == mol.spin + 1)
    if not same:
        raise InputError(f"ground-state file for {saved.molecule} ({saved.xc}/{saved.basis}, grid "
                         f"{saved.grid_level}) does not match this geometry and level of theory")


def simulate(inputs: SimulationInputs, checkpoint_dir: str | Path | None = None, progress=None,
             ground_state: GroundState | None = None, engine: str = ENGINE_NAME,
             ranks: int = 1) -> list[Trajectory]:
    """Run the ground state and a batched propagation; return one Trajectory per field.

    With ``checkpoint_dir`` the propagation checkpoints there every
    ``settings.checkpoint_every`` steps and resumes from it when it exists for the same
    inputs (the caller removes it after the trajectories are safely written).

    ``engine="nwchem"`` runs :func:`rtml.tddft.nwchem.simulate_nwchem` instead (one NWChem
    job per field, ``ranks`` MPI ranks; fields must be resolved; no checkpoints).
    """
    if engine == "nwchem":
        from rtml.tddft.nwchem import simulate_nwchem

        return simulate_nwchem(inputs, ranks=ranks, progress=progress)
    if engine != ENGINE_NAME:
        raise InputError(f"unknown engine '{engine}'; choose pyscf or nwchem")
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
    basis = basis_metadata(ground_state.context.mol)
    return [trajectory_record(inputs, ground_state, basis, f, b, frames, stats)
            for b, f in enumerate(fields)]


def trajectory_record(inputs: SimulationInputs, gs: GroundState, basis, field: Field, member: int,
                      frames: dict, stats: dict, engine: str = ENGINE_NAME,
                      propagator: str | None = None, engine_provenance: dict | None = None) -> Trajectory:
    """The :class:`Trajectory` of batch member ``member`` from an engine's frames.

    ``engine``/``propagator`` name what produced the frames (default: this engine and the
    settings' propagator); ``engine_provenance`` adds to the provenance record (e.g. the
    model's hash for ``engine="model"``). ``frames["fock"]`` may be None (no Fock matrices).
    """
    ctx = gs.context
    mol = ctx.mol
    atom_index, ang, mag = basis
    settings = inputs.settings
    traj_hash = inputs_hash(inputs.hash_dict([field]))
    return Trajectory(
        molecule=inputs.molecule.name,
        atomic_numbers=mol.atom_charges().astype(int),
        positions_angstrom=inputs.positions,
        charge=mol.charge,
        multiplicity=mol.spin + 1,
        basis=inputs.basis_name,
        xc=inputs.xc_name,
        n_electrons=mol.nelectron,
        basis_atom_index=atom_index,
        basis_angular_momentum=ang,
        basis_magnetic_quantum=mag,
        overlap=ctx.overlap,
        core_hamiltonian=ctx.hcore,
        density=frames["density"][:, member],
        fock=None if frames.get("fock") is None else frames["fock"][:, member],
        time=frames["time"],
        field=frames["field"][:, member],
        energy=frames["energy"][:, member],
        dipole=frames["dipole"][:, member],
        dt=settings.dt,
        save_every=settings.save_every,
        propagator=propagator or settings.propagator,
        field_spec=field.to_json_dict(),
        dipole_origin_bohr=ctx.dipole_origin,
        provenance=provenance(traj_hash, engine=engine, **(engine_provenance or {})),
        extra_attrs={
            "engine": engine,
            "geometry_id": inputs.geometry_id,
            "grid_level": inputs.grid_level,
            "ground_state_energy": gs.energy,
            "ground_state_dipole": gs.dipole,
            "ground_state_commutator": gs.commutator_norm,
            "pc_tol": settings.pc_tol,
            "fock_builds_per_step": stats["builds_per_step"],
            "kick_strength": field.amplitude if field.is_kick else 0.0,
            "batch_size": len(frames["energy"][0]),
        },
        ground_state_density=np.array(gs.density, dtype=np.float64),
        ground_state_fock=np.array(ground_state_fock(gs), dtype=np.float64),
    )
