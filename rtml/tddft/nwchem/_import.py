"""Existing NWChem RT-TDDFT outputs (and restart files) -> an rtml :class:`Trajectory`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml._errors import InputError
from rtml._provenance import inputs_hash
from rtml.chem import SystemSpec, build_mole, centre_of_nuclear_charge
from rtml.data import Trajectory
from rtml.fields import Field
from rtml.tddft import trajectory_record
from rtml.tddft.nwchem._engine import ao_permutation
from rtml.tddft.nwchem._parse import (density_precision, hermitian_density, parse_rt_output,
                                      read_rt_restart)
from rtml.tddft.nwchem._simulate import PROPAGATOR_NAME

__all__ = ["import_nwchem"]

#: ``engine`` of imported trajectories (attributes and provenance).
IMPORT_ENGINE_NAME = "nwchem-import"


def import_nwchem(outputs, spec, *, restarts=(), basis: str | None = None, xc: str | None = None,
                  field: Field | None = None, positions_angstrom=None,
                  geometry: str | None = None) -> Trajectory:
    """Build a Trajectory from NWChem ``rt_tddft`` output file(s) and restart snapshots.

    Args:
        outputs: one or more output files of the same run (restarted runs in order; a
            time printed twice keeps its last value).
        spec: :class:`rtml.chem.MoleculeSpec` of the molecule (atoms in NWChem's order);
            overlap, core Hamiltonian and basis metadata are built with PySCF for it.
        restarts: ``*.rt_restart`` files (copies taken during the run). With them the
            frames are the restart times and P(t) is stored, made Hermitian
            (:func:`hermitian_density`; root attribute ``density_precision`` bounds the
            rounding of the file format); without them every printed
            time is a frame and the density is NaN (``density_source = "none"``; the file
            then fails ``rtml validate``'s finiteness check, by design: it holds no P(t)).
        field: the applied field as the user defined it (stored as ``field_spec``; the
            stored field values are those NWChem printed). Default ``none``.
        geometry: name of the NWChem geometry whose dipole is read (default the first).

    The dipole is moved from NWChem's centre of mass to our origin (centre of nuclear
    charge); the energy is NWChem's Etot.
    """
    paths = [outputs] if isinstance(outputs, (str, Path)) else list(outputs)
    texts = []
    for path in paths:
        try:
            texts.append(Path(path).read_text(errors="replace"))
        except OSError as err:
            raise InputError(f"cannot read NWChem output '{path}': {err.strerror}") from None
    parsed = parse_rt_output("\n".join(texts), geometry=geometry)
    basis = basis or spec.basis
    xc = (xc or spec.xc).lower()
    field = field or Field("none")
    mol = build_mole(spec, basis=basis, positions_angstrom=positions_angstrom)
    perm = ao_permutation(mol)
    if len(parsed.time) < 2:
        raise InputError("NWChem output has fewer than two printed times")
    dt = float(np.round(np.median(np.diff(parsed.time)), 6))
    shift = mol.charge * (parsed.dipole_origin - centre_of_nuclear_charge(mol))
    index = {round(t, 6): i for i, t in enumerate(parsed.time)}
    if restarts:
        snaps = sorted((read_rt_restart(p) for p in restarts), key=lambda s: s.time)
        rows, dens = [], []
        for snap in snaps:
            if snap.density.shape[-1] != mol.nao:
                raise InputError(f"restart at t={snap.time} has nbf={snap.density.shape[-1]} but "
                                 f"{spec.name}/{basis} has {mol.nao} AOs")
            key = round(snap.time, 6)
            if key not in index:
                raise InputError(f"restart snapshot at t={snap.time} has no printed dipole in "
                                 "the output")
            rows.append(index[key])
            dens.append(hermitian_density(snap.density[:, perm][:, :, perm]))
        rows = np.array(rows)
        density = np.array(dens)
        precision_attr = {"density_precision": density_precision(density)}
        source = f"nwchem rt_restart files ({len(snaps)} snapshots)"
        steps = np.round(parsed.time[rows] / dt).astype(int)
        save_every = int(np.median(np.diff(steps))) if len(steps) > 1 else 1
    else:
        rows = np.arange(len(parsed.time))
        nspin = 1 if mol.spin == 0 else 2
        density = np.full((len(rows), nspin, mol.nao, mol.nao), np.nan, dtype=complex)
        precision_attr = {}
        source = "none"
        save_every = 1
    hashed = {"engine": IMPORT_ENGINE_NAME, "outputs": [inputs_hash({"text": t}) for t in texts],
              "restarts": [str(p) for p in restarts], "molecule": spec.name, "basis": basis}
    system = SystemSpec(spec, positions_angstrom=mol.atom_coords(unit="Angstrom"), basis=basis,
                        xc=xc)
    frames = {"time": parsed.time[rows], "density": density,
              "field": np.nan_to_num(parsed.field[rows]), "energy": parsed.energy[rows],
              "dipole": parsed.dipole[rows] + shift}
    return trajectory_record(
        system, mol, field, frames, dt=dt, save_every=save_every, propagator=PROPAGATOR_NAME,
        engine=IMPORT_ENGINE_NAME, inputs_sha256=inputs_hash(hashed),
        extra_attrs={"density_source": source, "density_available": bool(restarts),
                     **precision_attr,
                     "imported_from": [str(p) for p in paths]})
