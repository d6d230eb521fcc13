r"""The PySCF RT-TDDFT engine: batched, self-consistent, checkpointed propagation.

Several fields for the same geometry are propagated together: the densities of all batch
members share every Fock build (one pass over the grid, one libxc call). Each time step
solves the implicit end-point problem of the chosen propagator by predictor-corrector:

1. predict :math:`F'(t+\Delta t)` by polynomial extrapolation of the last three Fock
   matrices (:math:`3F_0 - 3F_{-1} + F_{-2}`, lower order at the start);
2. propagate :math:`P'(t) \to P'(t+\Delta t)` with it, build :math:`F'[P'(t+\Delta t)]`;
3. if the density error this Fock difference causes,
   :math:`\Delta t\max|[F'_\text{built} - F'_\text{used}, P'(t+\Delta t)]|`, is below
   ``pc_tol`` accept;
4. else (``linear_corrector``, the default) iterate the end point on the linear response
   of the Fock matrix around that build, :math:`F'_\text{built} + \mathcal L'[\delta P']`
   (``_response.py``: exact for J and K, XC kernel of the ground state), which costs
   small matrix products only, and accept its fixed point when its residual plus the
   model's measured error stays below ``pc_tol``; otherwise build again at that point and
   go to 3. Without the linear model, step 4 is an Anderson-mixed full iteration.

With ``carry_model`` (the default; ``rtml propagate --corrector linear`` turns it off) step
0 comes first: the linear model around the member's last full build, which may lie several
steps back, is solved for the new end point without any build, and accepted by the same
test as in step 4 (residual plus the measured model error times the change it predicts
below ``pc_tol``). As the density moves away from the build the predicted change, and with
it the estimated error, grows until a step fails the test and takes the full path above,
which refreshes the build point and the measured error. Weak fields then need a build only
every many steps (H2O, kick 1e-4, Magnus-2 dt 0.2: 0.004 builds per step); strong ones fall
back to about one.

Without carrying, weak fields take one full build per step: the model's relative error,
measured on consecutive builds, was 3.5e-6 after a 1e-4 kick (H2O, PBE0, 40 au). Strong
fields move the density away from the kernel's reference (7.7e-5 after a 1e-2 kick) and
make larger corrections, and take about two.

Convergence is decided per batch member and converged members are frozen, so a batch gives
the same trajectories as separate runs (to rounding with one build per step; carrying, a
batch's GEMMs round differently and can move a build-or-carry decision, so to ~pc_tol). The
accepted :math:`F'(t+\Delta t)` is :math:`F'[P'(t+\Delta t)]` (within ``pc_tol`` when it
comes from the linear model, whose energy is expanded to second order around the build), so
the stored energy is that of the stored density.

Every saved frame also records its Fock matrix, converted to the AO basis
(:func:`fock_to_ao`): the electronic :math:`F[P(t)]` (core Hamiltonian + two-electron
part, no field term), complex Hermitian. It is the matrix the step accepted for that time
point: a full build at :math:`P(t)` (always for the first frame), or the linear-response
corrector's fixed point :math:`F'_b + \mathcal L'[P' - P'_b]` when that was accepted without
another build; either way it equals a fresh exact build at the frame's density to within
the corrector's tolerance (measured in ``tests/tddft/test_fock_frames.py``). With
``carry_model`` (the default) a frame's matrix may be the model's prediction from a build
several steps back: the test holds its commutator with P' to ``pc_tol``, the rest of it is
looser (LiH, kick 1e-4: 8.9e-4 of F - F0 against 5e-8). Datasets whose Fock matrices are
training targets turn it off (the workflow's ``propagation.corrector: linear``).

The engine checks its own invariants after every step (:func:`check_invariants`): the
electron count of each spin, occupations (eigenvalues of :math:`P'_\sigma`) within
[0, 2] (restricted) or [0, 1] (unrestricted), and, for a member whose field is off, its
energy against the energy when its field was last on (after the kick), to within a
fraction of the energy the field put in. A step that breaks one stops the run with one line
naming the step, the field and dt, instead of a wrong file: a time step too long for the
system (H2, kick 1.0, dt 2: 2e-2 Eh lost in the first step) breaks energy conservation first.

Settings beyond :data:`PHYSICS_LIMITS` are allowed but warned about
(:func:`physics_warnings`).
"""

from __future__ import annotations

import dataclasses
import logging
import time as _time
from dataclasses import dataclass

import numpy as np

from rtml._errors import ConvergenceError, InputError, PropagationError
from rtml.fields import Field
from rtml.tddft._checkpoint import Checkpoint, CheckpointFrames, PropagationState
from rtml.tddft._fock import FockContext, _blas_controller, fock_and_energy
from rtml.tddft._ground_state import GroundState, electronic_dipole
from rtml.tddft._propagators import PROPAGATORS, exp_hermitian
from rtml.tddft._response import build_fock_response, kernel_context, kernel_coarsening

log = logging.getLogger("rtml.tddft")

#: Beyond these a propagation runs, with a warning (:func:`physics_warnings`; README, Fields):
#: ``kick`` |κ| and ``amplitude`` |E0| in a.u. (the dataset's kicks are <= 0.01 au and its
#: pulses 0.01 au; 0.1 au of field is ~3.5e14 W/cm², where molecules ionise and a bound
#: Gaussian basis no longer describes the electrons), ``dt`` in a.u. of time (the tests and
#: the workflow use 0.1-0.5; at dt 2 an H2 kick loses energy conservation in one step).
PHYSICS_LIMITS = {"kick": 0.1, "amplitude": 0.1, "dt": 1.0}

