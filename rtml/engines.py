"""The propagation engines by name, and the one place where one is chosen and run.

==========  ==============================================================================
``pyscf``   rtml's RT-TDDFT (:func:`rtml.tddft.simulate`): one batch of all fields, with
            checkpoints that a rerun resumes
``nwchem``  NWChem's ``rt_tddft`` (:func:`rtml.tddft.nwchem.simulate_nwchem`): one NWChem job
            per field on ``ranks`` MPI ranks, where ``nwchem`` is installed
``model``   a trained rtml model (:func:`rtml.model.propagate_model`) from the SCF ground
            state, with the engine's kicks and fields
==========  ==============================================================================

Every engine starts from the same system (:class:`rtml.tddft.SimulationInputs`), resolves
S<n>/B<n>/auto fields from the PySCF LR-TDDFT excitations of the same ground state, and
returns :class:`rtml.data.Trajectory` records built by :func:`rtml.tddft.trajectory_record`.

Example:
    >>> from rtml.engines import EngineOptions, run_engine
    >>> run_engine("pyscf", inputs, EngineOptions(show_progress=False))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from rtml._errors import InputError, RtmlError
from rtml._progress import Progress
from rtml.data import GroundStateRecord, Trajectory
from rtml.model import MODEL_PROPAGATOR_NAME, load_model, model_provenance, propagate_model
from rtml.tddft import SimulationInputs, batch_trajectory_records, prepare_ground_state, simulate
from rtml.tddft.nwchem import (UNAVAILABLE_MESSAGE, NWChemUnavailable, nwchem_available,
                               nwchem_xc, simulate_nwchem)

__all__ = ["ENGINES", "EngineOptions", "check_engine", "run_engine"]

# the CLI's logger: these lines are part of ``rtml propagate``'s log
log = logging.getLogger("rtml")

#: Engine names, the default first.
ENGINES = ("pyscf", "nwchem", "model")


@dataclass
class EngineOptions:
    """How to run an engine (what does not change the trajectories' physics).

    Attributes
    ----------
    saved : GroundStateRecord or None
        Saved ground state of the same geometry (``rtml ground-state``): SCF start and the
        LR-TDDFT states that resolve S<n>/B<n> fields.
    scf_max_cycle : int
        SCF iterations before giving up.
    checkpoint_dir : Path or None
        ``pyscf``: checkpoint directory, resumed when it exists, removed when the run ends
        (kept when interrupted).
    ranks : int
        ``nwchem``: MPI ranks per NWChem job.
    model_dir : str, Path or None
        ``model``: the trained model directory (``rtml train``); required there, refused by
        ``pyscf``.
    show_progress : bool
        Report progress on stderr.
    """

    saved: GroundStateRecord | None = None
    scf_max_cycle: int = 200
    checkpoint_dir: Path | None = None
    ranks: int = 1
    model_dir: str | Path | None = None
    show_progress: bool = True


def check_engine(engine: str, options: EngineOptions) -> None:
    """Raise before any SCF unless ``engine`` can run here with ``options``.

    Raises:
        InputError: unknown engine, ``model`` without a model directory, ``pyscf`` with one.
        NWChemUnavailable: ``nwchem`` is not installed.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    if engine == "nwchem" and not nwchem_available():
        raise NWChemUnavailable(f"engine 'nwchem' is unavailable: {UNAVAILABLE_MESSAGE} "
                                "(apt-get install nwchem openmpi-bin, or use --engine pyscf)")
    if engine == "model" and options.model_dir is None:
        raise InputError("--engine model needs --model MODEL_DIR (a directory from rtml train)")
    if engine == "pyscf" and options.model_dir is not None:
        raise InputError("--model is only used with --engine model")


def run_engine(engine: str, inputs: SimulationInputs,
               options: EngineOptions | None = None) -> list[Trajectory]:
    """Run ``engine`` on ``inputs``: one :class:`Trajectory` per field, in order.

    ``inputs.fields`` may hold unresolved S<n>/B<n>/auto fields; the trajectories record
    them resolved. See :data:`ENGINES` for what each engine does.
    """
    options = EngineOptions() if options is None else options
    check_engine(engine, options)
    runner = {"pyscf": _run_pyscf, "nwchem": _run_nwchem, "model": _run_model}[engine]
    return runner(inputs, options)


def _run_pyscf(inputs: SimulationInputs, options: EngineOptions) -> list[Trajectory]:
    gs, fields = prepare_ground_state(inputs, scf_max_cycle=options.scf_max_cycle,
                                      saved=options.saved)
    inputs = inputs.with_fields(fields)
    checkpoint_dir = options.checkpoint_dir
    progress = Progress(inputs.settings.n_steps, f"propagate {inputs.system.molecule.name}",
                        enabled=options.show_progress)
    try:
        trajectories = simulate(inputs, checkpoint_dir=checkpoint_dir, progress=progress,
                                ground_state=gs)
    except RtmlError:
        # a deterministic failure would recur on resume: drop the checkpoint
        _remove_checkpoint(checkpoint_dir)
        raise
    finally:
        progress.close()
    _remove_checkpoint(checkpoint_dir)
    return trajectories


def _remove_checkpoint(checkpoint_dir: Path | None) -> None:
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _run_nwchem(inputs: SimulationInputs, options: EngineOptions) -> list[Trajectory]:
    """One NWChem job per field; S<n>/B<n>/auto fields are resolved by PySCF LR-TDDFT."""
    nwchem_xc(inputs.system.xc_name)  # fail on an unsupported functional before any SCF
    if any(not f.is_resolved for f in inputs.fields):
        _, fields = prepare_ground_state(inputs, scf_max_cycle=options.scf_max_cycle,
                                         saved=options.saved)
        inputs = inputs.with_fields(fields)
    progress = Progress(inputs.settings.n_steps * len(inputs.fields),
                        f"nwchem {inputs.system.molecule.name}", enabled=options.show_progress)
    try:
        return simulate_nwchem(inputs, ranks=options.ranks, progress=progress)
    finally:
        progress.close()


def _run_model(inputs: SimulationInputs, options: EngineOptions) -> list[Trajectory]:
    """The trained model's rollout from the SCF ground state."""
    propagator, state = load_model(options.model_dir)
    gs, fields = prepare_ground_state(inputs, scf_max_cycle=options.scf_max_cycle,
                                      saved=options.saved)
    settings = inputs.settings
    progress = Progress(settings.n_steps, f"model {inputs.system.molecule.name}",
                        enabled=options.show_progress)
    try:
        frames, stats = propagate_model(gs, fields, settings, propagator, progress=progress)
    finally:
        progress.close()
    log.info("model rollout: %d steps x %d fields, %.4f s/step", settings.n_steps, len(fields),
             stats["wall_time_per_step_s"])
    return batch_trajectory_records(inputs, gs, fields, frames, stats, engine="model",
                                    propagator=MODEL_PROPAGATOR_NAME,
                                    engine_provenance=model_provenance(options.model_dir, state))
