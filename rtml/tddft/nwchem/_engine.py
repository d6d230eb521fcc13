r"""The NWChem RT-TDDFT engine: one NWChem job per field, harvested into rtml trajectories.

For one geometry and one field the engine

1. runs NWChem's SCF and a zero-length ``rt_tddft`` (``start`` job) whose restart file holds
   NWChem's own ground-state density P(0);
2. for a kick, replaces it by :math:`U P(0) U^\dagger`,
   :math:`U = \exp(-i\kappa\,\mathbf e\cdot\mathbf D)` in the Löwdin basis (exactly
   :func:`rtml.tddft.apply_kicks`), and writes it back as NWChem's restart file;
3. propagates the whole window in one ``restart`` job (two for a resonant drive, whose cw
   field is switched off at a restart), NWChem saving P(t) at every step through a FIFO
   that this process reads while NWChem runs (:func:`rtml.tddft.nwchem.run_nwchem_streaming`),
   and collects dipole, field and energy of every step from the outputs.

So a trajectory costs two or three NWChem starts whatever ``save_every`` is. (Before, each
saved frame was a restart segment of its own: H2O/6-31G RT-TDHF with a Gaussian pulse, 300
steps saved at every step, took 301 NWChem starts and ~0.9 s per step; now 2 starts and
0.016 s per step, one rank, measured on a busy 2-core machine.)
Each stored P(t) is rounded once, by NWChem's restart format (10 significant digits), and
made Hermitian (:func:`rtml.tddft.nwchem.hermitian_density`); the bound of that rounding is
stored with the trajectory (``density_precision``).

Overlap, core Hamiltonian, dipole integrals and basis metadata come from PySCF for the same
molecule and basis (:func:`rtml.chem.one_electron_matrices`, :func:`rtml.chem.basis_metadata`;
the deck passes PySCF's basis data to NWChem), in PySCF AO order; :func:`ao_permutation`
maps NWChem's AO order onto it (identity for s and p shells, both codes order p as x, y, z;
verified against the ground-state density in the tests).
"""

from __future__ import annotations

import tempfile
import time as _time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml._errors import InputError
from rtml.chem import one_electron_matrices
from rtml.fields import Field
from rtml.tddft.nwchem._deck import tmax_for_last_print, write_rt_tddft_input
from rtml.tddft.nwchem._parse import (RestartSnapshot, density_precision, hermitian_density,
                                      parse_rt_output, parse_rt_restart, read_rt_restart,
                                      write_rt_restart)
from rtml.tddft.nwchem._run import run_nwchem, run_nwchem_streaming


__all__ = ["NWChemRun", "ao_permutation", "propagate_nwchem", "kick_density"]


def ao_permutation(mol) -> np.ndarray:
    """Index array ``perm`` with ``P_pyscf = P_nwchem[perm][:, perm]`` (s and p shells only).

    NWChem orders the functions of a spherical p shell (x, y, z) like PySCF, and shells in
    the order of the basis block, which the deck writes in PySCF's order, so the
    permutation is the identity. d and higher shells are rejected: their m order and
    normalisation in NWChem's spherical basis are not verified against PySCF here.
    """
    for shell in range(mol.nbas):
        l = mol.bas_angular(shell)
        if l > 1:
            raise InputError(f"basis '{mol.basis}' has l={l} shells; the NWChem engine supports "
                             "s and p shells only (e.g. 6-31G, not 6-31G*)")
    if mol.cart:
        raise InputError("the NWChem engine needs a spherical basis (mol.cart = False)")
    return np.arange(mol.nao)


