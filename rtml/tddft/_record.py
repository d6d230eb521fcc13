"""The one builder of :class:`rtml.data.Trajectory` records, for every engine and importer.

An engine (PySCF, NWChem, the trained model) or importer hands over the saved frames of one
trajectory and what only it knows (its name, propagator, provenance, engine attributes); the
molecule's nuclei, AO metadata, overlap, core Hamiltonian and dipole origin are always taken
from :mod:`rtml.chem` for the same PySCF ``Mole``, so every file has the same schema and
the same one-electron data for the same geometry and basis.
"""

from __future__ import annotations

from rtml._provenance import provenance
from rtml.chem import SystemSpec, basis_metadata, one_electron_matrices
from rtml.data import Trajectory
from rtml.fields import Field

__all__ = ["trajectory_record"]


def trajectory_record(system: SystemSpec, mol, field: Field, frames: dict, *, dt: float,
                      save_every: int, propagator: str, engine: str, inputs_sha256: str,
                      extra_attrs: dict, engine_provenance: dict | None = None,
                      ground_state_density=None, ground_state_fock=None,
                      datasets: dict | None = None) -> Trajectory:
    """The :class:`Trajectory` of one field from its saved frames (atomic units).

    Args:
        system: molecule, geometry (Å) and level of theory, recorded as given.
        mol: the built PySCF ``Mole`` of ``system`` (nuclei, charge, spin, AO basis).
        field: the applied field, stored as ``field_spec`` (and its kick strength).
        frames: the T saved frames: ``time`` (T,), ``density`` (T, nspin, nao, nao) complex
            AO densities, ``field`` (T, 3), ``energy`` (T,) Hartree, ``dipole`` (T, 3) e*bohr
            about the centre of nuclear charge, optional ``fock`` (T, nspin, nao, nao) or None.
        dt, save_every, propagator: the time step (a.u.), the save stride and the name of
            the propagator that made the frames.
        engine: what produced the frames (``extra_attrs["engine"]`` and provenance).
        inputs_sha256: hash of everything that determined the frames (provenance).
        extra_attrs: the engine's own attributes; ``engine`` and ``kick_strength`` are added.
        engine_provenance: further provenance entries (code versions, the model's hash).
        ground_state_density, ground_state_fock: (nspin, nao, nao) real P0 and F[P0], or None.
        datasets: further optional schema datasets (``frame_source`` of the hybrid engine).
    """
    matrices = one_electron_matrices(mol)
    atom_index, ang, mag = basis_metadata(mol)
    return Trajectory(
        molecule=system.molecule.name,
        atomic_numbers=mol.atom_charges().astype(int),
        positions_angstrom=system.positions,
        charge=mol.charge,
        multiplicity=mol.spin + 1,
        basis=system.basis_name,
        xc=system.xc_name,
        n_electrons=mol.nelectron,
        basis_atom_index=atom_index,
        basis_angular_momentum=ang,
        basis_magnetic_quantum=mag,
        overlap=matrices.overlap,
        core_hamiltonian=matrices.hcore,
        density=frames["density"],
        fock=frames.get("fock"),
        time=frames["time"],
        field=frames["field"],
        energy=frames["energy"],
        dipole=frames["dipole"],
        dt=dt,
        save_every=save_every,
        propagator=propagator,
        field_spec=field.to_json_dict(),
        dipole_origin_bohr=matrices.dipole_origin,
        provenance=provenance(inputs_sha256, engine=engine, **(engine_provenance or {})),
        extra_attrs={"engine": engine, **extra_attrs,
                     "kick_strength": field.amplitude if field.is_kick else 0.0},
        ground_state_density=ground_state_density,
        ground_state_fock=ground_state_fock,
        datasets=dict(datasets or {}),
    )
