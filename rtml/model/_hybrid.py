r"""The hybrid engine (``rtml propagate --engine hybrid``): the model propagates, its ensemble
says how sure it is, and the RT-TDDFT engine takes over when it is not.

One trajectory at a time, from the SCF ground state with the engine's kicks:

1. **Anchor**: the RT engine (:func:`rtml.tddft.propagate_segment`) runs ``anchor_steps``
   exact steps from the current density, warm-started with the ensemble's Fock matrix one
   step earlier; the first anchor runs ``calibration_steps`` with a free model run beside
   it, whose divergence from the engine over the per-step errors below is the share of
   them that adds up (the coherence, which scales every later estimate). On every one of them the ensemble's Fock matrix
   :math:`\tilde F' = F_0' + \overline{\Delta G'}[P']` is compared with the engine's exact
   :math:`F'[P']`: the density error one model step would make,

   .. math:: \varepsilon = \Delta t\,\max_k \bigl\|[\tilde F'_k - F'_k,\ P'_k]\bigr\|_F ,

   relative to the size of the dynamics so far, :math:`s = \max_{t' \le t}\|P'(t') - P_0'\|_F`
   (the evaluation's scale), is the error each model step is estimated to add; the rate r
   used ahead is the largest measured so far. Model steps may follow while the estimated
   error of all model steps stays within ``error_tol``: :math:`L = \min(L_\text{cap},
   \lfloor(\text{error\_tol} - \text{spent})/r\rfloor)`, where the cap starts at four
   anchors and doubles with each segment up to ``max_model_steps`` (the rate is measured
   again early, while the dynamics develops: after a kick the density's real part, which
   the XC potential follows, grows from zero). At the next anchor the segment's cost is
   corrected to the trapezoid of its rates at both ends. The engine does not undo an error
   the model made (it continues from the model's density), so ``spent`` is the hybrid's
   estimate of its own error, recorded in the file (LiH, a model without its XC response:
   1.2x the real error). A model whose Fock matrix is wrong (untrained, broken, off its
   training distribution) gets L = 0: the engine goes on, checking the model again after
   twice as many steps each time, and the log says why; once the budget is spent the
   engine finishes the trajectory.
2. **Model steps** (:class:`rtml.model.EnsembleStepper`: the members' mean ΔG' drives one
   exact unitary step, so trace, Hermiticity and occupations are kept). Each step adds the
   ensemble's disagreement :math:`\sigma_k` (:meth:`~rtml.model.EnsembleStepper.spread`) to
   a running sum; the model hands back to 1 when any of: :math:`\sum\sigma_k / s` above
   ``spread_tol``, L steps done, the trace or Hermiticity of P' off by more than
   ``physics_tol``.

During an anchor the members' gate memories are advanced over the engine's densities, so
the model resumes with the history it would have had.

The trajectory records, per saved frame, what produced it (``frame_source``: 0 engine, 1
model), every anchor with its reason, step, measured ε/s and the model steps it allowed
(root attribute ``hybrid_anchors``, JSON), the settings and the error estimate
(``hybrid_error_estimate``), and the wall seconds per engine step and per model step timed
on the first anchor (``hybrid_step_seconds``). Where the model's step is not the faster
the log warns that the engine alone would be faster: H2O after a weak kick (1e-4), where
the engine's carried linear response takes 0.8 ms per step (one field, dt 0.125) and the
shipped 3-member ensemble 6.6 ms; after a kick of 5e-3 the engine builds every step, 13 ms.
The run itself does not depend on timings, so the same command gives the same frames.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from rtml._errors import InputError
from rtml.model._engine import engine_system, model_energy
from rtml.model._hybrid_settings import HybridSettings
from rtml.model._physics import density_norm
from rtml.model._rtml import EnsembleStepper, RTMLPropagator, stack_systems
from rtml.tddft import (apply_kicks, electronic_dipole, fock_response, propagate_segment,
                        to_orthonormal)

log = logging.getLogger("rtml.model")

#: Propagator recorded in the hybrid's trajectories.
HYBRID_PROPAGATOR_NAME = "hybrid-model-magnus2"

#: Values of the ``frame_source`` dataset.
FROM_ENGINE, FROM_MODEL = 0, 1

#: Dynamics smaller than this (‖P' - P0'‖_F) count as none when relative errors are formed.
_SCALE_FLOOR = 1e-8


def _commutator_norm(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    return density_norm(a @ p - p @ a)


def propagate_hybrid(ground_state, fields, settings, propagator: RTMLPropagator,
                     hybrid: HybridSettings, progress=None,
                     checkpoint_dir=None) -> tuple[dict, dict, list]:
    """Hybrid propagation of each field from ``ground_state`` (see the module docstring).

    Args:
        ground_state: :class:`rtml.tddft.GroundState` (converged, with its Fock context).
        fields: resolved :class:`rtml.fields.Field` list, one trajectory each.
        settings: :class:`rtml.tddft.PropagationSettings` (``dt``, ``n_steps``,
            ``save_every``; the engine's steps use its propagator and tolerances).
        propagator: a loaded rtml model or ensemble (:func:`rtml.model.load_model`).
        hybrid: :class:`HybridSettings`.
        progress: optional callable(n_steps_done), summed over the fields.
        checkpoint_dir: optional directory: each field's run state is saved there at the
            first anchor or segment boundary after every ``settings.checkpoint_every`` steps,
            and a finished field's result once it is done; a rerun with the same inputs
            resumes from them and gives the same frames bit for bit. A checkpoint of other
            inputs, or one that cannot be read, is reported in one line and started over.

    Returns:
        frames and stats as :func:`rtml.tddft.propagate` returns them (``fock`` absent), and
        one ``(datasets, attrs)`` pair per field: ``frame_source`` and the anchors.
    """
    if not isinstance(propagator, RTMLPropagator):
        raise InputError("--engine hybrid needs a trained rtml model (not a baseline)")
    if settings.n_steps % settings.save_every:
        raise InputError(f"--steps ({settings.n_steps}) must be a multiple of --save-every "
                         f"({settings.save_every})")
    t_setup = time.perf_counter()
    system, maps = engine_system(ground_state, propagator)
    fock_response(ground_state)          # the engine's linear response, built once
    t_setup = time.perf_counter() - t_setup
    t0 = time.perf_counter()
    runs = []
    identity = _run_identity(ground_state, settings, propagator.members, hybrid)
    for b, field in enumerate(fields):
        offset = b * settings.n_steps
        store = (None if checkpoint_dir is None else
                 _HybridCheckpoint(Path(checkpoint_dir) / f"hybrid-{b:03d}.pt",
                                   f"{identity}|{field.to_spec()}"))
        runs.append(_hybrid_trajectory(
            ground_state, field, settings, propagator.members, system, maps, hybrid,
            None if progress is None else (lambda k, o=offset: progress(o + k)), store))
    wall = time.perf_counter() - t0
    ctx = ground_state.context
    rho_ao = np.stack([system.to_ao_density(torch.as_tensor(r["rho"])[None])[0].numpy()
                       for r in runs])                                     # (nb, T, S, n, n)
    time_axis = np.arange(0, settings.n_steps + 1, settings.save_every) * settings.dt
    frames = {
        "density": np.swapaxes(rho_ao, 0, 1),
        "time": time_axis,
        "field": np.swapaxes(np.stack([f.values(time_axis) for f in fields]), 0, 1),
        "energy": np.stack([r["energy"] for r in runs], axis=1),
        "dipole": np.swapaxes(electronic_dipole(rho_ao, ctx), 0, 1),
        "fock": None,
    }
    n_builds = sum(r["n_builds"] for r in runs)
    total = settings.n_steps * len(fields)
    stats = {"n_builds": n_builds, "builds_per_step": n_builds / max(total, 1),
             "wall_time_s": wall, "wall_time_per_step_s": wall / max(total, 1),
             "response_setup_s": 0.0, "setup_s": t_setup,
             "model_steps": sum(r["model_steps"] for r in runs),
             "engine_steps": sum(r["engine_steps"] for r in runs),
             "anchors": sum(len(r["anchors"]) for r in runs)}
    extras = []
    for r in runs:
        attrs = {"hybrid_settings": asdict(hybrid), "hybrid_anchors": r["anchors"],
                 "hybrid_model_steps": r["model_steps"], "hybrid_engine_steps": r["engine_steps"],
                 "hybrid_error_estimate": r["error_estimate"],
                 "hybrid_coherence": r["coherence"],
                 # wall time, not a result: machine-dependent, outside the run's identity
                 "hybrid_step_seconds": r["step_seconds"]}
        extras.append(({"frame_source": r["source"]}, attrs))
    return frames, stats, extras


@torch.no_grad()
def _hybrid_trajectory(ground_state, field, settings, members, system, maps,
                       hybrid: HybridSettings, progress, store=None) -> dict:
    """One field's hybrid run: Löwdin densities, energies and sources of the saved frames,
    the anchors, step and build counts (resumed from ``store`` when it holds this run)."""
    saved = None if store is None else store.load()
    if saved is not None and saved.get("done"):
        if progress is not None:
            progress(settings.n_steps)
        return saved["result"]
    run = _HybridRun(ground_state, field, settings, members, system, maps, hybrid, progress)
    reason = "start"
    if saved is not None:
        reason = run.restore(saved)
        log.info("hybrid: resumed at step %d from %s", run.step, store.path)
        if progress is not None:
            progress(run.step)
    last_saved = run.step
    while run.step < settings.n_steps:
        reason = run.anchor(reason) if reason is not None else run.model_segment()
        if (store is not None and run.step < settings.n_steps
                and run.step - last_saved >= settings.checkpoint_every):
            store.save(run.state(reason))
            last_saved = run.step
    result = run.result()
    if store is not None:
        store.save({"done": True, "result": result})
    return result


def _run_identity(ground_state, settings, members, hybrid: HybridSettings) -> str:
    """What a checkpoint must match to be resumed: the ground state, the step settings, the
    hybrid settings and the members' weights (SHA-256)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(ground_state.density).tobytes())
    digest.update(repr((settings.dt, settings.n_steps, settings.save_every, settings.propagator,
                        settings.pc_tol, settings.linear_corrector, settings.carry_model,
                        sorted(asdict(hybrid).items()))).encode())
    for member in members:
        for name, tensor in member.state_dict().items():
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


class _HybridCheckpoint:
    """One field's checkpoint file (written atomically: temporary name, then rename)."""

    def __init__(self, path: Path, identity: str):
        self.path, self.identity = path, identity

    def load(self) -> dict | None:
        if not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
            if not isinstance(state, dict) or "identity" not in state:
                raise ValueError("not a hybrid checkpoint")
        except Exception as err:  # noqa: BLE001 - any damage means: start over
            log.warning("hybrid checkpoint %s cannot be read (%s): starting this field over",
                        self.path, str(err).splitlines()[0] if str(err) else type(err).__name__)
            return None
        if state["identity"] != self.identity:
            log.warning("hybrid checkpoint %s is of other inputs: starting this field over",
                        self.path)
            return None
        return state

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        torch.save({**state, "identity": self.identity}, tmp)
        os.replace(tmp, self.path)


class _HybridRun:
    """State of one field's hybrid run (see the module docstring)."""

    def __init__(self, ground_state, field, settings, members, system, maps, hybrid, progress):
        ctx = ground_state.context
        self.gs, self.field, self.settings, self.hybrid = ground_state, field, settings, hybrid
        self.members, self.system, self.maps, self.progress = members, system, maps, progress
        self.dt, self.n = settings.dt, settings.n_steps
        self.p_gs = torch.as_tensor(to_orthonormal(ctx, ground_state.density, density=True)[None]
                                    ).to(torch.complex128)
        self.p = torch.as_tensor(apply_kicks(ctx, self.p_gs.numpy().copy(), [field]))
        self.f0 = system.fock0.to(torch.complex128)
        self.electrons = torch.einsum("bsii->bs", self.p_gs).real
        self.field_mid = torch.as_tensor(field.values((np.arange(self.n) + 0.5) * self.dt))[None]
        self.stepper = EnsembleStepper(members, system, maps)
        self.rho, self.source, self.energy = [self.p], [FROM_ENGINE], [np.nan]
        self.anchors: list[dict] = []
        self.counts = {"model_steps": 0, "engine_steps": 0, "n_builds": 0}
        # wall seconds per step of the engine and of the model, timed on the first anchor
        self.step_seconds = {"engine": None, "model": None}
        self.scale = float(density_norm(self.p - self.p_gs)[0])
        self.step = 0
        self.fock_previous = None      # the ensemble's F' one step before an anchor (warm start)
        self.spent = 0.0               # estimated error the model steps have added (relative)
        self.rate = 0.0                # estimated error per model step, never lowered
        self.rate_at_start = None      # ... when the last model segment started
        self.segment_steps = 0         # model steps of the current (last) segment
        self.coherence = 1.0           # measured error / sum of per-step errors (first anchor)
        self.allowed = 0
        self.anchor_len = hybrid.anchor_steps
        # a segment is at most twice the last one: the error per step is measured again early,
        # while the dynamics develops, and rarely once it is known
        self.segment_cap = min(4 * hybrid.anchor_steps, hybrid.max_model_steps)

    #: Attributes that, with the gate memories, are a run's whole state between an anchor
    #: and a model segment.
    _STATE = ("step", "p", "rho", "source", "energy", "anchors", "counts", "step_seconds",
              "scale", "spent", "rate", "rate_at_start", "segment_steps", "coherence", "allowed",
              "anchor_len", "segment_cap", "fock_previous")

    def state(self, reason) -> dict:
        """Everything :meth:`restore` needs to go on exactly where this run is; ``reason`` is
        the loop's next action (None: a model segment)."""
        return {**{name: getattr(self, name) for name in self._STATE},
                "caches": self.stepper.caches, "reason": reason}

    def restore(self, state: dict):
        """Take over a :meth:`state`; returns the loop's next action."""
        for name in self._STATE:
            setattr(self, name, state[name])
        self.stepper.caches = state["caches"]
        return state["reason"]

    def _save(self, k, p_now, src, e=None):
        if k % self.settings.save_every == 0:
            self.rho.append(p_now)
            self.source.append(src)
            self.energy.append(np.nan if e is None else e)

    def _relative(self, x: float) -> float:
        return x / max(self.scale, _SCALE_FLOOR)

    def anchor(self, reason: str) -> str | None:
        """Run the engine from the current density; measure the model on its steps; return
        why the engine goes on, or None when the model may take over."""
        hybrid, dt = self.hybrid, self.dt
        first = reason == "start"
        if reason == "error budget spent":
            return self._finish(reason)
        length = hybrid.calibration_steps if first else self.anchor_len
        k_steps = min(length, self.n - self.step)
        seen = []

        def record(*frame):
            seen.append(frame)
            if self.progress is not None:
                self.progress(frame[0])

        start = self.step
        p_start = self.p
        shadow = EnsembleStepper(self.members, self.system, self.maps) if first else None
        clock = time.perf_counter()
        out = self._engine_segment(k_steps, record)
        engine_s = time.perf_counter() - clock
        model_s = 0.0
        # the model's Fock error on each density the engine stepped from (the gate memories
        # are advanced over them); on the first anchor also a free model run beside it
        eps = []
        starts = [(p_start, out["fock_start"])] + [(torch.as_tensor(f[1]), f[3]) for f in seen[:-1]]
        diverged, p_shadow = 0.0, p_start
        for j, (p_j, fock_exact) in enumerate(starts):
            g = self.stepper.observe(p_j)
            eps.append(dt * float(_commutator_norm(self.f0 + g - torch.as_tensor(fock_exact), p_j)[0]))
            if shadow is not None:
                clock = time.perf_counter()
                p_shadow = shadow.step(p_shadow, self.field_mid[:, start + j], dt)
                model_s += time.perf_counter() - clock
                diverged = max(diverged, float(density_norm(p_shadow - torch.as_tensor(seen[j][1]))[0]))
        for k, p_orth, e, _ in seen:
            p_k = torch.as_tensor(p_orth)
            self.scale = max(self.scale, float(density_norm(p_k - self.p_gs)[0]))
            self._save(k, p_k, FROM_ENGINE, float(e[0]))
        if start == 0:
            self.energy[0] = float(out["energy_start"][0])
        self.p, self.step = torch.as_tensor(out["p_orth"]), start + k_steps
        if shadow is not None:
            self._compare_step_times(engine_s / k_steps, model_s / k_steps)
        if shadow is not None and sum(eps) > 0:
            # errors of a good model partly cancel over the dynamics' periods: the share that
            # adds up, measured on this window, scales every later estimate
            self.coherence = float(np.clip(diverged / sum(eps), 0.01, 1.0))
        measured = self.coherence * self._relative(max(eps))
        if self.segment_steps:   # the last segment's cost: its rates at both ends (trapezoid)
            self.spent += self.segment_steps * 0.5 * (measured - self.rate_at_start)
        self.segment_steps = 0
        self.rate = max(self.rate, measured)
        left = max(hybrid.error_tol - self.spent, 0.0)
        self.allowed = int(min(self.segment_cap, left // self.rate if self.rate > 0 else np.inf))
        entry = {"step": start, "reason": reason, "engine_steps": k_steps,
                 "model_error_per_step": measured, "model_steps_allowed": self.allowed}
        if first:
            entry["coherence"] = self.coherence
        self.anchors.append(entry)
        log.info("anchor at step %d (t = %.1f au, %s): %d engine steps; model error %.1e per "
                 "step%s, %.1e left -> %s", start, start * dt, reason, k_steps, measured,
                 f" (coherence {self.coherence:.2f})" if first else "", left,
                 f"{self.allowed} model steps" if self.allowed else "the engine goes on")
        if self.allowed == 0:
            self.fock_previous = None
            if self.spent > 0 and left < self.rate:
                return "error budget spent"     # the engine finishes (:meth:`_finish`)
            # refused: checked again after twice as many engine steps
            self.anchor_len = min(2 * self.anchor_len, hybrid.max_model_steps)
            return "model error above budget"
        self.anchor_len = hybrid.anchor_steps
        self.rate_at_start = self.rate
        self.segment_cap = min(2 * self.segment_cap, hybrid.max_model_steps)
        return None

    def _compare_step_times(self, engine_s: float, model_s: float) -> None:
        """Keep the first anchor's wall seconds per step of the engine and of the model (a free
        run of it) and say so when the model is not the faster: the hybrid then costs more
        than the engine alone (its answer is still within the error budget)."""
        self.step_seconds = {"engine": engine_s, "model": model_s}
        if model_s >= engine_s:
            log.warning("hybrid: a model step takes %.2f ms, an engine step %.2f ms (first "
                        "anchor): the model is not faster here, --engine pyscf alone would "
                        "be", 1e3 * model_s, 1e3 * engine_s)
        else:
            log.info("hybrid: a model step takes %.2f ms, an engine step %.2f ms (first anchor)",
                     1e3 * model_s, 1e3 * engine_s)

    def _engine_segment(self, k_steps: int, record) -> dict:
        """The RT engine for ``k_steps`` from the current density, warm-started with
        ``fock_previous`` (:func:`rtml.tddft.propagate_segment`), counted."""
        out = propagate_segment(self.gs, [self.field], self.settings, self.p.numpy(), self.step,
                                k_steps, fock_previous=self.fock_previous, record=record)
        self.counts["n_builds"] += out["n_builds"]
        self.counts["engine_steps"] += k_steps
        return out

    def _finish(self, reason: str) -> None:
        """The engine alone to the end (the model is not asked again: no gate memories to
        keep, no errors to measure)."""
        start, k_steps = self.step, self.n - self.step

        def record(k, p_orth, e, _):
            self._save(k, torch.as_tensor(p_orth), FROM_ENGINE, float(e[0]))
            if self.progress is not None:
                self.progress(k)

        out = self._engine_segment(k_steps, record)
        self.p, self.step = torch.as_tensor(out["p_orth"]), self.n
        self.anchors.append({"step": start, "reason": reason, "engine_steps": k_steps,
                             "model_error_per_step": None, "model_steps_allowed": 0})
        log.info("anchor at step %d (t = %.1f au, %s): the engine finishes (%d steps)", start,
                 start * self.dt, reason, k_steps)
        return None

    def model_segment(self) -> str:
        """Model steps until one of the hand-back conditions; returns it. The ensemble's F'
        at the last step's start warm-starts the next anchor."""
        reason = self._model_steps()
        self.fock_previous = (self.f0 + self.stepper.mean(self.stepper.last_responses)).numpy()
        return reason

    def _model_steps(self) -> str:
        hybrid, dt = self.hybrid, self.dt
        spread = 0.0
        while self.step < self.n:
            p = self.p
            p_next = self.stepper.step(p, self.field_mid[:, self.step], dt)
            spread += float(self.stepper.spread(p, dt)[0])
            self.p, self.step = p_next, self.step + 1
            self.segment_steps += 1
            self.spent += self.rate
            self.counts["model_steps"] += 1
            self.scale = max(self.scale, float(density_norm(p_next - self.p_gs)[0]))
            self._save(self.step, p_next, FROM_MODEL)
            if self.progress is not None:
                self.progress(self.step)
            trace_error = float((torch.einsum("bsii->bs", p_next).real - self.electrons).abs().max())
            herm_error = float((p_next - p_next.transpose(-1, -2).conj()).abs().max())
            if max(trace_error, herm_error) > hybrid.physics_tol:
                return f"physics (trace {trace_error:.1e}, Hermiticity {herm_error:.1e})"
            if self._relative(spread) > hybrid.spread_tol:
                return f"ensemble spread {self._relative(spread):.1e}"
            if self.segment_steps >= self.allowed:
                return "model steps"
        return "end"

    def result(self) -> dict:
        rho_t = torch.stack(self.rho, dim=0)[:, 0]                           # (T, S, n, n)
        energy = np.array(self.energy)
        missing = np.isnan(energy)
        if missing.any():   # model frames: the second-order estimate the model engine records
            batch = stack_systems([self.system])
            estimate = model_energy(self.members, self.maps, batch, rho_t[None], self.gs.energy)[0]
            energy[missing] = estimate[missing]
        return {"rho": rho_t.numpy(), "energy": energy, "source": np.array(self.source),
                "anchors": self.anchors, "error_estimate": self.spent,
                "coherence": self.coherence, "step_seconds": self.step_seconds, **self.counts}