#: Tolerances of :func:`check_invariants`: energy drift of a member whose field is off, Eh
#: (``rtml validate``'s bound for field-free files) plus a fraction of the energy its field
#: put in (measured at dt 0.2: 7e-5 of it after the dataset's resonant drive of LiH, 1.6e-1
#: Eh absorbed; 1e-8 of it after a kick of 0.01 au), electron count per spin, occupations
#: outside [0, n_max].
ENERGY_DRIFT_TOL = 1e-5
ENERGY_DRIFT_RTOL = 1e-3
TRACE_TOL = 1e-8
OCCUPATION_TOL = 1e-6
#: |E(t)| (a.u.) below which a member's field counts as off.
FIELD_OFF = 1e-10


@dataclass
class PropagationSettings:
    """Numerical settings of a propagation (atomic units).

    Attributes
    ----------
    dt : float
        Time step (a.u. of time), > 0.
    n_steps : int
        Number of time steps; frames are saved at steps 0, save_every, 2*save_every, ...
    propagator : str
        ``"magnus2"`` (default), ``"etrs"`` or ``"magnus4"`` (fourth order, for larger dt).
    save_every : int
    pc_tol : float
        Predictor-corrector convergence: estimated error of P'(t+dt) caused by the
        remaining error of the end-point Fock matrix, dt * max|[dF', P']|.
    max_pc_iter : int
    pc_mixing : int
        Iterations the corrector mixes (Anderson); 1 is the plain fixed-point iteration.
    linear_corrector : bool
        Iterate the corrector on the linear response of the Fock matrix (``_response.py``)
        between full builds, and accept its fixed point without another build when the
        measured error of that linear model keeps the step within ``pc_tol``.
    checkpoint_every : int
        Steps between checkpoints (when a checkpoint directory is given).
    carry_model : bool or None
        With ``linear_corrector``: try each step on the linear model around the last full
        build first, without a build, and accept it when its estimated error stays within
        ``pc_tol`` (step 0 of the module docstring): fewer builds than steps. None (the
        default) means: whenever ``linear_corrector`` is on. Turn it off where the stored
        Fock matrices are training targets (see the module docstring).
    """

    dt: float
    n_steps: int
    propagator: str = "magnus2"
    save_every: int = 1
    pc_tol: float = 1e-9
    max_pc_iter: int = 30
    pc_mixing: int = 3
    linear_corrector: bool = True
    checkpoint_every: int = 500
    carry_model: bool | None = None

    def __post_init__(self):
        if self.carry_model is None:
            self.carry_model = bool(self.linear_corrector)
        if not np.isfinite(self.dt) or self.dt <= 0:
            raise InputError(f"time step dt must be a positive number, got {self.dt}")
        if int(self.n_steps) != self.n_steps or self.n_steps < 1:
            raise InputError(f"number of steps must be a positive integer, got {self.n_steps}")
        if int(self.save_every) != self.save_every or self.save_every < 1:
            raise InputError(f"save_every must be a positive integer, got {self.save_every}")
        if self.propagator not in PROPAGATORS:
            raise InputError(f"unknown propagator '{self.propagator}'; "
                             f"choose from {', '.join(PROPAGATORS)}")
        if int(self.pc_mixing) != self.pc_mixing or self.pc_mixing < 1:
            raise InputError(f"pc_mixing must be a positive integer, got {self.pc_mixing}")
        if not self.pc_tol > 0:
            raise InputError(f"pc_tol must be > 0, got {self.pc_tol}")
        if self.checkpoint_every < 1:
            raise InputError(f"checkpoint_every must be >= 1, got {self.checkpoint_every}")
        if self.carry_model and not self.linear_corrector:
            raise InputError("carrying the linear model between builds needs the linear "
                             "corrector")

    @property
    def n_frames(self) -> int:
        return self.n_steps // self.save_every + 1

    def to_dict(self) -> dict:
        return {"dt": self.dt, "n_steps": self.n_steps, "propagator": self.propagator,
                "save_every": self.save_every, "pc_tol": self.pc_tol,
                "max_pc_iter": self.max_pc_iter, "linear_corrector": self.linear_corrector,
                # only when on: the inputs hash of every other run stays what it was
                **({"carry_model": True} if self.carry_model else {})}


def physics_warnings(fields: list[Field], settings: PropagationSettings) -> list[str]:
    """One line for each field strength or time step beyond :data:`PHYSICS_LIMITS`."""
    lines = []
    for f in fields:
        kind = "kick" if f.is_kick else "amplitude"
        if f.kind != "none" and abs(f.amplitude) > PHYSICS_LIMITS[kind]:
            what = "kick strength |κ|" if f.is_kick else "field amplitude |E0|"
            lines.append(f"{what} {abs(f.amplitude):g} au of field {f.to_spec()} is above "
                         f"{PHYSICS_LIMITS[kind]:g} au (see README, Fields): far from the regime "
                         "rtml's data and models are made for")
    if settings.dt > PHYSICS_LIMITS["dt"]:
        lines.append(f"time step dt = {settings.dt:g} au is above {PHYSICS_LIMITS['dt']:g} au: "
                     "expect the engine to stop when energy conservation breaks; reduce dt")
    return lines