def kick_density(density: np.ndarray, kick_vector: np.ndarray, overlap: np.ndarray,
                 dipole_ints: np.ndarray) -> np.ndarray:
    r"""Exact kick of AO densities (nmats, n, n): :math:`P \to S^{-1/2} U P' U^\dagger S^{-1/2}`.

    :math:`P' = S^{1/2} P S^{1/2}`, :math:`U = \exp(-i\,\boldsymbol\kappa\cdot\mathbf D')`,
    :math:`\mathbf D' = S^{-1/2}\mathbf D S^{-1/2}` (the definition used by the PySCF engine).
    """
    w, v = np.linalg.eigh(overlap)
    s_half = (v * np.sqrt(w)) @ v.T
    s_mhalf = (v / np.sqrt(w)) @ v.T
    d_orth = np.einsum("k,kij->ij", kick_vector, s_mhalf @ dipole_ints @ s_mhalf)
    e, u = np.linalg.eigh(d_orth)
    unitary = (u * np.exp(-1j * e)) @ u.conj().T
    out = np.empty_like(density, dtype=complex)
    for m, p in enumerate(density):
        p_orth = s_half @ p @ s_half
        out[m] = s_mhalf @ (unitary @ p_orth @ unitary.conj().T) @ s_mhalf
    return out


@dataclass
class NWChemRun:
    """Result of :func:`propagate_nwchem` (atomic units, PySCF AO order).

    Attributes
    ----------
    time, dipole, energy, field : every step 0..n_steps: (n+1,), (n+1, 3), (n+1,), (n+1, 3)
        Dipole about the centre of nuclear charge; field as NWChem printed it (zero for
        kicks, which are applied to the density).
    frame_steps : (n_frames,) int array, the saved steps (multiples of save_every)
    density : (n_frames, nmats, nbf, nbf) complex array, Hermitian, or None
        (``harvest_density=False``)
    density_precision : float or None, bound on the rounding of each density element (a.u.;
        :func:`rtml.tddft.nwchem.density_precision`), None without densities
    wall_time_s : float, NWChem wall time of the propagation runs (excluding the SCF job)
    n_jobs : int, NWChem invocations
    ground_state_energy : float, NWChem's SCF energy (Etot at t=0 before any kick)
    """

    time: np.ndarray
    dipole: np.ndarray
    energy: np.ndarray
    field: np.ndarray
    frame_steps: np.ndarray
    density: np.ndarray | None
    density_precision: float | None
    wall_time_s: float
    n_jobs: int
    ground_state_energy: float


def _segment_ends(n_steps: int, field: Field, dt: float) -> list[int]:
    """Steps where a restart job ends: the end of a resonant drive, and the last step."""
    ends = {n_steps}
    if field.kind == "resonant":
        k = field.duration / dt
        if abs(k - round(k)) > 1e-9:
            raise InputError(f"resonant DURATION {field.duration} must be a multiple of dt={dt} "
                             "for the NWChem engine (its cw field is switched off at a restart)")
        if 0 < round(k) < n_steps:
            ends.add(int(round(k)))
    return sorted(ends)


