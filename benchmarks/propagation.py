"""Propagation throughput: simulated atomic time per wall second, per trajectory, at equal accuracy.

For each molecule (H2O/6-31G/PBE0 by default with 1000 steps of dt 0.2; C2H4 and C6H6
shorter) after a z kick of 1e-4, this measures on the same machine, with the same
molecule, basis, functional, kick, dt and simulated time:

(a) NWChem ``rt_tddft`` (when ``nwchem`` is installed), one MPI rank per core
    (``mpirun -np 2``): wall time of the propagation only (from the "Propagation started"
    line to the last time step, read from its output as it runs);
(b) a naive PySCF loop: Magnus-2 with one predictor and one corrector, each Fock build a
    ``mf.get_veff`` call (plus ``get_k`` of the imaginary density for exact exchange);
(c) rtml with one field, (d) rtml with a batch of 8 fields, each with Magnus-2 at
    ``--magnus2-dt`` (default ``--dt``) and with Magnus-4 at ``--magnus4-dt``, with the
    engine's default corrector (the linear-response model carried between builds) and with
    ``linear`` (one build per step; ``--correctors`` adds ``full``);

and reports simulated a.u. of time per wall second per trajectory, of the time loop alone
and of the whole run (rtml: SCF, linear-response setup and time loop; the naive loop: SCF
and its time loop; NWChem: the whole job, start-up and SCF included), the Fock builds per
step, the energy drift max|E(t) - E(0)| after the kick, the induced-dipole error against a
dt-converged reference (rtml Magnus-4 at ``--reference-dt`` with the full corrector at
pc_tol 1e-12, H2O only unless ``--reference-all``), the one-off SCF and linear-response
setup, the peak RSS of each rtml run, and the time of one batched Fock build against its
floor (libxc alone, the grid GEMMs at BLAS speed, the per-point products of the gradient
terms and the in-core J/K contractions, each timed alone on the same arrays). Ratios are
printed against NWChem and the naive loop, both ways; ``--strong`` adds H2O under a kick of
1e-2 and a Gaussian pulse of E0 0.05 (8 fields, each propagator with the default and the
``linear`` corrector against the field's own dt-converged reference). Everything goes to
``OUT/propagation.csv``, ``OUT/fock_build.csv`` and a plot ``OUT/propagation.png``.

    python benchmarks/propagation.py --out bench_prop                 # full run (~30 min)
    python benchmarks/propagation.py --out /tmp/quick --molecules h2o --time 20 --no-nwchem

Other agents or jobs on the machine distort the numbers: the script prints ``uptime`` load
averages at the start and the end; rerun when they are high.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pyscf import scf
from threadpoolctl import ThreadpoolController

# the checkout's rtml, also in the spawned worker processes (they import this file): the
# path goes first, so the rtml imports follow it
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtml.chem import build_mole, load_molecule  # noqa: E402
from rtml.cli import set_threads  # noqa: E402
from rtml.fields import parse_field  # noqa: E402
from rtml.tddft import (PropagationSettings, SimulationInputs, apply_kicks,  # noqa: E402
                        block_ao_values, build_fock_context, density_on_grid, exp_hermitian,
                        fock_and_energy, libxc_rows, prepare_ground_state, propagate)
from rtml.tddft.nwchem import (nwchem_command, parse_rt_output,  # noqa: E402
                               tmax_for_last_print, write_rt_tddft_input)

KICK = 1e-4
WEAK_KICK = f"kick:{KICK}:z"
#: The issue's strong fields (``--strong``), z-polarised: a kick of 1e-2 and a Gaussian pulse
#: of E0 0.05 at 0.3 Ha (centre 10 au, width 3 au), over once 25 au have passed.
STRONG_FIELDS = ("kick:0.01:z", "gaussian:0.05:0.3:10:3:z")
#: Simulated time (a.u.) per molecule: H2O's is the issue's 1000 steps of dt 0.2.
DEFAULT_TIME = {"h2o": 200.0, "c2h4": 40.0, "c6h6": 10.0}
#: The naive loop is slow: it runs this fraction of the simulated time (rate is per second).
NAIVE_FRACTION = 0.1
BATCH = 8


# ---------------------------------------------------------------------------------------
# (a) NWChem
# ---------------------------------------------------------------------------------------

def nwchem_deck(spec, dt: float, sim_time: float) -> str:
    """NWChem deck of the engine's writer (``rtml.tddft.nwchem.write_rt_tddft_input``):
    ground-state DFT, then ``rt_tddft`` after NWChem's own delta kick along z, NWChem's
    default grid (medium) and Magnus tolerance (1e-7), dipole and energy every step, no
    restart files."""
    return write_rt_tddft_input(build_mole(spec), spec.xc, parse_field(f"kick:{KICK}:z"), dt,
                                tmax_for_last_print(sim_time, dt), name="bench", grid_level=2,
                                interpol_tol=1e-7, restart_every_step=False, delta_kick=True)


def run_nwchem_rt_tddft(deck_text: str, workdir: Path, nproc: int = 2) -> dict:
    """Run the deck on NPROC MPI ranks (``rtml.tddft.nwchem.nwchem_command``); time the
    propagation.

    The propagation wall time runs from the "Propagation started" line to the last
    ``<rt_tddft>`` line, both stamped as NWChem prints them (its stdout is a pipe read line
    by line, so setup and SCF are excluded); the series come from
    ``rtml.tddft.nwchem.parse_rt_output``.

    Returns:
        dict with ``wall_s`` (propagation), ``total_s``, ``time`` (n,), ``energy`` (n,),
        ``dipole`` (n, 3).
    """
    deck = workdir / "bench.nw"
    deck.write_text(deck_text)
    start = time.perf_counter()
    t_start = t_last = None
    lines = []
    with subprocess.Popen(nwchem_command(deck, nproc), cwd=workdir, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        for line in proc.stdout:
            lines.append(line)
            if "Propagation started" in line:
                t_start = time.perf_counter()
            elif line.startswith("<rt_tddft>"):
                t_last = time.perf_counter()
    deck.with_suffix(".out").write_text("".join(lines))
    if proc.returncode != 0 or t_start is None:
        raise RuntimeError(f"nwchem failed (exit {proc.returncode}); see {deck.with_suffix('.out')}")
    out = parse_rt_output("".join(lines))
    return {"wall_s": t_last - t_start, "total_s": time.perf_counter() - start,
            "time": out.time, "energy": out.energy, "dipole": out.dipole}


# ---------------------------------------------------------------------------------------
# (b) naive PySCF loop, (c)/(d) rtml: each in a fresh process (own peak RSS, threads)
# ---------------------------------------------------------------------------------------

def _ground_state(molecule: str, grid_level: int, field: str = WEAK_KICK):
    inputs = SimulationInputs(molecule=load_molecule(molecule), fields=[parse_field(field)],
                              settings=PropagationSettings(dt=0.1, n_steps=1), grid_level=grid_level)
    gs, _ = prepare_ground_state(inputs)
    return gs


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def rtml_worker(molecule: str, grid_level: int, n_fields: int, propagator: str, dt: float,
                sim_time: float, pc_tol: float, threads: int, max_memory_mb: float,
                corrector: str = "default", field: str = WEAK_KICK) -> dict:
    """rtml batched propagation of ``n_fields`` copies of ``field`` (identical members, timed
    per step; the SCF and the linear-response model, once per geometry, are timed apart as
    ``scf_s`` and ``setup_s``). ``corrector``: "default" (the engine's own setting), "carry",
    "linear" (no carrying) or "full"."""
    set_threads(threads)
    start = time.perf_counter()
    gs = _ground_state(molecule, grid_level, field)
    if max_memory_mb != gs.context.max_memory_mb:
        gs.context = build_fock_context(gs.context.mol, gs.context.xc, gs.context.nspin,
                                        gs.mf.grids, max_memory_mb=max_memory_mb)
    scf_s = time.perf_counter() - start
    fields = [parse_field(field)] * n_fields
    chosen = {"default": {}, "carry": {"carry_model": True},
              "linear": {"carry_model": False}, "full": {"linear_corrector": False}}[corrector]
    settings = PropagationSettings(dt=dt, n_steps=int(round(sim_time / dt)), propagator=propagator,
                                   pc_tol=pc_tol, **chosen)
    frames, stats = propagate(gs, fields, settings)
    return {"wall_s": stats["wall_time_s"], "builds_per_step": stats["builds_per_step"],
            "setup_s": stats["response_setup_s"], "scf_s": scf_s,
            "time": frames["time"], "energy": frames["energy"][:, 0],
            "dipole": frames["dipole"][:, 0], "peak_rss_mb": _peak_rss_mb(),
            "npoints": sum(len(b.weights) for b in gs.context.grid_blocks), "nao": gs.context.nao}


def naive_worker(molecule: str, grid_level: int, dt: float, sim_time: float, threads: int) -> dict:
    r"""Magnus-2 predictor-corrector in the Löwdin basis, two ``mf.get_veff`` builds per step.

    Predictor :math:`F'(t+\Delta t) \approx 2F'(t) - F'(t-\Delta t)`, one corrector with the
    Fock matrix of the predicted density; the accepted end-point Fock matrix is rebuilt from
    the corrected density (it is the next step's start).
    """
    set_threads(threads)
    start = time.perf_counter()
    gs = _ground_state(molecule, grid_level)
    scf_s = time.perf_counter() - start
    ctx, mf = gs.context, gs.mf
    mol = ctx.mol
    c_x = mf._numint.rsh_and_hybrid_coeff(mf.xc, spin=mol.spin)[2]
    x, x_inv = ctx.orth, ctx.orth_inv

    def fock_energy(p_orth):
        p = x @ p_orth @ x
        veff = mf.get_veff(mol, p.real)  # one build; its tags carry E_coul and E_xc
        fock = mf.get_hcore() + veff
        energy = mf.energy_tot(dm=p.real, vhf=veff)
        if c_x != 0.0:  # exact exchange of the antisymmetric imaginary part
            k_imag = mf.get_k(mol, p.imag, hermi=2)
            fock = fock - 0.5j * c_x * k_imag
            energy += 0.25 * c_x * np.einsum("ij,ji", k_imag, p.imag)
        return x @ fock @ x, float(np.real(energy))

    p = (x_inv @ gs.density[0] @ x_inv).astype(complex)
    p = apply_kicks(ctx, p[None, None], [parse_field(f"kick:{KICK}:z")])[0, 0]
    fock, energy = fock_energy(p)
    fock_prev = fock
    n_steps = max(int(round(sim_time / dt)), 2)
    times, energies, dipoles = [0.0], [energy], [_dipole(ctx, x @ p @ x)]
    start = time.perf_counter()
    for step in range(n_steps):
        fock_pred = 2.0 * fock - fock_prev
        for _ in range(2):  # predictor, then one corrector
            u = exp_hermitian(0.5 * (fock + fock_pred), dt)
            p_next = u @ p @ u.conj().T
            fock_pred, energy = fock_energy(p_next)
        fock_prev, fock, p = fock, fock_pred, p_next
        times.append((step + 1) * dt)
        energies.append(energy)
        dipoles.append(_dipole(ctx, x @ p @ x))
    wall = time.perf_counter() - start
    return {"wall_s": wall, "scf_s": scf_s, "builds_per_step": 2.0, "time": np.array(times),
            "energy": np.array(energies), "dipole": np.array(dipoles), "peak_rss_mb": _peak_rss_mb()}


def _dipole(ctx, p_ao):
    return -np.einsum("xij,ji->x", ctx.dipole_ints, p_ao).real + ctx.nuclear_dipole


def fock_floor_worker(molecule: str, grid_level: int, n_fields: int, threads: int,
                      repeats: int = 7) -> dict:
    """Time one batched Fock build against its floor on the same arrays.

    Floor = the build's heavy calls, each timed alone: libxc (the same ``eval_xc`` calls
    as the build, on the batch's densities on the grid), the two grid GEMMs per block (AO
    values times the stacked densities, AO values transposed times the weighted AO values)
    at BLAS speed, the two per-point batched products of the gradient terms (``matmul``
    of (ndm x nao) by (nao x 4) and (ndm x 4) by (4 x nao) at every point), and the
    in-core J/K contractions (PySCF's ``dot_eri_dm``, real and imaginary parts).
    """
    set_threads(threads)
    gs = _ground_state(molecule, grid_level)
    ctx = gs.context
    rng = np.random.default_rng(0)
    nao = ctx.nao
    dm = np.repeat(gs.density[None], n_fields, axis=0).astype(complex)
    noise = rng.normal(size=dm.shape) * 1e-4
    dm = dm + noise + noise.swapaxes(-1, -2)
    nb, nspin = dm.shape[:2]
    ndm = nb * nspin

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    build = best(lambda: fock_and_energy(ctx, dm))
    flat = dm.real.reshape(ndm, nao, nao)
    blocks = []
    for block in ctx.grid_blocks:
        ao, ao_value = block_ao_values(ctx, block)
        idx = block.ao_index
        sub = np.ascontiguousarray(flat[:, idx[:, None], idx])
        rho = density_on_grid(ao, ao_value, sub, ctx.xctype)  # (ng, ndm, nvar)
        rho = rho.reshape(-1, nspin, rho.shape[-1])
        rho_xc = libxc_rows(rho, nspin, ctx.xctype)
        stacked = np.ascontiguousarray(sub.transpose(1, 0, 2).reshape(len(idx), -1))
        ng = len(block.weights)
        aow = rng.normal(size=(ng, ndm * len(idx)))
        per_point = (rng.normal(size=(ng, ndm, len(idx))), rng.normal(size=(ng, ndm, 4)), ao)
        blocks.append((rho_xc, ao_value, stacked, aow, per_point))
    blas = ThreadpoolController()  # built once: building one inspects every loaded library

    def libxc_only():
        for rho_xc, *_ in blocks:
            ctx.numint.eval_xc(ctx.xc, rho_xc, spin=nspin - 1, deriv=1)

    def gemms_only():
        for _, ao_value, stacked, aow, _ in blocks:
            ao_value @ stacked
            ao_value.T @ aow

    def point_products_only():
        if ctx.xctype == "LDA":
            return
        # one BLAS thread: the fastest setting for these tiny products (as in the build)
        with blas.limit(limits=1, user_api="blas"):
            for *_, (c0, half, ao) in blocks:
                np.matmul(c0, ao[:, :4].transpose(0, 2, 1))
                np.matmul(half, ao[:, :4])

    real = np.ascontiguousarray(dm.real)

    def jk_only():
        scf.hf.dot_eri_dm(ctx.eri, real.sum(axis=1), hermi=1, with_k=False)
        if ctx.has_exact_exchange:
            stacked_dm = np.concatenate([dm.real, dm.imag]).reshape(-1, nao, nao)
            scf.hf.dot_eri_dm(ctx.eri, stacked_dm, hermi=0, with_j=False)

    libxc = best(libxc_only)
    gemm = best(gemms_only)
    points = best(point_products_only)
    jk = best(jk_only)
    return {"build_s": build, "libxc_s": libxc, "gemm_s": gemm, "point_products_s": points,
            "jk_s": jk, "n_fields": n_fields,
            "npoints": sum(len(b.weights) for b in ctx.grid_blocks), "nao": nao}


def in_process(fn, *args) -> dict:
    """Run ``fn(*args)`` in a fresh spawned process (clean peak RSS, own thread settings)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return pool.apply(fn, args)


# ---------------------------------------------------------------------------------------
# accuracy and reporting
# ---------------------------------------------------------------------------------------

def energy_drift(result: dict, field: str = WEAK_KICK) -> float:
    """max |E(t) - E(t_off)| over the frames after the field is off (a kick: all of them),
    t_off the first of them (a.u.)."""
    times, energy = np.asarray(result["time"]), np.asarray(result["energy"])
    f = parse_field(field)
    scale = abs(f.amplitude) or 1.0
    on = np.array([not f.is_kick and abs(f.envelope(t)) > 1e-10 * scale for t in times])
    after = np.flatnonzero(~on & (np.cumsum(on[::-1])[::-1] == 0))  # off, and never on again
    if len(after) == 0:
        return float("nan")
    return float(np.abs(energy[after] - energy[after[0]]).max())


def dipole_error(result: dict, reference: dict | None) -> float:
    """max_t |mu_z(t) - mu_z(0) - (ref(t) - ref(0))| at the common times (a.u.)."""
    if reference is None:
        return float("nan")
    ref_t, ref_mu = reference["time"], reference["dipole"][:, 2] - reference["dipole"][0, 2]
    mu = result["dipole"][:, 2] - result["dipole"][0, 2]
    index = {round(t, 6): i for i, t in enumerate(ref_t)}
    pairs = [(i, index[round(t, 6)]) for i, t in enumerate(result["time"]) if round(t, 6) in index]
    if not pairs:
        return float("nan")
    mine, theirs = zip(*pairs)
    return float(np.abs(mu[list(mine)] - ref_mu[list(theirs)]).max())


#: Simulated time (a.u.) of the ``--strong`` runs unless ``--time`` is given.
STRONG_TIME = 40.0


def propagator_dt(args, propagator: str) -> float:
    """rtml's dt for ``propagator``: ``--magnus4-dt`` for Magnus-4, else ``--magnus2-dt``
    (default ``--dt``)."""
    return args.magnus4_dt if propagator == "magnus4" else (args.magnus2_dt or args.dt)


def _suffix(corrector: str) -> str:
    """Method-name suffix: nothing for the engine's default corrector."""
    return "" if corrector == "default" else f" {corrector}"


def dt_converged_reference(args, molecule: str, sim_time: float, field: str,
                           propagator: str = "magnus4", dt: float | None = None) -> dict:
    """rtml ``propagator`` at ``dt`` (default ``--reference-dt``) with the full corrector at
    pc_tol 1e-12 (cached in ``--reference-cache``)."""
    dt = dt or args.reference_dt
    tag = field.replace(":", "_")
    cache = (Path(args.reference_cache) / f"{molecule}-{tag}-{propagator}-dt{dt}"
             f"-T{sim_time}-grid{args.grid_level}.npz") if args.reference_cache else None
    if cache is not None and cache.exists():
        reference = dict(np.load(cache))
    else:
        reference = in_process(rtml_worker, molecule, args.grid_level, 1, propagator, dt,
                               sim_time, 1e-12, args.threads, args.max_memory_mb, "full", field)
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, time=reference["time"], dipole=reference["dipole"],
                     energy=reference["energy"], wall_s=reference["wall_s"])
    print(f"{molecule} {field}: reference {propagator} dt {dt}: "
          f"{float(reference['wall_s']):.1f} s", flush=True)
    return reference


def result_row(molecule, field, method, res, n_fields, dt, reference, args) -> dict:
    """One CSV row: rates per trajectory without and with the one-off setup.

    ``au_per_s_per_traj`` divides by the time loop alone (NWChem: "Propagation started" to
    its last step); ``au_per_s_per_traj_setup`` by the whole run: rtml's SCF, linear-response
    setup and time loop, the naive loop's SCF plus its time loop scaled to the full time,
    NWChem's whole job (start-up, SCF, propagation)."""
    simulated = res["time"][-1] - res["time"][0]
    if "nwchem" in method:
        whole = res["total_s"]
    elif method == "naive pyscf":
        whole = res["scf_s"] + res["wall_s"] / NAIVE_FRACTION
    else:
        whole = res["scf_s"] + res["setup_s"] + res["wall_s"]
    full_time = simulated / NAIVE_FRACTION if method == "naive pyscf" else simulated
    row = {"molecule": molecule, "field": field, "method": method, "n_traj": n_fields, "dt": dt,
           "simulated_au": simulated, "wall_s": round(res["wall_s"], 3),
           "au_per_s_per_traj": n_fields * simulated / res["wall_s"],
           "au_per_s_per_traj_setup": n_fields * full_time / whole,
           "builds_per_step": res.get("builds_per_step", float("nan")),
           "scf_s": round(res.get("scf_s", float("nan")), 3),
           "setup_s": round(res.get("setup_s", 0.0), 3),
           "energy_drift_ha": energy_drift(res, field),
           "dipole_error_au": dipole_error(res, reference) if "nwchem" not in method else float("nan"),
           "peak_rss_mb": res.get("peak_rss_mb", float("nan")), "threads": args.threads}
    print(f"{molecule:5s} {field:24s} {method:23s} {row['au_per_s_per_traj']:9.3f} au/s/traj "
          f"({row['au_per_s_per_traj_setup']:8.3f} with setup)  "
          f"builds/step {row['builds_per_step']:.3f}  scf {row['scf_s']:.1f} s  "
          f"setup {row['setup_s']:.1f} s  drift {row['energy_drift_ha']:.1e} Ha  "
          f"dipole err {row['dipole_error_au']:.1e}  peak RSS {row['peak_rss_mb']:.0f} MB",
          flush=True)
    return row


def print_ratios(rows: list[dict], molecule: str, field: str, nwchem_ranks: int) -> None:
    """rtml's rates over NWChem's and the naive loop's, time loop alone and whole run."""
    mine = [r for r in rows if r["molecule"] == molecule and r["field"] == field]
    for base in (f"nwchem np{nwchem_ranks}", "naive pyscf"):
        ref = next((r for r in mine if r["method"] == base), None)
        if ref is None:
            continue
        for r in mine:
            if r["method"].startswith("rtml"):
                print(f"{molecule}: {r['method']} / {base} = "
                      f"{r['au_per_s_per_traj'] / ref['au_per_s_per_traj']:.1f}x "
                      f"(setup included: "
                      f"{r['au_per_s_per_traj_setup'] / ref['au_per_s_per_traj_setup']:.1f}x)")


def strong_rows(args, molecule: str, sim_time: float, rows: list[dict]) -> None:
    """The issue's strong fields: each propagator at its dt, default corrector against
    ``linear`` (one build per step), dipole error against each field's own dt-converged
    reference: is the accuracy unchanged, and what is the speed.

    The reference is Magnus-2 at ``--strong-reference-dt``, time reversible: Magnus-4's
    Gauss-point Fock matrices come from a cubic through past steps, which is not, and after
    a 1e-2 kick its energy drifts by 1e-5 Eh within 140 au even at dt 0.05 (the engine stops
    there)."""
    for field in STRONG_FIELDS:
        reference = dt_converged_reference(args, molecule, sim_time, field, "magnus2",
                                           args.strong_reference_dt)
        for propagator in args.propagators.split(","):
            dt = propagator_dt(args, propagator)
            for corrector in ("default", "linear"):
                method = f"rtml {propagator} x{BATCH}{_suffix(corrector)}"
                try:
                    res = in_process(rtml_worker, molecule, args.grid_level, BATCH, propagator,
                                     dt, sim_time, args.pc_tol, args.threads,
                                     args.max_memory_mb, corrector, field)
                except Exception as err:  # noqa: BLE001 - a failed run is a result here
                    print(f"{molecule:5s} {field:24s} {method:23s} FAILED: {err}", flush=True)
                    continue
                rows.append(result_row(molecule, field, method, res, BATCH, dt, reference,
                                       args))


def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def plot(rows: list[dict], path: Path) -> None:
    """Bars of simulated a.u. per wall second per trajectory, per molecule and method: the
    time loop alone (full bar) and the whole run, SCF and setup included (black inner bar)."""
    import matplotlib  # heavy, and only for the plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    molecules = list(dict.fromkeys(r["molecule"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(5.0 + 1.6 * len(molecules) * len(methods) / 3, 4.2))
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        xs, loop, whole, dts = [], [], [], []
        for i, mol in enumerate(molecules):
            for r in rows:
                if r["molecule"] == mol and r["method"] == method:
                    xs.append(i + j * width)
                    loop.append(float(r["au_per_s_per_traj"]))
                    whole.append(float(r["au_per_s_per_traj_setup"]))
                    dts.append(float(r["dt"]))
        ax.bar(xs, loop, width, label=f"{method} (dt {dts[0]:g})")
        ax.bar(xs, whole, 0.35 * width, color="black", alpha=0.6)
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles.append(Patch(color="black", alpha=0.6, label="inner bar: SCF and setup included"))
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(molecules))], molecules)
    ax.set_yscale("log")
    ax.set_ylabel("simulated a.u. per wall second per trajectory")
    ax.set_title("after a 1e-4 kick; rtml without a suffix: the engine's default corrector",
                 fontsize=8)
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=120)
    os.replace(tmp, path)