def to_orthonormal(ctx: FockContext, mat_ao: np.ndarray, density: bool) -> np.ndarray:
    """AO -> Löwdin basis: P' = S^1/2 P S^1/2 for densities, F' = S^-1/2 F S^-1/2 else."""
    x = ctx.orth_inv if density else ctx.orth
    return x @ mat_ao @ x


def density_to_ao(ctx: FockContext, p_orth: np.ndarray) -> np.ndarray:
    """P = S^-1/2 P' S^-1/2."""
    return ctx.orth @ p_orth @ ctx.orth


def fock_to_ao(ctx: FockContext, f_orth: np.ndarray) -> np.ndarray:
    """F = S^1/2 F' S^1/2 (inverse of ``to_orthonormal(ctx, F, density=False)``)."""
    return ctx.orth_inv @ f_orth @ ctx.orth_inv


def build_orthonormal(ctx: FockContext, p_orth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Electronic F'[P'] (no field) and E[P] for a batch (nb, nspin, n, n)."""
    fock_ao, energy = fock_and_energy(ctx, density_to_ao(ctx, p_orth))
    return to_orthonormal(ctx, fock_ao, density=False), energy


def apply_kicks(ctx: FockContext, p_orth: np.ndarray, fields: list[Field],
                dip_orth: np.ndarray | None = None) -> np.ndarray:
    r"""Apply delta kicks as the exact unitary :math:`U = \exp(-i\kappa\,\mathbf e\cdot\mathbf D')`.

    :math:`P' \to U P' U^\dagger`; members without a kick are returned unchanged.
    """
    out = p_orth.copy()
    if dip_orth is None:
        dip_orth = to_orthonormal(ctx, ctx.dipole_ints, density=False)
    for b, f in enumerate(fields):
        if f.is_kick and f.amplitude != 0.0:
            u = exp_hermitian(np.einsum("k,kij->ij", f.kick_vector, dip_orth), 1.0)
            out[b] = u @ out[b] @ u.conj().T
    return out


def fock_response(ground_state: GroundState, coarsening: int | None = None):
    """The ground state's :class:`~rtml.tddft._response.FockResponse`, built once and kept
    on the ground state (None when it does not fit the memory budget); its XC kernel on the
    grid of :func:`~rtml.tddft.kernel_context`.

    Args:
        coarsening: build it again with this kernel-grid coarsening (0: the SCF's grid) and
            keep that one (the propagation uses the one kept); default: build once with
            :func:`~rtml.tddft._response.kernel_coarsening`'s (coarser only where the SCF
            grid's kernel would be slow).
    """
    if coarsening is not None or not hasattr(ground_state, "_fock_response"):
        dm = ground_state.density
        dm = dm if dm.ndim == 3 else dm[None]
        grids = getattr(ground_state.mf, "grids", None)
        ctx = ground_state.context
        if coarsening is None:
            coarsening = kernel_coarsening(ctx)
        coarse = kernel_context(ctx, grids.level, coarsening) if grids is not None else ctx
        ground_state._fock_response = build_fock_response(ctx, dm, coarse)
    return ground_state._fock_response


def _extrapolate(history: np.ndarray) -> np.ndarray:
    """Polynomial extrapolation of F' one step ahead from the last 1-3 steps."""
    if len(history) >= 3:
        return 3.0 * history[-1] - 3.0 * history[-2] + history[-3]
    if len(history) == 2:
        return 2.0 * history[-1] - history[-2]
    return history[-1].copy()


def _anderson_update(used: list, residuals: list, active: np.ndarray,
                     fock_used: np.ndarray) -> np.ndarray:
    r"""Next end-point Fock matrix of the corrector: Anderson mixing of the last iterations.

    The corrector solves the fixed point :math:`F = G(F)`, where :math:`G(F)` is the Fock
    matrix built from the density propagated with :math:`F`. With residuals
    :math:`R_j = G(F_j) - F_j` of the last m iterations, each batch member takes

    .. math::

        F_\text{next} = \sum_j c_j G(F_j),\qquad
        c = \arg\min_{\sum_j c_j = 1}\Big\|\sum_j c_j R_j\Big\|_F

    (m = 1 is the plain iteration :math:`F_\text{next} = G(F)`). Near convergence the
    map is linear, so this removes the slowest error components an iteration earlier.

    Args:
        used, residuals: lists of (nb, nspin, n, n) arrays, oldest first.
        active: members still iterating; the others keep ``fock_used``.
    """
    out = fock_used.copy()
    if len(active) == 0:
        return out
    f = np.array([u[active] for u in used])  # (m, na, nspin, n, n)
    r = np.array([res[active] for res in residuals])
    if len(used) == 1:
        out[active] = f[0] + r[0]
        return out
    m, na = r.shape[:2]
    flat = r.reshape(m, na, -1)
    gram = np.einsum("jbx,kbx->bjk", flat.conj(), flat).real  # (na, m, m)
    gram += np.eye(m) * (1e-12 * np.einsum("bjj->b", gram)[:, None, None] + 1e-300)
    ones = np.ones((na, m, 1))
    try:
        coef = np.linalg.solve(gram, ones)[..., 0]
    except np.linalg.LinAlgError:
        out[active] = f[-1] + r[-1]
        return out
    coef /= coef.sum(axis=1, keepdims=True)
    out[active] = np.einsum("bj,jb...->b...", coef, f + r)
    return out


def _density_error_estimate(fock_error: np.ndarray, p_orth: np.ndarray, dt: float) -> np.ndarray:
    r"""First-order error of P'(t+dt) caused by an error in the end-point Fock matrix.

    .. math:: \epsilon_b = \Delta t\,\max_{\sigma\mu\nu}\big|[\Delta F'_{b\sigma}, P'_{b\sigma}]\big|_{\mu\nu}

    Measuring the Fock error through its commutator with P' ignores changes that cannot
    move the density, such as the libxc noise in the potential of an empty spin channel
    (the beta Fock matrix of H2+).
    """
    return dt * _commutator_max(fock_error, p_orth)


def field_on(fields: list[Field], t: float, dt: float) -> np.ndarray:
    """(nb,) bool: the member's field acts during the step [t, t + dt] (|E| > FIELD_OFF at
    its start, middle or end); a kick acts before step 0 only."""
    times = np.array([t, t + 0.5 * dt, t + dt])
    return np.array([bool(np.any(np.abs(f.envelope(times)) > FIELD_OFF)) for f in fields])


def check_invariants(p_orth: np.ndarray, energy: np.ndarray, energy_reference: np.ndarray,
                     energy_ground: float, electrons: np.ndarray, field_is_on: np.ndarray
                     ) -> tuple[str, np.ndarray] | None:
    r"""What a step broke and for which members, or None when it kept the invariants.

    .. math::

        |\mathrm{Tr}\,P'_{b\sigma} - N_\sigma| \le \text{TRACE\_TOL},\qquad
        -\text{tol} \le \lambda(P'_{b\sigma}) \le n_\text{max} + \text{tol},

        |E_b - E_b^\text{ref}| \le \text{ENERGY\_DRIFT\_TOL}
            + \text{ENERGY\_DRIFT\_RTOL}\,|E_b^\text{ref} - E_0| \text{ if the field is off}

    with :math:`n_\text{max}` 2 for one (restricted) spin channel, 1 for two, and
    :math:`E_0` the ground-state energy.

    Args:
        p_orth: (nb, nspin, n, n) density in the Löwdin basis after the step.
        energy, energy_reference: (nb,) E[P] after the step and when the field was last on.
        energy_ground: E[P0] of the ground state.
        electrons: (nspin,) electrons per spin channel.
        field_is_on: (nb,) bool, the field acted during the step (:func:`field_on`).

    Returns:
        The first invariant broken, in words (``"energy drifted by 2.1e-02 Eh with the field
        off (tolerance 9.7e-04 Eh)"``, for the worst member), and the indices of the members
        that broke it.
    """
    trace = np.einsum("bsii->bs", p_orth).real
    trace_error = np.abs(trace - electrons).max(axis=1)
    n_max = 2.0 if p_orth.shape[1] == 1 else 1.0
    occupations = np.linalg.eigvalsh(p_orth)  # (nb, nspin, n), ascending
    occupation_error = np.maximum(-occupations[..., 0], occupations[..., -1] - n_max).max(axis=1)
    drift = np.where(field_is_on, 0.0, np.abs(energy - energy_reference))
    drift_tol = ENERGY_DRIFT_TOL + ENERGY_DRIFT_RTOL * np.abs(energy_reference - energy_ground)
    nb = len(energy)
    for error, tol, what in (
            (trace_error, np.full(nb, TRACE_TOL), "electron count drifted by {:.1e} "
             "(tolerance {:.0e})"),
            (occupation_error, np.full(nb, OCCUPATION_TOL),
             f"an occupation left [0, {n_max:g}] by {{:.1e}} (tolerance {{:.0e}})"),
            (drift, drift_tol, "energy drifted by {:.1e} Eh with the field off "
             "(tolerance {:.1e} Eh)")):
        members = np.flatnonzero(~(error <= tol))  # NaN breaks it too
        if len(members):
            ratio = np.where(np.isnan(error), np.inf, error / tol)
            worst = members[np.argmax(ratio[members])]
            return what.format(error[worst], tol[worst]), members
    return None


def _commutator_max(a: np.ndarray, p: np.ndarray) -> np.ndarray:
    """max |[A, P]| per batch member."""
    comm = a @ p - p @ a
    return np.abs(comm).reshape(len(comm), -1).max(axis=1)


class _FrameBuffer:
    """Frames saved since the last checkpoint flush."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.rows = {"density": [], "fock": [], "time": [], "field": [], "energy": [],
                     "dipole": []}

    def append(self, **row):
        for k, v in row.items():
            self.rows[k].append(v)

    def arrays(self) -> dict:
        if not self.rows["time"]:
            return {}
        return {k: np.asarray(v) for k, v in self.rows.items()}


def propagate(ground_state: GroundState, fields: list[Field], settings: PropagationSettings,
              checkpoint: Checkpoint | None = None, progress=None) -> tuple[dict, dict]:
    """Propagate a batch of fields from the ground state.

    Args:
        ground_state: converged :class:`GroundState` (its Fock context is reused).
        fields: resolved fields (numeric frequencies), one trajectory each.
        settings: :class:`PropagationSettings`.
        checkpoint: optional :class:`Checkpoint`; resumed from when it holds a state for the
            same inputs, written every ``settings.checkpoint_every`` steps.
        progress: optional callable(n_steps_done) called after every step.

    Returns:
        frames: mapping with ``density`` (n_frames, nb, nspin, nao, nao) complex AO densities,
            ``fock`` (n_frames, nb, nspin, nao, nao) complex AO Fock matrices F[P(t)]
            without the field term (the matrix the step accepted, see the module
            docstring), ``time`` (n_frames,), ``field`` (n_frames, nb, 3), ``energy`` (n_frames, nb),
            ``dipole`` (n_frames, nb, 3); with a checkpoint a :class:`CheckpointFrames`, read
            from the checkpoint when asked for (valid until it is removed), else a dict.
        stats: dict with ``n_builds``, ``builds_per_step``, ``wall_time_s`` (the time loop)
            and ``response_setup_s`` (building the linear-response model, once per ground
            state).

    Raises:
        PropagationError: NaN/inf, or a step broke an invariant (:func:`check_invariants`).
        ConvergenceError: the predictor-corrector did not converge.
    """
    if not fields:
        raise InputError("at least one field is needed")
    ctx = ground_state.context
    step_fn = PROPAGATORS[settings.propagator]
    dt = settings.dt
    pol = np.array([f.polarization for f in fields])  # (nb, 3)
    dip_orth = to_orthonormal(ctx, ctx.dipole_ints, density=False)
    coupling = np.einsum("bk,kij->bij", pol, dip_orth)[:, None]  # (nb, 1, n, n)

    def field_vectors(t: float) -> np.ndarray:
        return np.array([f.values(t) for f in fields])  # (nb, 3)

    buffer = _FrameBuffer()

    def record(step, p_orth, energy, fock_orth):
        p_ao = density_to_ao(ctx, p_orth)
        t = step * dt
        buffer.append(density=p_ao, fock=fock_to_ao(ctx, fock_orth), time=t,
                      field=field_vectors(t), energy=energy, dipole=electronic_dipole(p_ao, ctx))

    ground_orth = to_orthonormal(ctx, ground_state.density, density=True).astype(complex)
    electrons = np.einsum("sii->s", ground_orth).real  # (nspin,), kept by every step
    invariants = {"electrons": electrons, "energy_ground": ground_state.energy}
    state = checkpoint.load() if checkpoint is not None else None
    if state is not None:
        log.info("resuming from checkpoint %s at step %d", checkpoint.path, state.step)
        if state.energy_reference is None:  # written before the reference was recorded
            state.energy_reference = state.energy
    else:
        p0 = apply_kicks(ctx, np.repeat(ground_orth[None], len(fields), axis=0), fields,
                         dip_orth)
        fock0, energy0 = build_orthonormal(ctx, p0)
        state = PropagationState(step=0, p_orth=p0, fock_history=fock0[None], energy=energy0,
                                 n_builds=len(fields), energy_reference=energy0)
        record(0, p0, energy0, fock0)
        if checkpoint is not None:
            checkpoint.save(state, buffer.arrays())
            buffer.clear()

    setup = _time.perf_counter()
    steps_left = state.step < settings.n_steps
    response = fock_response(ground_state) if settings.linear_corrector and steps_left else None
    setup = _time.perf_counter() - setup
    # every matrix of a step is tiny: threaded BLAS would only add a thread synchronisation
    # to each of them (libxc and the integrals keep their OpenMP threads)
    with _blas_controller().limit(limits=1, user_api="blas"):
        stats = _propagate_steps(ctx, fields, settings, state, step_fn, coupling, buffer, record,
                                 checkpoint, progress, invariants, response)
    frames = CheckpointFrames(checkpoint) if checkpoint is not None else buffer.arrays()
    return frames, {**stats, "response_setup_s": setup}


def propagate_segment(ground_state: GroundState, fields: list[Field], settings: PropagationSettings,
                      p_orth: np.ndarray, start_step: int, n_steps: int,
                      fock_previous: np.ndarray | None = None, record=None) -> dict:
    r"""Continue the engine from any density :math:`P'(t_s)`, :math:`t_s` = ``start_step`` dt,
    for ``n_steps`` steps: the hybrid engine's re-anchoring (:mod:`rtml.model._hybrid`).

    The step is :func:`propagate`'s, with its invariants checked against the handed-in
    density (its energy is the reference a field-free member keeps). The first Fock matrix
    is a full build at :math:`P'(t_s)`; ``fock_previous``, an estimate of :math:`F'` one step
    earlier (e.g. the model's), makes the first predictor a linear extrapolation instead of a
    constant (a warm start: fewer corrector iterations, the same converged step).

    Args:
        ground_state: the converged ground state (its Fock context and linear response).
        fields: resolved fields, one per batch member.
        p_orth: (nb, nspin, n, n) complex Löwdin densities at ``start_step``.
        fock_previous: (nb, nspin, n, n) electronic F' at ``start_step - 1``, or None.
        record: optional callable(step, p_orth, energy, fock_orth), called after every step
            (whatever ``settings.save_every`` is).

    Returns:
        ``p_orth``, ``fock`` (electronic F' of the last density), ``energy`` (nb,) at
        ``start_step + n_steps``; ``fock_start`` and ``energy_start``, the build at the
        handed-in density; ``n_builds``.
    """
    ctx = ground_state.context
    pol = np.array([f.polarization for f in fields])
    dip_orth = to_orthonormal(ctx, ctx.dipole_ints, density=False)
    coupling = np.einsum("bk,kij->bij", pol, dip_orth)[:, None]
    fock_start, energy = build_orthonormal(ctx, p_orth)
    history = fock_start[None] if fock_previous is None else np.stack([fock_previous, fock_start])
    state = PropagationState(step=start_step, p_orth=np.array(p_orth, dtype=complex),
                             fock_history=history, energy=energy.copy(),
                             n_builds=len(fields), energy_reference=energy.copy())
    ground_orth = to_orthonormal(ctx, ground_state.density, density=True)
    invariants = {"electrons": np.einsum("sii->s", ground_orth).real,
                  "energy_ground": ground_state.energy}
    segment = dataclasses.replace(settings, n_steps=start_step + n_steps, save_every=1)
    response = fock_response(ground_state) if settings.linear_corrector else None
    with _blas_controller().limit(limits=1, user_api="blas"):
        _propagate_steps(ctx, fields, segment, state, PROPAGATORS[settings.propagator],
                         coupling, None, record or (lambda *a: None), None, None, invariants,
                         response)
    return {"p_orth": state.p_orth, "fock": state.fock_history[-1], "energy": state.energy,
            "fock_start": fock_start, "energy_start": energy, "n_builds": state.n_builds}


class _LinearCorrector:
    r"""Corrector iterations on the linear response of the Fock matrix, with error control.

    Between full builds the end-point Fock matrix is modelled as
    :math:`F_\text{lin}(P') = F'_b + \mathcal L'[P' - P'_b]` around the last full build
    :math:`(P'_b, F'_b)` (:math:`\mathcal L' = X\mathcal L[X\cdot X]X`, X = S^{-1/2}); its
    fixed point costs small matrix products only. The model's error is measured, per batch
    member, on every pair of consecutive full builds,

    .. math:: \epsilon = \frac{\max|[F'_{b,2} - F'_{b,1} - \mathcal L'[P'_{b,2} - P'_{b,1}], P'_{b,2}]|}
                               {\max|[\mathcal L'[P'_{b,2} - P'_{b,1}], P'_{b,2}]|}

    (zero up to rounding for Hartree-Fock, where F is linear in P; for DFT it is the
    curvature of the XC energy and the drift of the density away from the kernel's
    reference). The model's fixed point is accepted without another build when its
    residual plus :math:`\epsilon\,\Delta t\max|[F_\text{lin} - F'_b, P']|` is below
    ``pc_tol``; otherwise it is the next full iteration's guess (a Newton-like step).
    """

    #: Changes smaller than this (in max|[dF, P]|) measure rounding, not the model.
    MIN_SIGNAL = 1e-11

    def __init__(self, response, ctx: FockContext, nb: int, state: PropagationState):
        self.response = response
        self.orth = ctx.orth
        self.error = (np.full(nb, np.inf) if state.model_error is None
                      else np.array(state.model_error, dtype=float))
        self.build_density = state.build_density
        self.build_fock = state.build_fock
        self.build_energy = state.build_energy
        if self.build_density is not None and self.build_energy is None:
            self.build_energy = np.full(nb, np.nan)  # a checkpoint from before energies were kept
        self.signal = (np.full(nb, np.inf) if state.model_signal is None
                       else np.array(state.model_signal, dtype=float))

    def apply(self, dp_orth: np.ndarray) -> np.ndarray:
        """L'[dP'] in the Löwdin basis."""
        x = self.orth
        return x @ self.response.apply(x @ dp_orth @ x) @ x

    def observe(self, members: np.ndarray, p_built: np.ndarray, fock_built: np.ndarray,
                energy_built: np.ndarray) -> None:
        """Update the members' model error with a new full build (P'_b, F'_b, E[P'_b]).

        The first build of a propagation covers every member, so after it each member has
        an expansion point to compare with.
        """
        if self.build_density is None:
            self.build_density, self.build_fock = p_built.copy(), fock_built.copy()
            self.build_energy = energy_built.copy()
            return
        linear = self.apply(p_built - self.build_density[members])
        signal = _commutator_max(linear, p_built)
        miss = _commutator_max(fock_built - self.build_fock[members] - linear, p_built)
        measured = signal > self.MIN_SIGNAL
        self.error[members[measured]] = miss[measured] / signal[measured]
        self.signal[members[measured]] = signal[measured]
        self.build_density[members] = p_built
        self.build_fock[members] = fock_built
        self.build_energy[members] = energy_built

    def _model_estimate(self, members, fock_lin, p_lin, fock_built, dt) -> np.ndarray:
        r"""The model's error estimate of a carried step: :math:`\epsilon\,c\max(1, c/s)`
        with :math:`c = \Delta t\max|[F_\text{lin} - F'_b, P']|` (see :meth:`solve`)."""
        change = _density_error_estimate(fock_lin - fock_built, p_lin, dt)
        return (self.error[members] * change
                * np.maximum(1.0, change / (dt * self.signal[members])))

    def solve(self, members, step_fn, p_start, fock_start, fock_past, field_term, t, dt,
              p_built, fock_built, energy_built, settings, beyond_measured=False,
              fock_guess=None):
        r"""Fixed point of the linear model for ``members`` (rows of the other arrays),
        iterated from ``fock_guess`` (default: the build's own Fock matrix).

        With ``beyond_measured`` (the build may lie several steps back) the model's error is
        extrapolated beyond the change :math:`s` it was measured on: its part beyond linear
        grows quadratically with the change :math:`c = \max|[\mathcal L'[P' - P'_b], P']|`,
        so the relative error :math:`\epsilon` becomes :math:`\epsilon\max(1, c/s)`, and a
        member whose estimate alone passes 2 ``pc_tol`` stops iterating, not accepted.

        Returns:
            p, fock, energy of the model's fixed point, and a boolean array: accepted
            without another build.
        """
        n = len(members)
        fock_used = (fock_built if fock_guess is None else fock_guess).copy()
        p_out, fock_out = np.empty_like(p_built), np.empty_like(fock_built)
        residual_est = np.full(n, np.inf)
        active = np.arange(n)
        used_history, residual_history = [], []
        for _ in range(settings.max_pc_iter):
            past = None if fock_past is None else fock_past[:, active]
            p_try = step_fn(p_start[active], fock_start[active], fock_used[active],
                            field_term(members[active]), t, dt, fock_past=past)
            fock_lin = fock_built[active] + self.apply(p_try - p_built[active])
            change = _density_error_estimate(fock_lin - fock_used[active], p_try, dt)
            converged = ~(change >= 0.1 * settings.pc_tol)  # NaN ends the iteration too
            done = converged.copy()
            if beyond_measured:
                # a carried step whose model error alone is already well over pc_tol cannot
                # be accepted: stop iterating it (a strong field would otherwise pay a whole
                # solve per step before its build); its prediction is the build's guess
                done |= self._model_estimate(members[active], fock_lin, p_try,
                                             fock_built[active], dt) > 2.0 * settings.pc_tol
            for j in np.flatnonzero(done):
                r = active[j]
                p_out[r], fock_out[r] = p_try[j], fock_lin[j]
                if converged[j]:
                    residual_est[r] = change[j]
            residual = np.zeros_like(fock_used)
            residual[active] = fock_lin - fock_used[active]
            used_history = (used_history + [fock_used.copy()])[-settings.pc_mixing:]
            residual_history = (residual_history + [residual])[-settings.pc_mixing:]
            p_out[active[~done]] = p_try[~done]  # kept only if the iteration runs out
            active = active[~done]
            if len(active) == 0:
                break
            fock_used = _anderson_update(used_history, residual_history, active, fock_used)
        # not converged: not accepted, and the next mixed iterate is the full build's guess
        fock_out[active] = fock_used[active]
        if beyond_measured:
            model_est = self._model_estimate(members, fock_out, p_out, fock_built, dt)
        else:
            model_est = self.error[members] * _density_error_estimate(fock_out - fock_built,
                                                                       p_out, dt)
        accepted = (residual_est + model_est < settings.pc_tol) & np.isfinite(model_est)
        dp = p_out - p_built
        # E[P] to second order around the build: dE = Re Tr(F dP) + 1/2 Re Tr(L[dP] dP)
        energy = (energy_built + np.einsum("bsij,bsji->b", fock_built, dp).real
                  + 0.5 * np.einsum("bsij,bsji->b", fock_out - fock_built, dp).real)
        return p_out, fock_out, energy, accepted


def _carried_step(model: _LinearCorrector, step_fn, state: PropagationState, fock_start,
                  fock_past, fock_used, field_term_for, t: float, dt: float,
                  settings: PropagationSettings, p_next, fock_next, energy_next) -> np.ndarray:
    """Step 0 of the module docstring: the step of every member whose model error has been
    measured, on the linear model around its last full build, without a build, iterated
    from the extrapolated end-point Fock matrix ``fock_used`` (the build's own, which may
    lie many steps back, is a poorer start: H2O, weak kick, 4.3 iterations per step against
3.8).

    Accepted members' results go into ``p_next``, ``fock_next``, ``energy_next``; the others
    get the model's fixed point as their predictor (``fock_used``). Returns (nb,) bool:
    accepted.
    """
    accepted = np.zeros(len(state.p_orth), dtype=bool)
    if model.build_energy is None:
        return accepted
    members = np.flatnonzero(np.isfinite(model.error) & np.isfinite(model.build_energy))
    if len(members) == 0:
        return accepted
    p_lin, fock_lin, energy_lin, ok = model.solve(
        members, step_fn, state.p_orth[members], fock_start[members],
        fock_past[:, members] if len(fock_past) else None, field_term_for, t, dt,
        model.build_density[members], model.build_fock[members], model.build_energy[members],
        settings, beyond_measured=True, fock_guess=fock_used[members])
    kept = members[ok]
    p_next[kept], fock_next[kept], energy_next[kept] = p_lin[ok], fock_lin[ok], energy_lin[ok]
    # the model's prediction is the full path's guess; a NaN one is not (the full path then
    # meets the NaN itself and reports it in one line)
    handed = ~ok & np.isfinite(fock_lin).reshape(len(members), -1).all(axis=1)
    fock_used[members[handed]] = fock_lin[handed]
    accepted[kept] = True
    return accepted


def _propagate_steps(ctx, fields, settings, state, step_fn, coupling, buffer, record, checkpoint,
                     progress, invariants, response=None):
    """The time loop of :func:`propagate` (advances ``state``); returns its statistics.

    ``invariants``: ``electrons`` (nspin,) and ``energy_ground`` for :func:`check_invariants`.
    """
    dt = settings.dt

    amplitude_cache: dict = {}

    def amplitudes(t):
        """E(t) of every member; a step asks for the same few times on every iteration."""
        if t not in amplitude_cache:
            if len(amplitude_cache) > 8:
                amplitude_cache.clear()
            amplitude_cache[t] = np.array([f.envelope(t) for f in fields])
        return amplitude_cache[t]

    def field_term_for(members):
        def term(t):
            return amplitudes(t)[members][:, None, None, None] * coupling[members]
        return term

    start = _time.perf_counter()
    first_step = state.step
    nb = len(fields)
    model = _LinearCorrector(response, ctx, nb, state) if response is not None else None
    carry = model is not None and settings.carry_model
    if progress is not None:
        progress(state.step)
    while state.step < settings.n_steps:
        t = state.step * dt
        fock_start = state.fock_history[-1]
        fock_used = _extrapolate(state.fock_history)
        fock_past = state.fock_history[:-1]
        p_next = np.empty_like(state.p_orth)
        fock_next = np.empty_like(fock_start)
        energy_next = np.empty(nb)
        active = np.arange(nb)
        if carry:
            done = _carried_step(model, step_fn, state, fock_start, fock_past, fock_used,
                                 field_term_for, t, dt, settings, p_next, fock_next, energy_next)
            active = active[~done]
        used_history, residual_history = [], []
        for _ in range(settings.max_pc_iter if len(active) else 0):
            p_try = step_fn(state.p_orth[active], fock_start[active], fock_used[active],
                            field_term_for(active), t, dt, fock_past=fock_past[:, active])
            fock_built, energy_built = build_orthonormal(ctx, p_try)
            state.n_builds += len(active)
            change = _density_error_estimate(fock_built - fock_used[active], p_try, dt)
            done = change < settings.pc_tol
            guess = fock_built
            if model is not None:
                model.observe(active, p_try, fock_built, energy_built)
                rest = np.flatnonzero(~done & np.isfinite(change))
                if len(rest):
                    members = active[rest]
                    p_lin, fock_lin, energy_lin, ok = model.solve(
                        members, step_fn, state.p_orth[members], fock_start[members],
                        fock_past[:, members] if len(fock_past) else None, field_term_for, t, dt,
                        p_try[rest], fock_built[rest], energy_built[rest], settings)
                    guess = fock_built.copy()
                    guess[rest] = fock_lin
                    accept = rest[ok]
                    p_try[accept], fock_built[accept] = p_lin[ok], fock_lin[ok]
                    energy_built[accept] = energy_lin[ok]
                    done[accept] = True
            for j in np.flatnonzero(done):
                b = active[j]
                p_next[b], fock_next[b], energy_next[b] = p_try[j], fock_built[j], energy_built[j]
            if model is not None:
                # the linear model's fixed point is the next guess (a Newton-like step)
                active = active[~done]
                fock_used[active] = guess[~done]
            else:
                residual = np.zeros_like(fock_used)
                residual[active] = fock_built - fock_used[active]
                used_history = (used_history + [fock_used.copy()])[-settings.pc_mixing:]
                residual_history = (residual_history + [residual])[-settings.pc_mixing:]
                active = active[~done]
                fock_used = _anderson_update(used_history, residual_history, active, fock_used)
            if len(active) == 0:
                break
            if not np.all(np.isfinite(change)):
                break
        if len(active):
            bad = ", ".join(fields[b].to_spec() for b in active)
            if not np.all(np.isfinite(fock_used)):
                raise PropagationError(f"NaN/inf in the Fock matrix at step {state.step + 1} "
                                       f"(t = {t + dt:.3f} au) for field {bad}; reduce dt")
            raise ConvergenceError(f"predictor-corrector did not converge in {settings.max_pc_iter} "
                                   f"iterations at step {state.step + 1} for field {bad}; "
                                   "reduce dt or loosen pc_tol")
        if not (np.all(np.isfinite(p_next)) and np.all(np.isfinite(energy_next))):
            raise PropagationError(f"NaN/inf in the density at step {state.step + 1} "
                                   f"(t = {t + dt:.3f} au); reduce dt")
        on = field_on(fields, t, dt)
        broken = check_invariants(p_next, energy_next, state.energy_reference,
                                  field_is_on=on, **invariants)
        if broken is not None:
            what, members = broken
            bad = ", ".join(fields[b].to_spec() for b in members)
            raise PropagationError(f"{what} at step {state.step + 1} (t = {t + dt:.3f} au) for "
                                   f"field {bad}: the time step dt = {dt:g} au is too long for "
                                   "this system; reduce dt")
        state.energy_reference = np.where(on, energy_next, state.energy_reference)
        state.step += 1
        state.p_orth = p_next
        state.fock_history = np.concatenate([state.fock_history[-2:], fock_next[None]])
        state.energy = energy_next
        if model is not None:
            state.model_error = model.error
            state.build_density, state.build_fock = model.build_density, model.build_fock
            state.build_energy, state.model_signal = model.build_energy, model.signal
        if state.step % settings.save_every == 0:
            record(state.step, p_next, energy_next, fock_next)
        if checkpoint is not None and (state.step % settings.checkpoint_every == 0
                                       or state.step == settings.n_steps):
            checkpoint.save(state, buffer.arrays())
            buffer.clear()
        if progress is not None:
            progress(state.step)

    steps_done = max(state.step - first_step, 1)
    wall = _time.perf_counter() - start
    return {"n_builds": state.n_builds,
            "builds_per_step": state.n_builds / (nb * max(settings.n_steps, 1)),
            "wall_time_s": wall, "wall_time_per_step_s": wall / steps_done}