def propagate_nwchem(mol, xc: str, field: Field, dt: float, n_steps: int, save_every: int = 1,
                     *, grid_level: int = 3, ranks: int = 1, workdir: str | Path | None = None,
                     harvest_density: bool = True, interpol_tol: float = 1e-10,
                     progress=None) -> NWChemRun:
    """Propagate one molecule under one field with NWChem (see the module docstring).

    With ``workdir`` given, NWChem's files stay there: ``<name>.nwo`` (all outputs) and
    ``rtml.rt_restart``, the restart file of the last step.
    """
    if save_every < 1 or n_steps < 1 or not dt > 0:
        raise InputError(f"need dt > 0, n_steps >= 1, save_every >= 1 (got {dt}, {n_steps}, "
                         f"{save_every})")
    perm = ao_permutation(mol)
    ints = one_electron_matrices(mol)
    nwchem_origin_shift = None
    ends = _segment_ends(n_steps, field, dt)
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="rtml-nwchem-")
        workdir = tmp.name
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    name = "rtml"
    restart = workdir / f"{name}.rt_restart"
    series: dict[int, tuple] = {}
    frames: dict[int, np.ndarray] = {}
    last_record: dict[str, str] = {}

    def collect(output: str, keep_earlier: bool = False) -> None:
        """Add a job's printed series; with ``keep_earlier`` the steps an earlier job printed
        stay as it printed them (a restart job's first step is the last job's last, and at
        the end of a resonant drive only the last job printed it with the field still on,
        E(T) = E0 sin(wT), as rtml's field is defined)."""
        nonlocal nwchem_origin_shift
        parsed = parse_rt_output(output)
        if nwchem_origin_shift is None:
            # dipole about O_nuc = dipole about NWChem's centre of mass + Q (O_com - O_nuc)
            nwchem_origin_shift = mol.charge * (parsed.dipole_origin - ints.dipole_origin)
        for t, mu, e, f in zip(parsed.time, parsed.dipole, parsed.energy, parsed.field):
            step = int(round(t / dt))
            if keep_earlier and step in series:
                continue
            # NWChem prints no field lines while no field is defined: the field is zero
            series[step] = (mu + nwchem_origin_shift, e, np.nan_to_num(f))

    def harvest(snap: RestartSnapshot) -> int:
        step = int(round(snap.time / dt))
        if abs(snap.time - step * dt) > 1e-6 * max(1.0, dt):
            raise InputError(f"NWChem restart record holds t={snap.time}, not a multiple of "
                             f"dt={dt}")
        if harvest_density and step % save_every == 0:
            # a restart job first re-saves the density it loaded: keep the first copy
            frames.setdefault(step, hermitian_density(snap.density[:, perm][:, :, perm]))
        return step

    def on_record(text: str) -> None:
        step = harvest(parse_rt_restart(text, "NWChem restart record"))
        last_record.update(text=text, step=step)
        if progress is not None:
            progress(step)

    try:
        deck = write_rt_tddft_input(mol, xc, Field("none"), dt, tmax_for_last_print(0.0, dt),
                                    name=name, directory=str(workdir), start=True,
                                    grid_level=grid_level, interpol_tol=interpol_tol)
        collect(run_nwchem(deck, workdir, name, ranks))
        ground_state_energy = float(series[0][1])
        snap0 = read_rt_restart(restart)
        if field.is_kick and field.amplitude != 0.0:
            kicked = kick_density(snap0.density, field.kick_vector, ints.overlap[np.ix_(perm, perm)],
                                  ints.dipole_ints[:, perm][:, :, perm])
            write_rt_restart(restart, snap0.it, snap0.time, kicked)
        initial = restart.read_text()
        harvest(parse_rt_restart(initial, f"restart file '{restart}'"))
        start = 0
        wall = 0.0
        n_jobs = 1
        for end in ends:
            on = field.kind in ("gaussian", "resonant") and not (
                field.kind == "resonant" and start * dt >= field.duration - 1e-9 * dt)
            deck = write_rt_tddft_input(mol, xc, field if on else Field("none"), dt,
                                        tmax_for_last_print(end * dt, dt), name=name,
                                        directory=str(workdir), start=False,
                                        grid_level=grid_level, interpol_tol=interpol_tol)
            t0 = _time.perf_counter()
            output = run_nwchem_streaming(deck, workdir, name, ranks, initial, on_record)
            wall += _time.perf_counter() - t0
            n_jobs += 1
            collect(output, keep_earlier=start > 0)
            if last_record.get("step") != end:
                raise InputError(f"NWChem's last restart record is of step "
                                 f"{last_record.get('step')}, expected {end}")
            initial = last_record["text"]  # the next job starts where this one ended
            start = end
        restart.write_text(initial)
    finally:
        if tmp is not None:
            tmp.cleanup()
    missing = [k for k in range(n_steps + 1) if k not in series]
    if missing:
        raise InputError(f"NWChem output lacks steps {missing[:5]}... of 0..{n_steps}")
    steps = np.arange(n_steps + 1)
    frame_steps = np.arange(0, n_steps + 1, save_every)
    density = np.array([frames[k] for k in frame_steps]) if harvest_density else None
    return NWChemRun(
        time=steps * dt,
        dipole=np.array([series[k][0] for k in steps]),
        energy=np.array([series[k][1] for k in steps]),
        field=np.array([series[k][2] for k in steps]),
        frame_steps=frame_steps,
        density=density,
        density_precision=density_precision(density) if harvest_density else None,
        wall_time_s=wall, n_jobs=n_jobs, ground_state_energy=ground_state_energy)
