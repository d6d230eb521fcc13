r"""The trained model as a propagation engine (``rtml propagate --engine model``).

From a converged ground state (:func:`rtml.tddft.converged_ground_state`, as the RT engine
starts) and a batch of fields, :func:`propagate_model` applies kicks exactly as the engine
does (:func:`rtml.tddft.apply_kicks`), rolls the model out with the field taken exactly at
each step's midpoint, and returns frames in the engine's layout, so the record builder
(:func:`rtml.tddft.batch_trajectory_records`) and the HDF5 writer are the engine's own:

- ``density``: AO densities of the saved frames;
- ``dipole``: :math:`-\mathrm{Tr}(P\mathbf D) + \sum_A Z_A(\mathbf R_A-\mathbf O)`, exact for
  the model's density;
- ``energy``: the second-order estimate :math:`E_0 + \mathrm{Tr}(F_0\Delta P) +
  \tfrac12\mathrm{Tr}(\Delta G[\Delta P]\,\Delta P)` with the model's ungated ΔG (an exact
  Fock build per frame would cost what the model saves);
- no Fock matrices (the trajectory file's ``fock`` datasets are absent).
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch

from rtml._errors import InputError
from rtml.model._basis_layout import BasisLayout
from rtml.model._ensemble import ensemble_sha256, is_ensemble
from rtml.model._rtml import RTMLPropagator, build_system, rollout_members, stack_systems
from rtml.tddft import apply_kicks, electronic_dipole, ground_state_fock, to_orthonormal

log = logging.getLogger("rtml.model")

#: Propagator recorded in the model's trajectories: its predictor-corrector Magnus-2 step.
MODEL_PROPAGATOR_NAME = "model-magnus2-pc"


def model_sha256(model_dir) -> str:
    """SHA-256 of ``model_dir/model.pt``, or of an ensemble's members
    (:func:`rtml.model.ensemble_sha256`); recorded in the provenance of model trajectories."""
    if is_ensemble(model_dir):
        return ensemble_sha256(model_dir)
    return hashlib.sha256((Path(model_dir) / "model.pt").read_bytes()).hexdigest()


def model_provenance(model_dir, state: dict) -> dict:
    """Provenance entries of the model's trajectories: hash, directory and config of the model.

    ``state`` is the checkpoint dictionary :func:`rtml.model.load_model` returns.
    """
    return {"model_sha256": model_sha256(model_dir), "model_dir": str(Path(model_dir).resolve()),
            "model_config": state.get("config", {})}


def engine_system(ground_state, propagator: RTMLPropagator):
    """The model's system of one geometry and each member's :meth:`RTMLModel.linear_maps`,
    from the SCF ground state; kept on ``propagator`` for the geometry last asked for."""
    ctx = ground_state.context
    mol = ctx.mol
    nspin = ground_state.density.shape[0]
    key = ("engine", mol.atom_coords().tobytes(), ctx.xc, str(mol.basis), nspin)
    if key not in propagator.engine_setup:
        layout = BasisLayout.from_mole(mol)
        system = build_system([mol], ctx.xc, nspin, layout, mol.atom_coords(unit="Angstrom")[None],
                              ctx.overlap[None], ground_state.density[None],
                              ground_state_fock(ground_state)[None], ctx.dipole_origin[None],
                              xc_kernel=propagator.model.config.exact_xc_kernel)
        with torch.no_grad():
            maps = [m.linear_maps(system) for m in propagator.members]
        propagator.engine_setup = {key: (system, maps)}    # keep one geometry's setup
    return propagator.engine_setup[key]


def model_energy(members, maps, batch, rho, energy0: float) -> np.ndarray:
    r"""Second-order energy estimate of model densities ``rho`` (B, T, S, n, n), Löwdin:
    :math:`E_0 + \mathrm{Tr}(F_0'\Delta P') + \tfrac12\mathrm{Tr}(\Delta G'[\Delta P']\,\Delta P')`
    with the members' mean ungated ΔG' (an exact build per frame would cost what the model
    saves). Returns (B, T)."""
    dp = rho - batch.rho0[:, None].to(rho.dtype)
    with torch.no_grad():
        g = sum(m.delta_fock_linear(dp, mp, batch) for m, mp in zip(members, maps)) / len(members)
    f0 = batch.fock0_raw[:, None].to(rho.dtype)
    return (energy0 + torch.einsum("btsij,btsji->bt", f0.expand_as(dp), dp).real
            + 0.5 * torch.einsum("btsij,btsji->bt", g, dp).real).numpy()


def propagate_model(ground_state, fields, settings, propagator: RTMLPropagator,
                    progress=None) -> tuple[dict, dict]:
    """Roll the model out for a batch of fields from ``ground_state``.

    Args:
        ground_state: :class:`rtml.tddft.GroundState` (converged, with its Fock context).
        fields: resolved :class:`rtml.fields.Field` list, one trajectory each.
        settings: :class:`rtml.tddft.PropagationSettings` (``dt``, ``n_steps``,
            ``save_every``; the propagator is the model's own predictor-corrector).
        propagator: a loaded rtml model (:func:`rtml.model.load_model`).
        progress: optional callable(n_steps_done).

    Returns:
        frames, stats as :func:`rtml.tddft.propagate` returns them (``fock`` absent).
    """
    if not isinstance(propagator, RTMLPropagator):
        raise InputError("--engine model needs a trained rtml model (not a baseline)")
    if settings.n_steps % settings.save_every:
        raise InputError(f"--steps ({settings.n_steps}) must be a multiple of --save-every "
                         f"({settings.save_every})")
    members = propagator.members
    ctx = ground_state.context
    t_setup = time.perf_counter()
    system, maps = engine_system(ground_state, propagator)
    t_setup = time.perf_counter() - t_setup
    nb = len(fields)
    batch = stack_systems([system] * nb)
    dip_orth = to_orthonormal(ctx, ctx.dipole_ints, density=False)
    p0 = to_orthonormal(ctx, ground_state.density, density=True).astype(complex)
    p0 = apply_kicks(ctx, np.repeat(p0[None], nb, axis=0), fields, dip_orth)
    dt, n = settings.dt, settings.n_steps
    mid = (np.arange(n) + 0.5) * dt
    field_mid = torch.as_tensor(np.stack([f.values(mid) for f in fields]))          # (nb, n, 3)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = rollout_members(members, torch.as_tensor(p0), field_mid, batch, dt,
                              settings.save_every, callback=progress, maps=maps)
    wall = time.perf_counter() - t0
    rho_ao = batch.to_ao_density(out).numpy()                                        # (nb, T, S, n, n)
    energy = model_energy(members, maps, batch, out, ground_state.energy)
    time_axis = np.arange(0, n + 1, settings.save_every) * dt
    frames = {
        "density": np.swapaxes(rho_ao, 0, 1),
        "time": time_axis,
        "field": np.swapaxes(np.stack([f.values(time_axis) for f in fields]), 0, 1),
        "energy": energy.T,
        "dipole": np.swapaxes(electronic_dipole(rho_ao, ctx), 0, 1),
        "fock": None,
    }
    stats = {"n_builds": 0, "builds_per_step": 0.0, "wall_time_s": wall,
             "wall_time_per_step_s": wall / max(n, 1), "response_setup_s": 0.0, "setup_s": t_setup}
    return frames, stats
