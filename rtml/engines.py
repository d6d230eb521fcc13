"""The propagation engines by name, and the one place where one is chosen and run.

==========  ==============================================================================
``pyscf``   rtml's RT-TDDFT (:func:`rtml.tddft.simulate`): one batch of all fields, with
            checkpoints that a rerun resumes
``nwchem``  NWChem's ``rt_tddft`` (:func:`rtml.tddft.nwchem.simulate_nwchem`): an SCF job
            and a streamed propagation job per field on ``ranks`` MPI ranks, where
            ``nwchem`` is installed
``model``   a trained rtml model (:func:`rtml.model.propagate_model`) from the SCF ground
            state, with the engine's kicks and fields
``hybrid``  the model, re-anchored by the ``pyscf`` engine where its measured error or its
            ensemble's spread says it is unsure (:func:`rtml.model.propagate_hybrid`);
            records what produced each frame and every anchor
==========  ==============================================================================

Every engine starts from the same system (:class:`rtml.tddft.SimulationInputs`), resolves
S<n>/B<n>/auto fields from the PySCF LR-TDDFT excitations of the same ground state, and
returns :class:`rtml.data.Trajectory` records built by :func:`rtml.tddft.trajectory_record`.

Before any work, :func:`check_storage` estimates the disk and memory a run needs and refuses
one that cannot fit; settings beyond :data:`rtml.tddft.PHYSICS_LIMITS` are warned about.
The ``pyscf`` engine's checkpoint is removed only once the trajectories are written (the
``write`` of :func:`run_engine`): a run killed while writing resumes from it.

Example:
    >>> from rtml.engines import EngineOptions, run_engine
    >>> run_engine("pyscf", inputs, EngineOptions(show_progress=False))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rtml._errors import InputError, RtmlError
from rtml._progress import Progress
from rtml.data import GroundStateRecord, Trajectory, frames_in_memory
from rtml.model import (GUESS_FILE, HYBRID_PROPAGATOR_NAME, MODEL_PROPAGATOR_NAME, HybridSettings,
                        guess_density, load_guess, load_model, model_provenance,
                        propagate_hybrid, propagate_model)
from rtml.tddft import (SimulationInputs, batch_trajectory_records, physics_warnings,
                        prepare_ground_state, simulate)
from rtml.tddft.nwchem import (UNAVAILABLE_MESSAGE, NWChemUnavailable, nwchem_available,
                               nwchem_xc, simulate_nwchem)

__all__ = ["ENGINES", "MODEL_ENGINES", "EngineOptions", "StorageEstimate", "check_engine", "check_storage",
           "run_engine", "storage_estimate"]

# the CLI's logger: these lines are part of ``rtml propagate``'s log
log = logging.getLogger("rtml")

#: Engine names, the default first.
ENGINES = ("pyscf", "nwchem", "model", "hybrid")

#: Engines that run a trained model (``--model``).
MODEL_ENGINES = ("model", "hybrid")


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
        ``pyscf``, ``hybrid``: checkpoint directory, resumed when it exists, removed when
        the run ends and its trajectories are written (kept when interrupted).
    restart : bool
        ``pyscf``, ``hybrid``: remove an existing checkpoint and start from step 0.
    ranks : int
        ``nwchem``: MPI ranks per NWChem job.
    model_dir : str, Path or None
        ``model``, ``hybrid``: the trained model directory (``rtml train``); required there,
        refused by ``pyscf``.
    hybrid : HybridSettings
        ``hybrid``: when it hands back to the RT engine.
    guess_dir : str, Path or None
        ``pyscf``, ``model``, ``hybrid``: start the SCF from the learned ground-state guess
        in this directory (``rtml train-guess``) instead of PySCF's minao guess (a saved
        ground state, when given, is used instead); refused by ``nwchem`` (its own SCF).
    show_progress : bool
        Report progress on stderr.
    """

    saved: GroundStateRecord | None = None
    scf_max_cycle: int = 200
    checkpoint_dir: Path | None = None
    restart: bool = False
    ranks: int = 1
    model_dir: str | Path | None = None
    hybrid: HybridSettings = field(default_factory=HybridSettings)
    guess_dir: str | Path | None = None
    show_progress: bool = True

    def initial_guess(self):
        """callable(mol) -> ``dm0`` of the learned guess, or None (PySCF's default)."""
        if self.guess_dir is None:
            return None
        guess = load_guess(self.guess_dir)
        return lambda mol: guess_density(guess, mol)


