"""The ``rtml`` command line: propagate, spectrum, validate, excitations, ladder.

Every user error ends with one line ``rtml: error: ...`` on stderr and exit status 2, and
leaves nothing at the output path. ``rtml validate`` exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from pathlib import Path

import numpy as np

from rtml import __version__
from rtml._atomic import atomic_write
from rtml._errors import InputError, RtmlError
from rtml.units import HARTREE_EV

log = logging.getLogger("rtml")

EXIT_USER_ERROR = 2
EXIT_VALIDATION_FAILED = 1


# ---------------------------------------------------------------------------- propagate
def _check_output(out: Path, force: bool) -> None:
    empty_dir = out.is_dir() and not any(out.iterdir())  # pre-created by a workflow manager
    if out.exists() and not force and not empty_dir:
        raise InputError(f"output '{out}' exists; remove it or pass --force")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create output directory '{out.parent}': {err.strerror}") from None
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"output directory '{out.parent}' is not writable")


def _replace_path(tmp: Path, out: Path) -> None:
    """Move a finished file or directory into place, replacing an older one."""
    if out.is_dir() and not out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def _set_threads(threads: int | None) -> None:
    """Give PySCF's OpenMP and NumPy's BLAS this many threads (the job's cores)."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    from pyscf import lib
    from threadpoolctl import threadpool_limits

    lib.num_threads(threads)
    threadpool_limits(threads)


def _load_geometry(spec, path):
    """Positions and geometry id from a geometry file that must match the molecule's atoms."""
    from rtml.chem import read_geometry

    symbols, positions, info = read_geometry(path)
    if [s.lower() for s in symbols] != [s.lower() for s in spec.symbols]:
        raise InputError(f"geometry '{path}' has atoms {' '.join(symbols)} but "
                         f"{spec.name} has {' '.join(spec.symbols)} (same order required)")
    return positions, str(info.get("sample_id", info.get("id", Path(path).stem)))


def cmd_propagate(args) -> int:
    from rtml.chem import load_molecule
    from rtml.data import read_ground_state
    from rtml.fields import parse_field
    from rtml.tddft import PropagationSettings, SimulationInputs, simulate
    from rtml.tddft._simulate import prepare_ground_state
    from rtml._progress import Progress

    # validate everything cheap before any SCF
    _set_threads(args.threads)
    spec = load_molecule(args.molecule)
    fields = [parse_field(s) for s in args.field]
    settings = PropagationSettings(dt=args.dt, n_steps=args.steps, propagator=args.propagator,
                                   save_every=args.save_every, pc_tol=args.pc_tol,
                                   linear_corrector=args.corrector == "linear",
                                   checkpoint_every=args.checkpoint_every)
    positions, geometry_id = None, "eq"
    if args.geometry:
        positions, geometry_id = _load_geometry(spec, args.geometry)
    if not 0 <= args.grid_level <= 9:
        raise InputError(f"grid level must be 0-9, got {args.grid_level}")
    saved = read_ground_state(args.ground_state) if args.ground_state else None
    as_directory = args.output_dir is not None or len(fields) > 1
    out = Path(args.output_dir if args.output_dir is not None else args.output)
    _check_output(out, args.force)
    inputs = SimulationInputs(molecule=spec, fields=fields, settings=settings,
                              positions_angstrom=positions, basis=args.basis, xc=args.xc,
                              grid_level=args.grid_level, geometry_id=geometry_id)
    log.info("rtml %s propagate: %s (%s), xc=%s, basis=%s, grid level %d, %d field(s): %s",
             __version__, spec.name, geometry_id, inputs.xc_name, inputs.basis_name,
             args.grid_level, len(fields), " ".join(f.to_spec() for f in fields))
    log.info("dt=%g au, %d steps (%g au), save every %d, propagator %s, pc_tol %g, %s corrector",
             settings.dt, settings.n_steps, settings.dt * settings.n_steps, settings.save_every,
             settings.propagator, settings.pc_tol, args.corrector)

    if args.engine == "nwchem":
        return _propagate_nwchem(args, inputs, saved, out, as_directory, fields)
    if args.engine == "model":
        return _propagate_model(args, inputs, saved, out, as_directory, fields)
    if args.model is not None:
        raise InputError("--model is only used with --engine model")
    gs, resolved = prepare_ground_state(inputs, scf_max_cycle=args.scf_max_cycle, saved=saved)
    inputs.fields = resolved
    checkpoint_dir = out.with_name(out.name + ".ckpt")
    progress = Progress(settings.n_steps, f"propagate {spec.name}", enabled=not args.quiet)
    try:
        trajectories = simulate(inputs, checkpoint_dir=checkpoint_dir, progress=progress,
                                ground_state=gs)
    except RtmlError:
        # a deterministic failure would recur on resume: drop the checkpoint
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
        raise
    finally:
        progress.close()

    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return _write_trajectories(trajectories, fields, out, as_directory)


def _write_trajectories(trajectories, fields, out: Path, as_directory: bool) -> int:
    """Write one file, or a directory of t<NN>-<spec>.h5 files, atomically; print paths."""
    from rtml.data import trajectory_file_name, write_trajectory

    if not as_directory:
        if out.is_dir():  # --force over an earlier multi-field output
            _write_one_replacing(out, trajectories[0])
        else:
            write_trajectory(out, trajectories[0])
        written = [out]
    else:
        tmp_dir = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        try:
            tmp_dir.mkdir()
            names = [trajectory_file_name(i, f.to_spec()) for i, f in enumerate(fields)]
            for name, traj in zip(names, trajectories):
                write_trajectory(tmp_dir / name, traj)
            _replace_path(tmp_dir, out)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        written = [out / name for name in names]
    for path in written:
        print(path)
    return 0


def _propagate_model(args, inputs, saved, out: Path, as_directory: bool, fields) -> int:
    """``rtml propagate --engine model``: the ground state by SCF, then the trained model."""
    from rtml._progress import Progress
    from rtml.model import load_model
    from rtml.model._engine import model_sha256, propagate_model
    from rtml.tddft import basis_metadata
    from rtml.tddft._simulate import prepare_ground_state, trajectory_record

    if args.model is None:
        raise InputError("--engine model needs --model MODEL_DIR (a directory from rtml train)")
    propagator, state = load_model(args.model)
    gs, resolved = prepare_ground_state(inputs, scf_max_cycle=args.scf_max_cycle, saved=saved)
    inputs.fields = resolved
    settings = inputs.settings
    progress = Progress(settings.n_steps, f"model {inputs.molecule.name}", enabled=not args.quiet)
    try:
        frames, stats = propagate_model(gs, resolved, settings, propagator, progress=progress)
    finally:
        progress.close()
    log.info("model rollout: %d steps x %d fields, %.4f s/step", settings.n_steps, len(resolved),
             stats["wall_time_per_step_s"])
    basis = basis_metadata(gs.context.mol)
    record = {"model_sha256": model_sha256(args.model), "model_dir": str(Path(args.model).resolve()),
              "model_config": state.get("config", {})}
    trajectories = [trajectory_record(inputs, gs, basis, f, b, frames, stats, engine="model",
                                      propagator="model-magnus2-pc", engine_provenance=record)
                    for b, f in enumerate(resolved)]
    return _write_trajectories(trajectories, fields, out, as_directory)


def _propagate_nwchem(args, inputs, saved, out: Path, as_directory: bool, fields) -> int:
    """``rtml propagate --engine nwchem``: one NWChem job per field, MPI ranks = --threads."""
    from rtml._progress import Progress
    from rtml.tddft._simulate import prepare_ground_state
    from rtml.tddft import simulate
    from rtml.tddft.nwchem import nwchem_available, nwchem_xc
    from rtml.tddft.nwchem._run import UNAVAILABLE_MESSAGE, NWChemUnavailable

    if not nwchem_available():
        raise NWChemUnavailable(f"engine 'nwchem' is unavailable: {UNAVAILABLE_MESSAGE} "
                                "(apt-get install nwchem openmpi-bin, or use --engine pyscf)")
    nwchem_xc(inputs.xc_name)
    if any(not f.is_resolved for f in inputs.fields):  # S<n>/B<n>/auto need PySCF LR-TDDFT
        _, inputs.fields = prepare_ground_state(inputs, scf_max_cycle=args.scf_max_cycle,
                                                saved=saved)
    settings = inputs.settings
    progress = Progress(settings.n_steps * len(inputs.fields), f"nwchem {inputs.molecule.name}",
                        enabled=not args.quiet)
    try:
        trajectories = simulate(inputs, progress=progress, engine="nwchem",
                                ranks=args.threads or 1)
    finally:
        progress.close()
    return _write_trajectories(trajectories, fields, out, as_directory)


# ---------------------------------------------------------------------------- import-nwchem
def cmd_import_nwchem(args) -> int:
    from rtml.chem import load_molecule
    from rtml.data import write_trajectory
    from rtml.fields import parse_field
    from rtml.tddft.nwchem import import_nwchem

    spec = load_molecule(args.molecule)
    positions = None
    if args.geometry:
        positions, _ = _load_geometry(spec, args.geometry)
    field = parse_field(args.field) if args.field else None
    out = Path(args.output)
    _check_output(out, args.force)
    traj = import_nwchem(args.outputs, spec, restarts=args.restart or (), basis=args.basis,
                         xc=args.xc, field=field, positions_angstrom=positions,
                         geometry=args.nwchem_geometry)
    if out.exists():
        _write_one_replacing(out, traj)
    else:
        write_trajectory(out, traj)
    log.info("imported %d frames (dt %g au, density: %s)", traj.n_steps, traj.dt,
             traj.extra_attrs["density_source"])
    print(out)
    return 0


# ---------------------------------------------------------------------------- ground-state
def cmd_ground_state(args) -> int:
    from rtml._provenance import inputs_hash, provenance
    from rtml.chem import load_molecule
    from rtml.data import GroundStateRecord, write_ground_state
    from rtml.fields import Field
    from rtml.tddft import PropagationSettings, SimulationInputs, excitation_energies
    from rtml.tddft._simulate import prepare_ground_state

    _set_threads(args.threads)
    spec = load_molecule(args.molecule)
    positions, geometry_id = (None, "eq") if not args.geometry else _load_geometry(spec, args.geometry)
    out = Path(args.output)
    _check_output(out, args.force)
    inputs = SimulationInputs(molecule=spec, fields=[Field("none")],
                              settings=PropagationSettings(dt=1.0, n_steps=1),
                              positions_angstrom=positions, basis=args.basis, xc=args.xc,
                              grid_level=args.grid_level, geometry_id=geometry_id)
    gs, _ = prepare_ground_state(inputs, scf_max_cycle=args.scf_max_cycle)
    exc = excitation_energies(gs, nstates=args.nstates)
    hashed = inputs.hash_dict([])
    hashed.pop("settings")
    hashed["nstates"] = args.nstates
    record = GroundStateRecord(
        molecule=spec.name, atomic_numbers=gs.context.mol.atom_charges(),
        positions_angstrom=inputs.positions, charge=spec.charge, multiplicity=spec.multiplicity,
        basis=inputs.basis_name, xc=inputs.xc_name, grid_level=args.grid_level, energy=gs.energy,
        dipole=gs.dipole, dipole_origin_bohr=gs.context.dipole_origin,
        commutator_norm=gs.commutator_norm, density=gs.density,
        excitation_energies=exc.energies, oscillator_strengths=exc.oscillator_strengths,
        transition_dipoles=exc.transition_dipoles,
        provenance=provenance(inputs_hash(hashed), geometry_id=geometry_id))
    write_ground_state(out, record)
    log.info("%s (%s): E = %.10f Ha; %d LR-TDDFT states, lowest %.4f eV, brightest %.4f eV "
             "(f = %.3f)", spec.name, geometry_id, gs.energy, len(exc.energies),
             exc.energies[0] * HARTREE_EV,
             exc.energies[np.argmax(exc.oscillator_strengths)] * HARTREE_EV,
             exc.oscillator_strengths.max())
    print(out)
    return 0


# ---------------------------------------------------------------------------- sample-geometries
def cmd_sample_geometries(args) -> int:
    from rtml.chem import load_molecule, sample_geometries, write_geometry

    _set_threads(args.threads)
    spec = load_molecule(args.molecule)
    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    out = Path(args.output_dir)
    _check_output(out, args.force)
    samples = sample_geometries(spec, args.n, seed=args.seed, hessian_xc=args.hessian_xc,
                                hessian_basis=args.hessian_basis)
    tmp_dir = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        tmp_dir.mkdir()
        for k, sample in enumerate(samples):
            info = {"name": spec.name, "charge": spec.charge, "multiplicity": spec.multiplicity,
                    "basis": spec.basis, "xc": spec.xc, "id": f"g{k:02d}",
                    "sample_id": sample.id, "kind": sample.kind,
                    "description": sample.description, "seed": args.seed}
            write_geometry(tmp_dir / f"g{k:02d}.xyz", spec.symbols, sample.positions_angstrom, info)
        _replace_path(tmp_dir, out)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    for k, sample in enumerate(samples):
        print(f"{out / f'g{k:02d}.xyz'}\t{sample.id}\t{sample.description}")
    return 0


def _write_one_replacing(out: Path, traj) -> None:
    from rtml.data import write_trajectory

    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.h5")
    write_trajectory(tmp, traj)
    _replace_path(tmp, out)


# ---------------------------------------------------------------------------- spectrum
def cmd_spectrum(args) -> int:
    from rtml.data import read_trajectory
    from rtml.tddft import absorption_spectrum, find_peaks

    traj = read_trajectory(args.file)
    kick = float(traj.extra_attrs.get("kick_strength", 0.0))
    if traj.field_spec.get("kind") != "kick" or kick == 0.0:
        raise InputError(f"'{args.file}' is not a kick trajectory (field "
                         f"{traj.field_spec.get('spec')}); spectra need kick:KAPPA:POL")
    damping = None if args.damping_ev is None else args.damping_ev / HARTREE_EV
    spectrum = absorption_spectrum(traj.time, traj.dipole, kick, traj.field_spec["polarization"],
                                   damping=damping, omega_max=args.max_ev / HARTREE_EV)
    omega, height = find_peaks(spectrum, min_relative_height=args.min_height)
    if args.json:
        print(json.dumps({"file": str(args.file), "damping_ev": spectrum.damping * HARTREE_EV,
                          "peaks_ev": (omega * HARTREE_EV).tolist(),
                          "heights": height.tolist()}))
    else:
        print(f"# {traj.molecule} {traj.field_spec['spec']}: {len(omega)} peaks "
              f"(damping {spectrum.damping * HARTREE_EV:.3f} eV HWHM)")
        print(f"# {'eV':>10} {'Hartree':>10} {'S(w) 1/Ha':>12}")
        for w, h in zip(omega, height):
            print(f"{w * HARTREE_EV:12.4f} {w:10.5f} {h:12.5g}")
    if args.plot:
        _plot_spectrum(spectrum, omega, Path(args.plot), title=f"{traj.molecule} {traj.field_spec['spec']}")
        print(f"# plot written to {args.plot}", file=sys.stderr)
    return 0


def _plot_spectrum(spectrum, peaks, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(spectrum.omega_ev, spectrum.strength * 1 / HARTREE_EV, lw=1.2)
    for w in peaks:
        ax.axvline(w * HARTREE_EV, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("photon energy (eV)")
    ax.set_ylabel("dipole strength S(ω) (1/eV)")
    ax.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)


# ---------------------------------------------------------------------------- validate
def cmd_validate(args) -> int:
    from rtml.data import validate_trajectory

    status = 0
    for path in args.files:
        report = validate_trajectory(path)
        for line in report.format_lines():
            print(line)
        if not report.ok:
            status = EXIT_VALIDATION_FAILED
    return status


# ---------------------------------------------------------------------------- excitations
def cmd_excitations(args) -> int:
    from rtml.chem import load_molecule
    from rtml.fields import Field
    from rtml.tddft import PropagationSettings, SimulationInputs, excitation_energies
    from rtml.tddft._simulate import prepare_ground_state

    spec = load_molecule(args.molecule)
    inputs = SimulationInputs(molecule=spec, fields=[Field("none")],
                              settings=PropagationSettings(dt=1.0, n_steps=1), basis=args.basis,
                              xc=args.xc, grid_level=args.grid_level)
    gs, _ = prepare_ground_state(inputs)
    exc = excitation_energies(gs, nstates=args.nstates)
    print(f"# {spec.name} {inputs.xc_name}/{inputs.basis_name}: full LR-TDDFT (not TDA)")
    print(f"# {'state':>5} {'eV':>10} {'Hartree':>10} {'f':>8}")
    for i, (e, f) in enumerate(zip(exc.energies, exc.oscillator_strengths), start=1):
        print(f"  S{i:<4d} {e * HARTREE_EV:10.4f} {e:10.6f} {f:8.4f}")
    return 0


# ---------------------------------------------------------------------------- train / evaluate
def _split_fractions(text: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"--split-fractions must be three numbers train,val,test, got '{text}'")
    return values


NEURAL_MODELS = {"rtml": "mamba", "rtml-mlp": "mlp"}
TRAIN_EPOCHS_DEFAULT = 24


def cmd_train(args) -> int:
    from rtml.train import train_baseline

    _set_threads(args.threads)
    fractions = _split_fractions(args.split_fractions)
    held_out = tuple(args.held_out_molecules or ())
    if args.split_by == "molecule" and not held_out:
        raise InputError("--split-by molecule needs --held-out-molecules (the zero-shot test set)")
    if args.model in NEURAL_MODELS:
        from rtml.train._train import TrainConfig, train_rtml

        if args.window is not None:
            if args.window < 1:
                raise InputError(f"--window must be >= 1, got {args.window}")
            # doubling curriculum up to the window: 16, 32, ..., W (W alone if W <= 16)
            horizons = [args.window]
            while horizons[0] // 2 >= 16:
                horizons.insert(0, horizons[0] // 2)
            horizons = tuple(horizons)
        else:
            try:
                horizons = tuple(int(h) for h in args.horizons.split(","))
            except ValueError:
                horizons = ()
            if not horizons or min(horizons) < 1:
                raise InputError(f"--horizons must be positive integers, got '{args.horizons}'")
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, rollout_horizons=horizons,
                          lr=args.lr, seed=args.seed, split_by=args.split_by,
                          frame_batches=args.frame_batches, sequence_epochs=args.sequence_epochs,
                          held_out_molecules=held_out, fractions=fractions,
                          molecules=tuple(args.molecules) if args.molecules else None,
                          model={"dynamics": NEURAL_MODELS[args.model], "learned": args.learned,
                                 "d_model": args.d_model})
        out = train_rtml(args.store, args.output, cfg, resume=not args.restart,
                         progress=not args.quiet)
    else:
        if args.epochs != TRAIN_EPOCHS_DEFAULT:
            log.info("%s is a closed-form fit on all consecutive frames: --epochs does not apply",
                     args.model)
        out = train_baseline(args.store, args.model, args.output, molecules=args.molecules,
                             seed=args.seed, fractions=fractions, held_out_molecules=held_out)
    print(out / "model.pt")
    return 0


def cmd_evaluate(args) -> int:
    from rtml.evaluate import evaluate

    _set_threads(args.threads)
    baselines = [b for b in args.baselines.split(",") if b] if args.baselines else []
    summary = evaluate(args.store, args.model, args.output, baselines=baselines,
                       molecules=args.molecules, compare=args.compare or ())
    for name, per_mol in summary.items():
        for mol, m in per_mol.items():
            zero_shot = "  (zero-shot: molecule held out)" if m["held_out"] == "molecule" else ""
            print(f"{name:<22} {mol:<6} one-step MSE {m['one_step_mse']:.3e}  "
                  f"median valid horizon {m['median_valid_horizon']:.0f}  "
                  f"dipole nRMSE {m['dipole_nrmse']:.3f}"
                  f"{zero_shot}")
    return 0


# ---------------------------------------------------------------------------- ladder
def cmd_ladder(args) -> int:
    from rtml.chem import build_mole, ladder

    print(f"{'name':<6} {'formula':<8} {'charge':>6} {'mult':>4} {'electrons':>9} "
          f"{'basis':<8} {'nbf':>4} {'xc':<6} source")
    for spec in ladder():
        nbf = build_mole(spec, basis=args.basis).nao
        formula = _formula(spec.symbols)
        print(f"{spec.name:<6} {formula:<8} {spec.charge:>6d} {spec.multiplicity:>4d} "
              f"{spec.n_electrons:>9d} {args.basis or spec.basis:<8} {nbf:>4d} {spec.xc:<6} "
              f"{spec.source}")
    return 0


def _formula(symbols) -> str:
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    return "".join(f"{s}{n if n > 1 else ''}" for s, n in counts.items())


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtml", description="Real-time TDDFT trajectories for machine learning "
        "(atomic units; geometries in Ångström).")
    parser.add_argument("--version", action="version", version=f"rtml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("propagate", help="run RT-TDDFT for one geometry and one or more fields")
    p.add_argument("molecule", help="ladder name (see 'rtml ladder') or an .xyz/.extxyz file")
    p.add_argument("--field", action="append", required=True, metavar="SPEC",
                   help="kick:E0:POL | gaussian:E0:OMEGA:T0:SIGMA:POL | "
                        "resonant:E0:OMEGA|S<n>:DURATION:POL | none (a.u.; POL x|y|z|ex,ey,ez); "
                        "repeat to propagate several fields as one batch")
    p.add_argument("--dt", type=float, required=True, help="time step, a.u. of time")
    p.add_argument("--steps", type=int, required=True, help="number of time steps")
    p.add_argument("--xc", default=None, help="PySCF functional name, 'hf' for RT-TDHF "
                   "(default: the molecule's)")
    p.add_argument("--basis", default=None, help="basis set (default: the molecule's, 6-31G)")
    p.add_argument("--geometry", default=None, metavar="FILE.xyz",
                   help="geometry (Å) replacing the molecule's equilibrium; same atoms, same order")
    p.add_argument("--propagator", default="magnus2",
                   help="magnus2 (default), etrs or magnus4 (4th order, larger dt)")
    p.add_argument("--save-every", type=int, default=1, metavar="K", help="save every K steps")
    p.add_argument("--grid-level", type=int, default=3, help="PySCF DFT grid level (default 3)")
    p.add_argument("--pc-tol", type=float, default=1e-9,
                   help="predictor-corrector tolerance: estimated density error per step, "
                        "dt*max|[dF, P]| (default 1e-9)")
    p.add_argument("--corrector", choices=("linear", "full"), default="linear",
                   help="linear (default): corrector iterations on the linear response of the "
                        "Fock matrix, one full build per step while its measured error allows; "
                        "full: a full Fock build every corrector iteration")
    p.add_argument("--scf-max-cycle", type=int, default=200, metavar="N",
                   help="SCF iterations before giving up (default 200)")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N",
                   help="checkpoint every N steps (OUT.ckpt/; resumed automatically)")
    p.add_argument("--ground-state", default=None, metavar="GS.h5",
                   help="saved ground state (rtml ground-state) of the same geometry: SCF "
                        "restart and LR-TDDFT states for S<n>/B<n> fields")
    p.add_argument("--threads", type=int, default=None,
                   help="OpenMP/BLAS threads (engine nwchem: MPI ranks)")
    p.add_argument("--engine", choices=["pyscf", "nwchem", "model"], default="pyscf",
                   help="propagation engine: pyscf (default), nwchem (rt_tddft, where "
                        "installed; one NWChem job per field) or model (a trained rtml model "
                        "from the SCF ground state; --model)")
    p.add_argument("--model", metavar="MODEL_DIR", default=None,
                   help="trained model directory (rtml train) for --engine model")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="OUT",
                     help="output .h5 file (one field) or directory of .h5 files (several)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="always write a directory of t<NN>-<spec>.h5 files")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_propagate)

    p = sub.add_parser("import-nwchem",
                       help="NWChem rt_tddft output(s) (+ rt_restart snapshots) -> trajectory .h5")
    p.add_argument("molecule", help="ladder name or an .xyz/.extxyz file (atoms in NWChem's order)")
    p.add_argument("outputs", nargs="+", help="NWChem output file(s) of one run, in order")
    p.add_argument("--restart", action="append", metavar="FILE.rt_restart",
                   help="restart snapshot (repeat); frames are then the snapshot times, with P(t)")
    p.add_argument("--geometry", default=None, metavar="FILE.xyz",
                   help="geometry (Å) of the run when not the molecule's equilibrium")
    p.add_argument("--basis", default=None)
    p.add_argument("--xc", default=None, help="functional (PySCF name) of the run")
    p.add_argument("--field", default=None, metavar="SPEC",
                   help="the field as an rtml spec, recorded as field_spec (default none)")
    p.add_argument("--nwchem-geometry", default=None, help="NWChem geometry name (default first)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_import_nwchem)

    p = sub.add_parser("ground-state", help="SCF and full LR-TDDFT excitations, saved for reuse")
    p.add_argument("molecule", help="ladder name or an .xyz/.extxyz file")
    p.add_argument("--geometry", default=None, metavar="FILE.xyz")
    p.add_argument("--xc", default=None)
    p.add_argument("--basis", default=None)
    p.add_argument("--grid-level", type=int, default=3)
    p.add_argument("--nstates", type=int, default=10, help="LR-TDDFT states (default 10)")
    p.add_argument("--scf-max-cycle", type=int, default=200)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-o", "--output", required=True, metavar="GS.h5")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_ground_state)

    p = sub.add_parser("sample-geometries",
                       help="deterministic geometry samples (stretches, bends, normal modes)")
    p.add_argument("molecule", help="ladder name or an .xyz/.extxyz file")
    p.add_argument("--n", type=int, required=True, help="number of geometries (g00 = equilibrium)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--hessian-xc", default=None, help="level of the normal-mode Hessian")
    p.add_argument("--hessian-basis", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--output-dir", required=True, metavar="DIR",
                   help="writes DIR/g00.xyz ... (Å, extended XYZ with the sample id)")
    p.add_argument("--force", action="store_true")
    p.set_defaults(func=cmd_sample_geometries)

    p = sub.add_parser("spectrum", help="absorption spectrum and peaks of a kick trajectory")
    p.add_argument("file", help="trajectory .h5 from a kick")
    p.add_argument("--damping-ev", type=float, default=None,
                   help="Lorentzian HWHM in eV (default 4/T)")
    p.add_argument("--max-ev", type=float, default=30.0, help="highest energy, eV (default 30)")
    p.add_argument("--min-height", type=float, default=0.01,
                   help="report peaks above this fraction of the highest (default 0.01)")
    p.add_argument("--plot", default=None, metavar="PNG", help="write a plot of S(ω)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_spectrum)

    p = sub.add_parser("validate", help="check schema and physics invariants of trajectory files")
    p.add_argument("files", nargs="+", help="trajectory .h5 files")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("excitations", help="LR-TDDFT (full, not TDA) excitation energies")
    p.add_argument("molecule")
    p.add_argument("--nstates", type=int, default=10)
    p.add_argument("--xc", default=None)
    p.add_argument("--basis", default=None)
    p.add_argument("--grid-level", type=int, default=3)
    p.set_defaults(func=cmd_excitations)

    p = sub.add_parser("train", help="train a model on a dataset store (reads only the store)")
    p.add_argument("store", help="Zarr dataset store (rtml dataset assemble)")
    p.add_argument("--model", default="rtml", choices=["rtml", "rtml-mlp", "linear", "persistence"],
                   help="rtml (exact unitary step + equivariant learned ΔG with Mamba gates, "
                        "default), rtml-mlp (memoryless MLP gates), linear (ridge map per "
                        "molecule, Löwdin basis) or persistence")
    p.add_argument("--molecules", nargs="+", default=None, help="molecule groups (default all)")
    p.add_argument("--seed", type=int, default=0, help="split and initialisation seed")
    p.add_argument("--split-by", choices=["geometry", "molecule"], default="geometry")
    p.add_argument("--split-fractions", default="0.8,0.1,0.1", help="train,val,test by geometry")
    p.add_argument("--held-out-molecules", nargs="*", default=None,
                   help="molecules kept out of training (zero-shot test)")
    p.add_argument("--epochs", type=int, default=TRAIN_EPOCHS_DEFAULT,
                   help=f"epochs (default {TRAIN_EPOCHS_DEFAULT}); each has --frame-batches steps of "
                        "ΔG supervision on random frames")
    p.add_argument("--sequence-epochs", type=int, default=4,
                   help="last epochs that also train on whole trajectories and rollouts through "
                        "the exact step (horizon curriculum, --horizons)")
    p.add_argument("--frame-batches", type=int, default=80,
                   help="ΔG-supervision batches (random frames) per epoch")
    p.add_argument("--batch-size", type=int, default=4, help="trajectories per batch")
    p.add_argument("--horizons", default="16,32,64,128,256",
                   help="rollout-loss horizon curriculum, steps (default 16,32,64,128,256)")
    p.add_argument("--window", type=int, default=None,
                   help="longest rollout-loss horizon W (saved frames); curriculum doubling "
                        "from 16 to W (overrides --horizons)")
    p.add_argument("--learned", choices=["xc", "two-electron"], default="xc",
                   help="xc (default): Coulomb and exact exchange of ΔP exact, the network learns "
                        "the XC change; two-electron: the network learns all of ΔG")
    p.add_argument("--d-model", type=int, default=32, help="width of the gate dynamics (Mamba/MLP)")
    p.add_argument("--lr", type=float, default=5e-3, help="peak learning rate (AdamW, cosine)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained model and baselines on the test split")
    p.add_argument("store")
    p.add_argument("--model", required=True, metavar="MODEL_DIR")
    p.add_argument("--baselines", default="persistence,linear",
                   help="comma-separated baselines evaluated by the same code (default both)")
    p.add_argument("--compare", nargs="*", default=None, metavar="MODEL_DIR",
                   help="further trained models evaluated alongside (e.g. the MLP ablation)")
    p.add_argument("--molecules", nargs="+", default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("-o", "--output", required=True, metavar="EVAL_DIR")
    p.set_defaults(func=cmd_evaluate)

    from rtml.cli._dataset import add_dataset_parser

    add_dataset_parser(sub)

    p = sub.add_parser("ladder", help="the molecule ladder with basis sizes")
    p.add_argument("--basis", default=None, help="basis for the nbf column (default each molecule's)")
    p.set_defaults(func=cmd_ladder)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except RtmlError as err:
        print(f"rtml: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rtml: interrupted (a checkpoint, if any, is kept and resumed on rerun)", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as err:
        print(f"rtml: error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