def write_csv(rows: list[dict], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (CSV files and plot)")
    parser.add_argument("--molecules", default="h2o,c2h4,c6h6")
    parser.add_argument("--time", type=float, default=None,
                        help="simulated time (a.u.) for every molecule (default: per molecule)")
    parser.add_argument("--dt", type=float, default=0.2, help="NWChem and naive dt")
    parser.add_argument("--magnus2-dt", type=float, default=None,
                        help="rtml Magnus-2 (and ETRS) dt (default: --dt)")
    parser.add_argument("--magnus4-dt", type=float, default=0.5)
    parser.add_argument("--reference-dt", type=float, default=0.05)
    parser.add_argument("--reference-all", action="store_true",
                        help="dipole reference for every molecule (default H2O only)")
    parser.add_argument("--pc-tol", type=float, default=1e-9)
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads of the PySCF/rtml runs")
    parser.add_argument("--nwchem-ranks", type=int, default=2, help="MPI ranks of NWChem")
    parser.add_argument("--reference-cache", default=None,
                        help="directory keeping the dt-converged references between runs")
    parser.add_argument("--max-memory-mb", type=float, default=2000.0)
    parser.add_argument("--propagators", default="magnus2,magnus4",
                        help="rtml propagators to time (magnus2 at --dt, magnus4 at --magnus4-dt)")
    parser.add_argument("--correctors", default="default,linear",
                        help="rtml correctors to time, comma-separated: default (the engine's "
                             "own, carry), carry (the linear model carried between builds), "
                             "linear (one build per step), full")
    parser.add_argument("--strong", action="store_true",
                        help="also H2O under the strong fields (kick 1e-2, Gaussian E0 0.05), "
                             "8 fields, default corrector against linear, each against its "
                             "own dt-converged reference")
    parser.add_argument("--strong-only", action="store_true",
                        help="only the --strong rows (H2O)")
    parser.add_argument("--strong-reference-dt", type=float, default=0.025,
                        help="dt of the strong fields' Magnus-2 reference")
    parser.add_argument("--no-nwchem", action="store_true")
    parser.add_argument("--no-naive", action="store_true")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    have_nwchem = not args.no_nwchem and shutil.which("nwchem") and shutil.which("mpirun")
    print(f"load average at start: {load_average()} ({os.cpu_count()} cores)", flush=True)

    rows, fock_rows = [], []
    for molecule in args.molecules.split(","):
        spec = load_molecule(molecule)
        sim_time = args.time or DEFAULT_TIME.get(molecule, 20.0)
        common = (molecule, args.grid_level)
        reference = None
        if args.strong_only:
            strong_rows(args, molecule, args.time or STRONG_TIME, rows)
            write_csv(rows, out / "propagation.csv")
            continue
        if molecule == "h2o" or args.reference_all:
            reference = dt_converged_reference(args, molecule, sim_time, WEAK_KICK)
        results = {}
        if have_nwchem:
            with tempfile.TemporaryDirectory(prefix="rtml-nwchem-") as tmp:
                results[f"nwchem np{args.nwchem_ranks}"] = (
                    run_nwchem_rt_tddft(nwchem_deck(spec, args.dt, sim_time), Path(tmp),
                                        args.nwchem_ranks), 1, args.dt)
        if not args.no_naive:
            results["naive pyscf"] = (in_process(naive_worker, *common, args.dt,
                                                 NAIVE_FRACTION * sim_time, args.threads), 1, args.dt)
        for propagator in args.propagators.split(","):
            dt = propagator_dt(args, propagator)
            for corrector in args.correctors.split(","):
                for n_fields in (1, BATCH):
                    results[f"rtml {propagator} x{n_fields}{_suffix(corrector)}"] = (
                        in_process(rtml_worker, *common, n_fields, propagator, dt, sim_time,
                                   args.pc_tol, args.threads, args.max_memory_mb,
                                   corrector), n_fields, dt)
        for method, (res, n_fields, dt) in results.items():
            rows.append(result_row(molecule, WEAK_KICK, method, res, n_fields, dt, reference, args))
        print_ratios(rows, molecule, WEAK_KICK, args.nwchem_ranks)
        if args.strong and molecule == "h2o":
            strong_rows(args, molecule, STRONG_TIME, rows)
        floor = in_process(fock_floor_worker, *common, BATCH, args.threads)
        floor_s = floor["libxc_s"] + floor["gemm_s"] + floor["point_products_s"] + floor["jk_s"]
        fock_rows.append({"molecule": molecule, **floor, "floor_s": floor_s,
                          "build_over_floor": floor["build_s"] / floor_s})
        print(f"{molecule}: one Fock build of {BATCH} densities ({floor['npoints']} points, nao "
              f"{floor['nao']}): {1e3 * floor['build_s']:.1f} ms; floor {1e3 * floor_s:.1f} ms "
              f"(libxc {1e3 * floor['libxc_s']:.1f} + grid GEMMs {1e3 * floor['gemm_s']:.1f} + "
              f"per-point products {1e3 * floor['point_products_s']:.1f} + J/K "
              f"{1e3 * floor['jk_s']:.1f}); build/floor = {fock_rows[-1]['build_over_floor']:.2f}",
              flush=True)
        write_csv(rows, out / "propagation.csv")
        write_csv(fock_rows, out / "fock_build.csv")
        plot([r for r in rows if r["field"] == WEAK_KICK], out / "propagation.png")
    print(f"load average at end: {load_average()}")
    print(f"wrote {out / 'propagation.csv'}, {out / 'fock_build.csv'}, {out / 'propagation.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