def check_engine(engine: str, options: EngineOptions) -> None:
    """Raise before any SCF unless ``engine`` can run here with ``options``.

    Raises:
        InputError: unknown engine, ``model`` without a model directory, ``pyscf`` with one,
            a checkpoint path that is a file or a symbolic link.
        NWChemUnavailable: ``nwchem`` is not installed.
    """
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    if engine == "nwchem" and options.guess_dir is not None:
        raise InputError("--guess: engine nwchem runs its own SCF (use --engine pyscf, model "
                         "or hybrid)")
    if engine == "nwchem" and not nwchem_available():
        raise NWChemUnavailable(f"engine 'nwchem' is unavailable: {UNAVAILABLE_MESSAGE} "
                                "(apt-get install nwchem openmpi-bin, or use --engine pyscf)")
    if engine in MODEL_ENGINES and options.model_dir is None:
        raise InputError(f"--engine {engine} needs --model MODEL_DIR (a directory from rtml "
                         "train)")
    if engine == "pyscf" and options.model_dir is not None:
        raise InputError("--model is only used with --engine model or hybrid")
    if options.guess_dir is not None and not (Path(options.guess_dir) / GUESS_FILE).is_file():
        raise InputError(f"--guess {options.guess_dir}: no {GUESS_FILE} there (a directory "
                         "from rtml train-guess)")
    checkpoint = options.checkpoint_dir
    if engine in ("pyscf", "hybrid") and checkpoint is not None and (
            Path(checkpoint).is_symlink() or (Path(checkpoint).exists()
                                              and not Path(checkpoint).is_dir())):
        raise InputError(f"checkpoint path '{checkpoint}' exists and is not a checkpoint "
                         "directory (a file or a symbolic link); remove it")


@dataclass
class StorageEstimate:
    """What a run needs, in bytes (upper estimates, see :func:`storage_estimate`).

    Attributes
    ----------
    output : int
        The trajectory files.
    checkpoint : int
        The ``pyscf`` checkpoint still to be written (it holds the frames too); 0 for the
        other engines.
    memory : int
        Frames in memory at once.
    """

    output: int
    checkpoint: int
    memory: int


#: Bytes of the per-frame scalars and vectors of one trajectory (time, field, energy, dipole).
_FRAME_VECTOR_BYTES = 8 * (1 + 3 + 1 + 3)


