"""Molecule + fields -> :class:`rtml.data.Trajectory` records computed by NWChem."""

from __future__ import annotations

import logging
import shutil
import subprocess

import numpy as np

from rtml._errors import InputError
from rtml._provenance import inputs_hash
from rtml.data import Trajectory
from rtml.tddft import trajectory_record
from rtml.tddft.nwchem._deck import GRID_KEYWORDS, nwchem_xc
from rtml.tddft.nwchem._engine import ao_permutation, propagate_nwchem
from rtml.tddft.nwchem._run import nwchem_executable

log = logging.getLogger("rtml.tddft")

ENGINE_NAME = "nwchem"
#: Propagator of NWChem's rt_tddft: 2nd-order Magnus, F(t+dt/2) = (F(t) + F(t+dt))/2 iterated
#: to self-consistency (the field enters as (E(t) + E(t+dt))/2).
PROPAGATOR_NAME = "nwchem-magnus2-interpol"

__all__ = ["simulate_nwchem", "ENGINE_NAME", "PROPAGATOR_NAME", "nwchem_version"]


def nwchem_version() -> str:
    """The installed NWChem package version (Debian ``dpkg``), or ``unknown``."""
    if shutil.which("dpkg-query"):
        try:
            out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "nwchem"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return "unknown"


def simulate_nwchem(inputs, ranks: int = 1, progress=None, workdir=None) -> list[Trajectory]:
    """One NWChem job per field of ``inputs`` (:class:`rtml.tddft.SimulationInputs`).

    Fields must be resolved (S<n>/B<n>/auto: :func:`rtml.tddft.resolve_fields`).
    The trajectories have the PySCF engine's schema: frames every ``save_every`` steps with
    P(t) read from NWChem's restart records (Hermitian part; root attribute
    ``density_precision`` bounds their rounding), dipole (about the centre of nuclear charge),
    NWChem's energy Etot and the field of our definition (checked against the field
    NWChem printed).
    """
    settings = inputs.settings
    if settings.propagator != "magnus2":
        log.info("engine nwchem: propagator '%s' ignored, NWChem uses %s", settings.propagator,
                 PROPAGATOR_NAME)
    system = inputs.system
    nwchem_xc(system.xc_name)  # fail early on an unsupported functional
    mol = system.mole()
    ao_permutation(mol)  # fail early on d shells
    version = nwchem_version()
    out = []
    for b, field in enumerate(inputs.fields):
        if not field.is_resolved:
            raise InputError(f"field '{field.to_spec()}' is unresolved; resolve it first")
        sub = None if workdir is None else f"{workdir}/f{b:02d}"
        run = propagate_nwchem(mol, system.xc_name, field, settings.dt, settings.n_steps,
                               settings.save_every, grid_level=system.grid_level, ranks=ranks,
                               workdir=sub, progress=None if progress is None else
                               (lambda done, b=b: progress(b * settings.n_steps + done)))
        expected = field.values(run.time)
        mismatch = float(np.abs(run.field - expected).max())
        if mismatch > 1e-12 + 1e-9 * abs(field.amplitude):
            raise InputError(f"NWChem applied a field differing from '{field.to_spec()}' by "
                             f"{mismatch:.2e} a.u.; the field mapping is wrong")
        frames = run.frame_steps
        log.info("nwchem %s: %d steps in %d jobs, %.3f s/step", field.to_spec(),
                 settings.n_steps, run.n_jobs, run.wall_time_s / settings.n_steps)
        out.append(trajectory_record(
            system, mol, field,
            {"time": run.time[frames], "density": run.density, "field": expected[frames],
             "energy": run.energy[frames], "dipole": run.dipole[frames]},
            dt=settings.dt, save_every=settings.save_every, propagator=PROPAGATOR_NAME,
            engine=ENGINE_NAME,
            inputs_sha256=inputs_hash(inputs.hash_dict([field], engine=ENGINE_NAME)),
            engine_provenance={"nwchem_version": version, "nwchem_executable": nwchem_executable()},
            extra_attrs={
                "geometry_id": system.geometry_id,
                "grid_level": system.grid_level,
                "nwchem_grid": GRID_KEYWORDS.get(system.grid_level, "fine"),
                "ground_state_energy": run.ground_state_energy,
                # a kick U = exp(-i kappa e.D') commutes with D': the t=0 dipole is unchanged
                "ground_state_dipole": run.dipole[0],
                "density_source": "nwchem rt_restart records of one run, Hermitian part",
                "density_precision": run.density_precision,
                "nwchem_jobs": run.n_jobs,
                "nwchem_wall_time_per_step_s": run.wall_time_s / settings.n_steps,
                "batch_size": 1,
            }))
    return out
