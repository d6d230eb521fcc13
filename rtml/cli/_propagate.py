"""``rtml propagate``: one geometry, one or more fields, by the engine chosen
(:func:`rtml.engines.run_engine`), written as trajectory files.

Everything that can be checked cheaply is checked before the SCF: the inputs, the output path
(:func:`rtml.check_output_path`), the disk and memory the frames need
(:func:`rtml.engines.check_storage`). The checkpoint ``OUT.ckpt/`` is removed only once the
output is in place; one left beside a complete output by a kill between the two is removed
by the next run (:func:`rtml.tddft.remove_finished_checkpoint`).
"""

from __future__ import annotations

import logging
from pathlib import Path

from rtml import __version__, atomic_directory, atomic_write, check_output_path
from rtml._errors import InputError
from rtml.chem import load_molecule, read_matching_geometry
from rtml.cli._threads import set_threads
from rtml.data import read_ground_state, trajectory_file_name, write_trajectory
from rtml.engines import MODEL_ENGINES, EngineOptions, check_storage, run_engine
from rtml.fields import parse_field
from rtml.model import HybridSettings, resolve_model_dir
from rtml.tddft import PropagationSettings, SimulationInputs, remove_finished_checkpoint

log = logging.getLogger("rtml")

#: Names of the files of an output directory (:func:`rtml.data.trajectory_file_name`): what
#: ``--force`` may replace.
TRAJECTORY_FILES = r"t\d{2,}-.+\.h5"


def cmd_propagate(args) -> int:
    """Validate everything cheap, run the engine, write the trajectories; print their paths."""
    # validate everything cheap before any SCF
    set_threads(args.threads)
    spec = load_molecule(args.molecule)
    fields = [parse_field(s) for s in args.field]
    settings = PropagationSettings(dt=args.dt, n_steps=args.steps, propagator=args.propagator,
                                   save_every=args.save_every, pc_tol=args.pc_tol,
                                   linear_corrector=args.corrector in ("linear", "carry"),
                                   carry_model=args.corrector == "carry",
                                   checkpoint_every=args.checkpoint_every)
    positions, geometry_id = None, "eq"
    if args.geometry:
        positions, geometry_id = read_matching_geometry(spec, args.geometry)
    if not 0 <= args.grid_level <= 9:
        raise InputError(f"grid level must be 0-9, got {args.grid_level}")
    saved = read_ground_state(args.ground_state) if args.ground_state else None
    as_directory = args.output_dir is not None or len(fields) > 1
    out = Path(args.output_dir if args.output_dir is not None else args.output)
    checkpoint_dir = out.with_name(out.name + ".ckpt")
    remove_finished_checkpoint(checkpoint_dir, out)  # left by a kill after the output landed
    check_output_path(out, args.force, rtml_files=TRAJECTORY_FILES)
    inputs = SimulationInputs(molecule=spec, fields=fields, settings=settings,
                              positions_angstrom=positions, basis=args.basis, xc=args.xc,
                              grid_level=args.grid_level, geometry_id=geometry_id)
    system = inputs.system
    log.info("rtml %s propagate: %s (%s), xc=%s, basis=%s, grid level %d, %d field(s): %s",
             __version__, spec.name, geometry_id, system.xc_name, system.basis_name,
             args.grid_level, len(fields), " ".join(f.to_spec() for f in fields))
    log.info("dt=%g au, %d steps (%g au), save every %d, propagator %s, pc_tol %g, %s corrector",
             settings.dt, settings.n_steps, settings.dt * settings.n_steps, settings.save_every,
             settings.propagator, settings.pc_tol, args.corrector)

    check_storage(args.engine, inputs, out.parent, checkpoint_dir)
    hybrid = HybridSettings(error_tol=args.error_tol, spread_tol=args.spread_tol,
                            max_model_steps=args.max_model_steps, anchor_steps=args.anchor_steps,
                            calibration_steps=args.calibration_steps)
    # --engine model/hybrid without --model: the shipped pretrained model (rtml models)
    model_dir = resolve_model_dir(args.model) if args.engine in MODEL_ENGINES else args.model
    options = EngineOptions(saved=saved, scf_max_cycle=args.scf_max_cycle,
                            checkpoint_dir=checkpoint_dir, restart=args.restart,
                            ranks=args.threads or 1, model_dir=model_dir, hybrid=hybrid,
                            guess_dir=args.guess, show_progress=not args.quiet)
    return run_engine(args.engine, inputs, options,
                      write=lambda trajectories: _write_trajectories(trajectories, fields, out,
                                                                     as_directory))


def _write_trajectories(trajectories, fields, out: Path, as_directory: bool) -> int:
    """Write one file, or a directory of t<NN>-<spec>.h5 files, atomically; print paths.

    ``trajectories`` may read each one from the checkpoint when indexed: one at a time is
    in memory."""
    if not as_directory:
        if out.is_dir():  # --force over an earlier multi-field output
            atomic_write(out, lambda tmp: write_trajectory(tmp, trajectories[0]))
        else:
            write_trajectory(out, trajectories[0])
        written = [out]
    else:
        names = [trajectory_file_name(i, f.to_spec()) for i, f in enumerate(fields)]

        def write_files(directory: Path) -> None:
            for i, name in enumerate(names):
                write_trajectory(directory / name, trajectories[i])

        atomic_directory(out, write_files)
        written = [out / name for name in names]
    for path in written:
        print(path)
    return 0