def storage_estimate(engine: str, inputs: SimulationInputs, n_basis: int, n_spin: int,
                     checkpoint_dir: Path | None = None) -> StorageEstimate:
    r"""Disk and memory a run of ``engine`` needs, from its frame count and matrix size.

    With :math:`m = 16\,n_\text{spin} n_\text{basis}^2` bytes per complex matrix, T saved
    frames and :math:`n_b` fields: each trajectory file holds T densities (and, for
    ``pyscf``, T Fock matrices); the ``pyscf`` checkpoint holds the same frames again (less
    what an existing checkpoint already holds) and keeps them on disk: in memory are the
    :math:`n_b` times ``checkpoint_every`` frames between checkpoints, and the HDF5 writer
    streams each trajectory from the checkpoint one chunk (of the same length) at a time.
    ``nwchem`` and ``model`` hold every frame of the batch; so does ``hybrid``, whose
    checkpoint holds each field's frames so far and the finished fields (one written anew
    at a time).
    """
    settings = inputs.settings
    n_frames, n_fields = settings.n_frames, len(inputs.fields)
    matrix = 16 * n_spin * n_basis ** 2
    matrices = 2 if engine == "pyscf" else 1  # the pyscf engine saves F(t) with P(t)
    trajectory = n_frames * (matrices * matrix + _FRAME_VECTOR_BYTES)
    writer_copy = n_frames * matrix // 2
    if engine == "hybrid":
        return StorageEstimate(n_fields * trajectory, (n_fields + 1) * trajectory,
                               n_fields * trajectory + writer_copy)
    if engine != "pyscf":
        return StorageEstimate(n_fields * trajectory, 0, n_fields * trajectory + writer_copy)
    existing = 0
    if checkpoint_dir is not None and Path(checkpoint_dir).is_dir():
        existing = sum(f.stat().st_size for f in Path(checkpoint_dir).iterdir() if f.is_file())
    buffered = min(n_frames, settings.checkpoint_every // settings.save_every + 1)
    memory = n_fields * buffered * matrices * matrix + buffered * matrix // 2
    return StorageEstimate(n_fields * trajectory, max(n_fields * trajectory - existing, 0),
                           memory)


def _available_memory() -> int | None:
    """Bytes of memory this process can still use: the kernel's MemAvailable, lowered to a
    cgroup (v2) limit when there is one; None where neither can be read."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max" and available is not None:
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def _gigabytes(n_bytes: int) -> str:
    """``"1.2 TB"``, ``"576.0 GB"``, ``"0.004 GB"``."""
    if n_bytes >= 1e12:
        return f"{n_bytes / 1e12:.1f} TB"
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e8 else f"{n_bytes / 1e9:.3f} GB"


def check_storage(engine: str, inputs: SimulationInputs, directory: Path,
                  checkpoint_dir: Path | None = None) -> StorageEstimate:
    """Refuse, before any SCF, a run whose frames do not fit on the disk of ``directory``
    (the output's) or in memory (:func:`storage_estimate`); log the estimate.

    Raises:
        InputError: one line with the numbers: needed and free.
    """
    mol = inputs.system.mole()
    n_spin = 1 if mol.spin == 0 else 2
    need = storage_estimate(engine, inputs, mol.nao, n_spin, checkpoint_dir)
    frames = (f"{inputs.settings.n_frames} frames x {len(inputs.fields)} field(s), "
              f"nao = {mol.nao}")
    free = shutil.disk_usage(directory).free
    on_disk = need.output + need.checkpoint
    log.info("storage: about %s of trajectories + %s of checkpoint (%s free), %s of memory",
             _gigabytes(need.output), _gigabytes(need.checkpoint), _gigabytes(free),
             _gigabytes(need.memory))
    if on_disk > free:
        raise InputError(f"this run needs about {_gigabytes(on_disk)} of disk "
                         f"({_gigabytes(need.output)} of trajectories + "
                         f"{_gigabytes(need.checkpoint)} of checkpoint for {frames}) but "
                         f"'{directory}' has {_gigabytes(free)} free: save fewer frames "
                         "(--save-every) or run fewer steps")
    available = _available_memory()
    if available is not None and need.memory > available:
        raise InputError(f"this run needs about {_gigabytes(need.memory)} of memory for its "
                         f"frames ({frames}) but {_gigabytes(available)} is available: save "
                         "fewer frames (--save-every), run fewer steps or fewer fields at once")
    return need


def run_engine(engine: str, inputs: SimulationInputs, options: EngineOptions | None = None,
               write: Callable[[Sequence[Trajectory]], object] | None = None):
    """Run ``engine`` on ``inputs``: one :class:`Trajectory` per field, in order.

    ``inputs.fields`` may hold unresolved S<n>/B<n>/auto fields; the trajectories record
    them resolved. See :data:`ENGINES` for what each engine does.

    Args:
        write: called with the trajectories, e.g. to write them. For ``pyscf`` they are then
            read from the checkpoint one at a time as they are indexed, and the checkpoint
            is removed only after ``write`` returns, so a run killed while writing resumes
            from it, complete.

    Returns:
        What ``write`` returns; without it, the list of trajectories.
    """
    options = EngineOptions() if options is None else options
    check_engine(engine, options)
    for line in physics_warnings(inputs.fields, inputs.settings):
        log.warning(line)
    runner = {"pyscf": _run_pyscf, "nwchem": _run_nwchem, "model": _run_model,
              "hybrid": _run_hybrid}[engine]
    return runner(inputs, options, _in_memory if write is None else write)


def _in_memory(trajectories: Sequence[Trajectory]) -> list[Trajectory]:
    """The trajectories with their frames read into memory (the checkpoint they may be
    read from is removed when the run returns)."""
    return [frames_in_memory(t) for t in trajectories]


def _run_pyscf(inputs: SimulationInputs, options: EngineOptions, write):
    checkpoint_dir = _checkpoint_to_resume(options)
    gs, fields = prepare_ground_state(inputs, scf_max_cycle=options.scf_max_cycle,
                                      saved=options.saved, initial_guess=options.initial_guess())
    inputs = inputs.with_fields(fields)
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
    written = write(trajectories)  # they are read from the checkpoint: remove it only now
    _remove_checkpoint(checkpoint_dir)
    return written


def _checkpoint_to_resume(options: EngineOptions) -> Path | None:
    """``options.checkpoint_dir``, emptied first with ``--restart``."""
    checkpoint_dir = options.checkpoint_dir
    if options.restart and checkpoint_dir is not None and Path(checkpoint_dir).exists():
        log.info("--restart: removing checkpoint %s, starting from step 0", checkpoint_dir)
        _remove_checkpoint(checkpoint_dir)
    return checkpoint_dir


def _remove_checkpoint(checkpoint_dir: Path | None) -> None:
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)


def _run_nwchem(inputs: SimulationInputs, options: EngineOptions, write):
    """NWChem per field (SCF + streamed propagation); S<n>/B<n>/auto resolved by PySCF LR-TDDFT."""
    nwchem_xc(inputs.system.xc_name)  # fail on an unsupported functional before any SCF
    if any(not f.is_resolved for f in inputs.fields):
        _, fields = prepare_ground_state(inputs, scf_max_cycle=options.scf_max_cycle,
                                         saved=options.saved)
        inputs = inputs.with_fields(fields)
    progress = Progress(inputs.settings.n_steps * len(inputs.fields),
                        f"nwchem {inputs.system.molecule.name}", enabled=options.show_progress)
    try:
        trajectories = simulate_nwchem(inputs, ranks=options.ranks, progress=progress)
    finally:
        progress.close()
    return write(trajectories)


def _run_model(inputs: SimulationInputs, options: EngineOptions, write):
    """The trained model's rollout from the SCF ground state."""
    propagator, state = load_model(options.model_dir)
    gs, fields = prepare_ground_state(inputs, scf_max_cycle=options.scf_max_cycle,
                                      saved=options.saved, initial_guess=options.initial_guess())
    settings = inputs.settings
    progress = Progress(settings.n_steps, f"model {inputs.system.molecule.name}",
                        enabled=options.show_progress)
    try:
        frames, stats = propagate_model(gs, fields, settings, propagator, progress=progress)
    finally:
        progress.close()
    log.info("model rollout: %d steps x %d fields, %.4f s/step", settings.n_steps, len(fields),
             stats["wall_time_per_step_s"])
    return write(batch_trajectory_records(
        inputs, gs, fields, frames, stats, engine="model", propagator=MODEL_PROPAGATOR_NAME,
        engine_provenance=model_provenance(options.model_dir, state)))


def _run_hybrid(inputs: SimulationInputs, options: EngineOptions, write):
    """The model re-anchored by the pyscf engine (:func:`rtml.model.propagate_hybrid`),
    checkpointed per field in ``options.checkpoint_dir`` (removed once written)."""
    checkpoint_dir = _checkpoint_to_resume(options)
    propagator, state = load_model(options.model_dir)
    gs, fields = prepare_ground_state(inputs, scf_max_cycle=options.scf_max_cycle,
                                      saved=options.saved, initial_guess=options.initial_guess())
    settings = inputs.settings
    progress = Progress(settings.n_steps * len(fields), f"hybrid {inputs.system.molecule.name}",
                        enabled=options.show_progress)
    try:
        frames, stats, extras = propagate_hybrid(gs, fields, settings, propagator, options.hybrid,
                                                 progress=progress, checkpoint_dir=checkpoint_dir)
    except RtmlError:
        _remove_checkpoint(checkpoint_dir)   # a deterministic failure would recur on resume
        raise
    finally:
        progress.close()
    log.info("hybrid: %d model steps, %d engine steps, %d anchors, %.2f Fock builds per step, "
             "%.4f s/step", stats["model_steps"], stats["engine_steps"], stats["anchors"],
             stats["builds_per_step"], stats["wall_time_per_step_s"])
    written = write(batch_trajectory_records(
        inputs, gs, fields, frames, stats, engine="hybrid", propagator=HYBRID_PROPAGATOR_NAME,
        engine_provenance=model_provenance(options.model_dir, state), member_extras=extras))
    _remove_checkpoint(checkpoint_dir)
    return written
