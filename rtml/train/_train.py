r"""Training loop of :class:`rtml.model.RTMLModel` (``rtml train --model rtml|rtml-mlp``).

Reads only the dataset store. Every training trajectory is held in memory in the Löwdin
basis (:math:`P'_k`), with the field at the step midpoints and, when the store has Fock
matrices, the supervision target :math:`\Delta G'_k = F'_k - F_0'`. Batches hold trajectories
of one molecule and one length. Each epoch has ``frame_batches`` batches of

- **ΔG supervision on random frames** (``frames_per_trajectory`` per trajectory, gates at 1,
  so only the linear network is fitted: many cheap steps where a whole-trajectory pass is
  one expensive step):

  .. math::

      \mathcal L_G = \frac{\langle |\Delta\hat G'_k - \Delta G'_k|^2\rangle_k}
                          {\langle |\Delta G'^{\,\text{learned}}_k|^2\rangle_k}

  per trajectory, normalised by the size of what the network must learn (the
  exchange-correlation part for ``learned="xc"`` and ``"xc-nonlinear"``, all of ΔG'
  otherwise), so weak and strong fields count alike. For ``"xc-nonlinear"`` this fits the
  channels :math:`B[h]` to the whole XC change, and a second term of the same form fits the
  model (exact J/K and kernel plus the gated channels) with each frame's gates computed
  from that frame alone, so the gates learn the instantaneous nonlinear response early;

and the last ``sequence_epochs`` epochs add

- the same loss over whole trajectories (their first ``sequence_frames`` frames) with the
  gates on (Mamba's parallel scan from frame 0), and
- ``rollout_batches`` free rollouts through the exact step from the first frame, with a
  horizon curriculum from ``rollout_horizons[0]`` to ``rollout_horizons[-1]`` (256 by
  default, reached in the last epoch):

  .. math::

      \mathcal L_R = \frac{\langle \|\hat P'_k - P'_k\|_F^2\rangle_{k \le H}}
                          {\max_k \|P'_k - P'_0\|_F^2}

  the square of the evaluation's e(t), averaged over the horizon.

The gate head starts at zero, so the gated model starts as the fitted linear one (for
``"xc-nonlinear"``: as LR-TDDFT, the exact kernel with the gated channels closed).
Validation rolls out the validation trajectories (geometries carved from the training
geometries by :func:`rtml.data.trajectory_splits`; the test split is never read) for
``val_horizon`` steps and scores the mean e(t); ``model.pt`` is the best validation model,
replaced only by a finite, better one. Non-finite data is refused when the store is read;
a non-finite loss, gradient or validation score stops training with an error. AdamW,
learning rate a pure function of the step (warm-up, cosine). Every epoch writes
``checkpoint.pt`` (model, optimiser, step, every random state, best validation score and
model, the metrics of every epoch, dataset hash, config); a resumed run continues from it
bit-identically at the same thread count, and ``model.pt`` and ``train_metrics.csv`` are
rebuilt from it. Metrics go to ``train_metrics.csv`` and TensorBoard.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import zarr
from torch.utils.tensorboard import SummaryWriter

from rtml._errors import InputError, RtmlError
from rtml._progress import Progress
from rtml.data import open_store_groups, trajectory_data, trajectory_splits
from rtml.model import (ModelConfig, MoleculeSystem, RTMLModel, apply_coulomb_exchange,
                        frame_spacing, midpoint_fields, stack_systems, system_from_trajectories)
from rtml.train._config import TrainConfig
from rtml.train._outputs import check_model_dir, save_state, write_rows
from rtml.train._shots import few_shot_selection

log = logging.getLogger("rtml.train")


def learning_rate(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to 1 % of it (pure function of step)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def horizon_at(epoch: int, cfg: TrainConfig) -> int:
    """Rollout curriculum over the last ``sequence_epochs`` epochs: equal shares at each
    horizon, shortest first (0 before them)."""
    first = cfg.epochs - min(cfg.sequence_epochs, cfg.epochs)
    if epoch < first:
        return 0
    h, n_seq = cfg.rollout_horizons, cfg.epochs - first
    # the last sequence epoch always reaches the longest horizon
    return int(h[round((epoch - first) * (len(h) - 1) / max(n_seq - 1, 1)) if n_seq > 1 else -1])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class TrainingTrajectory(NamedTuple):
    """One trajectory prepared for training (Löwdin basis, complex128 / float64)."""

    key: tuple                  # (molecule, n_frames, n_spin): batchable together
    name: str
    system: MoleculeSystem      # its geometry (batch of 1)
    rho: torch.Tensor           # (T, S, n, n)
    field_mid: torch.Tensor     # (T-1, 3)
    dt: float
    delta_fock: torch.Tensor | None   # (T, S, n, n) ΔG' = F' - F0' (None: no Fock in the store)
    fock_scale: float           # mean |learned part of ΔG'|^2
    motion: float               # max_k ||P'_k - P'_0||_F^2


def prepare_trajectories(trajs, learned: str) -> list[TrainingTrajectory]:
    """Löwdin-basis tensors and ΔG' targets of trajectory records (one SCF-free pass)."""
    systems: dict = {}
    out = []
    for t in trajs:
        gkey = (t.molecule, np.asarray(t.positions_angstrom).tobytes())
        if gkey not in systems:
            systems[gkey] = system_from_trajectories([t], xc_kernel=learned == "xc-nonlinear")
        system = systems[gkey]
        rho = system.to_orthonormal_density(torch.as_tensor(t.rho)[None].to(torch.complex128))[0]
        motion = float(((rho - rho[:1]).abs() ** 2).sum(dim=(-1, -2, -3)).max())
        delta, scale = None, 0.0
        if t.fock is not None:
            fock = system.to_orthonormal_operator(torch.as_tensor(t.fock)[None].to(torch.complex128))[0]
            delta = fock - system.fock0_raw[0].to(torch.complex128)
            learned_part = delta
            if learned != "two-electron":
                dp = (rho - system.rho0[0].to(rho.dtype))[None]
                # the whole XC change for "xc-nonlinear" too: its linear stages fit all of it
                learned_part = delta - apply_coulomb_exchange(dp, system.w_same, system.w_total)[0]
            scale = float((learned_part.abs() ** 2).mean())
        out.append(TrainingTrajectory((t.molecule, len(t.rho), t.rho.shape[1]), str(t.traj_id or t.molecule),
                                      system, rho, torch.as_tensor(midpoint_fields(t)), frame_spacing(t),
                                      delta, scale, motion))
    return out


def _batches(items: list[TrainingTrajectory], batch_size: int, generator: torch.Generator) -> list[list[int]]:
    """Shuffled batches of indices of batchable items (same molecule and length)."""
    groups: dict = {}
    for i, it in enumerate(items):
        groups.setdefault(it.key, []).append(i)
    batches = []
    for key in sorted(groups):
        idx = [groups[key][j] for j in torch.randperm(len(groups[key]), generator=generator).tolist()]
        batches += [idx[j:j + batch_size] for j in range(0, len(idx), batch_size)]
    order = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[j] for j in order]


def _stack(items: list[TrainingTrajectory], length: int | None = None):
    system = stack_systems([it.system for it in items])
    rho = torch.stack([it.rho[:length] for it in items])
    field = torch.stack([it.field_mid[:None if length is None else length - 1] for it in items])
    return system, rho, field


def fock_loss(model: RTMLModel, items: list[TrainingTrajectory], max_frames: int | None = None) -> dict:
    """ΔG supervision and the one-step density error of a batch (teacher forcing over the
    first ``max_frames`` frames of each trajectory: the gates' scan starts at frame 0)."""
    system, rho, field = _stack(items, max_frames)
    g, nxt = model.teacher_forced(rho, field, system, items[0].dt)
    out = {}
    have = [i for i, it in enumerate(items) if it.delta_fock is not None]
    if have:
        target = torch.stack([items[i].delta_fock[:rho.shape[1]] for i in have])
        scale = torch.tensor([items[i].fock_scale for i in have], dtype=torch.float64).clamp_min(1e-30)
        err = ((g[have] - target).abs() ** 2).mean(dim=(1, 2, 3, 4))
        out["fock"] = (err / scale).mean()
    step = ((rho[:, 1:] - rho[:, :-1]).abs() ** 2).mean(dim=(1, 2, 3, 4)).clamp_min(1e-30)
    out["one_step"] = (((nxt - rho[:, 1:]).abs() ** 2).mean(dim=(1, 2, 3, 4)) / step).mean()
    return out


def frame_loss(model: RTMLModel, items: list[TrainingTrajectory], n_frames: int,
               generator: torch.Generator) -> torch.Tensor:
    """ΔG supervision of the linear network (gates at 1) on ``n_frames`` random frames per
    trajectory: many cheap steps, where a whole-trajectory pass is one expensive step. With
    residual gates (``xc-nonlinear``) the gated model of each frame alone
    (:meth:`RTMLModel.delta_fock_frames`) adds its own term."""
    items = [it for it in items if it.delta_fock is not None]
    if not items:
        return None
    system = stack_systems([it.system for it in items])
    picks = [torch.randint(len(it.rho), (n_frames,), generator=generator) for it in items]
    rho = torch.stack([it.rho[p] for it, p in zip(items, picks)])
    target = torch.stack([it.delta_fock[p] for it, p in zip(items, picks)])
    scale = torch.tensor([it.fock_scale for it in items], dtype=torch.float64).clamp_min(1e-30)
    loss = lambda g: ((((g - target).abs() ** 2).mean(dim=(1, 2, 3, 4))) / scale).mean()
    out = loss(model.delta_fock_ungated(rho, system))
    if model.config.residual_gates:
        # the gated model too, frame by frame: the instantaneous nonlinear response
        out = out + loss(model.delta_fock_frames(rho, system))
    return out


def rollout_loss(model: RTMLModel, items: list[TrainingTrajectory], horizon: int) -> torch.Tensor:
    """Mean squared e(t) over a free rollout of ``horizon`` steps from the first frame."""
    horizon = min(horizon, len(items[0].rho) - 1)
    system, rho, field = _stack(items, horizon + 1)
    pred = model.rollout(rho[:, 0], field, system, items[0].dt)
    motion = torch.tensor([it.motion for it in items], dtype=torch.float64).clamp_min(1e-30)
    err = ((pred[:, 1:] - rho[:, 1:]).abs() ** 2).sum(dim=(2, 3, 4)).mean(dim=1)
    return (err / motion).mean()


@torch.no_grad()
def validation_error(model: RTMLModel, items: list[TrainingTrajectory], horizon: int,
                     batch_size: int) -> float:
    """Mean over validation trajectories of the mean e(t) of a ``horizon``-step rollout."""
    if not items:
        return float("nan")
    scores = []
    groups: dict = {}
    for it in items:
        groups.setdefault(it.key, []).append(it)
    for key in sorted(groups):
        group = groups[key]
        for j in range(0, len(group), batch_size):
            chunk = group[j:j + batch_size]
            h = min(horizon, len(chunk[0].rho) - 1)
            system, rho, field = _stack(chunk, h + 1)
            pred = model.rollout(rho[:, 0], field, system, chunk[0].dt)
            err = ((pred - rho).abs() ** 2).sum(dim=(2, 3, 4)).sqrt()     # (B, h+1)
            for b, it in enumerate(chunk):
                if it.motion > 0:
                    scores.append(float((err[b] / math.sqrt(it.motion)).mean()))
    return float(np.mean(scores)) if scores else float("nan")


def _store_hash(store) -> str:
    return str(zarr.open_group(str(store), mode="r", zarr_format=3).attrs.get("dataset_sha256", ""))


#: Numeric fields of a :class:`rtml.data.TrajectoryData` that training reads.
_NUMERIC_FIELDS = ("rho", "field", "positions_angstrom", "overlap", "core_hamiltonian",
                   "rho_ground", "fock_ground", "fock", "time")


def _check_finite_records(records, store) -> None:
    """Refuse trajectory records holding NaN or inf (a store damaged after assembly).

    Raises:
        InputError: naming the first such trajectory and its non-finite fields.
    """
    for rec in records:
        bad = [name for name in _NUMERIC_FIELDS
               if getattr(rec, name) is not None and not np.isfinite(getattr(rec, name)).all()]
        if bad:
            raise InputError(f"trajectory '{rec.traj_id}' ({rec.molecule}) of '{store}' holds "
                             f"non-finite values in {', '.join(bad)}: the store is damaged; "
                             "re-assemble it from files that pass 'rtml validate'")


def load_training_data(store, cfg: TrainConfig):
    """Training and validation trajectory records of ``store`` (the test split is not read).

    Raises:
        InputError: no training or no validation trajectories, or one holds NaN or inf.
    """
    groups = open_store_groups(store, cfg.molecules)
    held = tuple(cfg.held_out_molecules)
    splits = trajectory_splits(groups, cfg.fractions, cfg.seed, held)
    train, val = [], []
    for mol, ds in groups.items():
        if mol in held:
            continue
        train += [trajectory_data(ds, row, mol) for row in splits[mol]["train"]]
        val += [trajectory_data(ds, row, mol) for row in splits[mol]["val"]]
    if not train:
        raise InputError(f"no training trajectories in '{store}' (every geometry is in val/test, "
                         "or every molecule is held out)")
    if cfg.shots:
        train = few_shot_selection(train, cfg.shots, cfg.seed, store)
    if not val:
        raise InputError(f"no validation geometries in '{store}': training needs at least two "
                         "geometries of a trained molecule (validation is never taken from test)")
    _check_finite_records(train + val, store)
    return train, val


#: Columns of ``train_metrics.csv``: one row per finished epoch (``epoch`` counts from 0).
METRIC_FIELDS = ["epoch", "step", "lr", "horizon", "fock_loss", "one_step_loss", "rollout_loss",
                 "val_rollout_error", "seconds"]
#: What a checkpoint holds beyond ``model.pt``'s state, all needed for an exact resume.
_CHECKPOINT_KEYS = ("optimizer", "epoch", "step", "best_val", "best_model", "history",
                    "generator", "torch_rng", "numpy_rng", "python_rng")


def train_rtml(store, output_dir, cfg: TrainConfig, resume: bool = True, progress: bool = True,
               init_state: dict | None = None) -> Path:
    """Train :class:`RTMLModel` on ``store``; returns the output directory.

    ``init_state`` (a trained ``model.pt`` dict, :func:`rtml.model.load_model`) starts from
    its weights and scales instead of fresh ones (fine-tuning, ``rtml adapt``); its config
    must be ``cfg.model`` and its hash ``cfg.init_model_sha256``.

    Resumes from ``output_dir/checkpoint.pt`` when it exists and was made from the same
    dataset (hash) and config; ``model.pt`` and ``train_metrics.csv`` are then rebuilt from
    it (a workflow manager may have deleted them), and the run continues bit-identically
    to an uninterrupted one at the same thread count. Each epoch writes the checkpoint
    first, then ``model.pt`` (only when the validation error improved) and the metrics, so
    a kill at any point loses at most the epoch under way. Nothing is written before the
    first epoch ends: a run that fails earlier leaves no output directory behind.

    Raises:
        InputError: bad store, settings or output directory (before any training).
        RtmlError: a non-finite loss, gradient or validation error (``model.pt`` is left as
            it was), or a file cannot be written (disk full).
    """
    out = Path(output_dir)
    check_model_dir(out)
    seed_everything(cfg.weights_seed)
    model_cfg = ModelConfig(**cfg.model)
    t_load = time.perf_counter()
    train_recs, val_recs = load_training_data(store, cfg)
    train = prepare_trajectories(train_recs, model_cfg.learned)
    val = prepare_trajectories(val_recs, model_cfg.learned)
    log.info("training on %d trajectories, validating on %d (%.1f s to load)", len(train), len(val),
             time.perf_counter() - t_load)
    _check_something_trains(train, cfg, store)
    dataset_hash = _store_hash(store)

    model = RTMLModel(model_cfg).to(torch.float64)
    if init_state is None:
        _initialise_scales(model, train)
    else:
        model.load_state_dict(init_state["state_dict"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.weights_seed)
    n_seq = len(_batches(train, cfg.batch_size, torch.Generator().manual_seed(0)))
    total_steps = (cfg.epochs * cfg.frame_batches
                   + min(cfg.sequence_epochs, cfg.epochs) * (n_seq + cfg.rollout_batches))
    ckpt = {"epoch": -1, "step": 0, "best_val": float("inf"), "best_model": None, "history": []}
    resumed = _resume(out / "checkpoint.pt", dataset_hash, cfg, model, optimizer, generator) \
        if resume else None
    if resumed is not None:
        ckpt = resumed
        _write_outputs(out, ckpt, model_changed=True)
        log.info("resuming training from epoch %d (step %d)", ckpt["epoch"] + 1, ckpt["step"])
    elif init_state is not None:
        # fine-tuning keeps the pretrained weights unless an epoch validates better
        model.eval()
        val0 = validation_error(model, val, cfg.val_horizon, cfg.batch_size)
        log.info("pretrained model: val e %.3e", val0)
        if math.isfinite(val0):
            ckpt["best_val"] = val0
            ckpt["best_model"] = _model_state(model, cfg, dataset_hash, store, val0)
    log.info("%r", model)

    step = ckpt["step"]
    scalars = _Scalars(out / "tensorboard", first_step=step)
    bar = Progress(total_steps, "train", enabled=progress, unit="batches")
    bar(step)
    try:
        for epoch in range(ckpt["epoch"] + 1, cfg.epochs):
            t0 = time.perf_counter()
            step, sums = _train_epoch(model, optimizer, train, cfg, epoch, step, total_steps,
                                      generator, bar)
            model.eval()
            val_err = validation_error(model, val, cfg.val_horizon, cfg.batch_size)
            row = {"epoch": epoch, "step": step, "lr": learning_rate(step, total_steps, cfg),
                   "horizon": horizon_at(epoch, cfg), "fock_loss": _mean(sums["fock"]),
                   "one_step_loss": _mean(sums["one_step"]), "rollout_loss": _mean(sums["rollout"]),
                   "val_rollout_error": val_err, "seconds": time.perf_counter() - t0}
            log.info("epoch %d: ΔG loss %.3e, one-step %.3e, rollout(%d) %.3e, val e %.3e (%.1f s)",
                     epoch, row["fock_loss"], row["one_step_loss"], row["horizon"],
                     row["rollout_loss"], val_err, row["seconds"])
            if not math.isfinite(val_err):
                raise RtmlError(f"validation error is not finite at epoch {epoch}; model.pt is "
                                "left as it was")
            improved = val_err < ckpt["best_val"]
            ckpt = _epoch_checkpoint(ckpt, _model_state(model, cfg, dataset_hash, store, val_err),
                                     improved, row, optimizer, generator)
            out.mkdir(parents=True, exist_ok=True)
            save_state(out / "checkpoint.pt", ckpt, fsync=True)  # first: the rest derives from it
            _write_outputs(out, ckpt, model_changed=improved or not (out / "model.pt").is_file())
            scalars.add(row)
    finally:
        bar.close()
        scalars.close()
    return out


def _epoch_checkpoint(previous: dict, current: dict, improved: bool, row: dict, optimizer,
                      generator: torch.Generator) -> dict:
    """The checkpoint after the epoch of metrics ``row``: the ``current`` model state (as
    :func:`_model_state`), the optimiser and every random state, the best model so far and
    the metrics of every finished epoch (``previous``: the last checkpoint)."""
    return {**current, "optimizer": optimizer.state_dict(), "epoch": row["epoch"],
            "step": row["step"],
            "best_val": row["val_rollout_error"] if improved else previous["best_val"],
            "best_model": current if improved else previous["best_model"],
            "history": [*previous["history"], row], "generator": generator.get_state(),
            "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
            "python_rng": random.getstate()}


def _train_epoch(model: RTMLModel, optimizer, train: list[TrainingTrajectory], cfg: TrainConfig,
                 epoch: int, step: int, total_steps: int, generator: torch.Generator,
                 bar: Progress) -> tuple[int, dict[str, list[float]]]:
    """One epoch of optimiser steps; returns the step count after it and the batch losses
    by kind (``fock``, ``one_step``, ``rollout``).

    Raises:
        RtmlError: a loss or a gradient norm is not finite (training diverged).
    """
    horizon = horizon_at(epoch, cfg)
    sums: dict[str, list[float]] = {"fock": [], "one_step": [], "rollout": []}
    model.train()
    for kind, batch in _epoch_plan(train, cfg, horizon, generator):
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total_steps, cfg)
        items = [train[i] for i in batch]
        optimizer.zero_grad()
        if not accumulate_batch(model, kind, items, cfg, horizon, generator, sums, epoch, step):
            continue
        _check_finite(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0), "gradient",
                      epoch, step)
        optimizer.step()
        step += 1
        bar(step)
    return step, sums


def _micro_batches(kind: str, items: list[TrainingTrajectory]) -> list[tuple[list, float]]:
    """A planned batch as (items, weight) parts whose weighted losses sum to the batch's.

    Whole trajectories (``fock``, ``rollout``) go one at a time, so memory holds one
    trajectory's graph instead of a batch's (a C2H4 batch of 4 x 1001 frames took 21 GB);
    the batch loss is a mean over trajectories (the ΔG term over those with Fock matrices),
    so the summed gradients are the batch's to rounding. Random frames stay one batch.
    """
    if kind == "frames":
        return [(items, 1.0)]
    if kind == "fock":
        have = [it for it in items if it.delta_fock is not None]
        if have:
            return [([it], 1.0 / len(have)) for it in have]
    return [([it], 1.0 / len(items)) for it in items]


def accumulate_batch(model: RTMLModel, kind: str, items: list[TrainingTrajectory],
                      cfg: TrainConfig, horizon: int, generator: torch.Generator, sums: dict,
                      epoch: int, step: int) -> bool:
    """Backpropagate one planned batch (:func:`_micro_batches`); its loss terms, as batch
    means, go to ``sums``. False when the batch has nothing to fit."""
    parts = {"fock": [], "one_step": [], "rollout": []}
    fitted = False
    for part, weight in _micro_batches(kind, items):
        part_sums = {"fock": [], "one_step": [], "rollout": []}
        loss = _batch_loss(model, kind, part, cfg, horizon, generator, part_sums)
        if loss is None:
            continue
        _check_finite(loss, "training loss", epoch, step)
        (weight * loss).backward()
        fitted = True
        for key, values in part_sums.items():
            parts[key] += [(weight, v) for v in values]
    for key, values in parts.items():
        if values:   # weights of a term sum to 1 over the parts that have it, or equal
            total = sum(w for w, _ in values)
            sums[key].append(sum(w * v for w, v in values) / total)
    return fitted


def _epoch_plan(train: list[TrainingTrajectory], cfg: TrainConfig, horizon: int,
                generator: torch.Generator) -> list[tuple[str, list[int]]]:
    """The epoch's batches in order: ``frame_batches`` of random frames, then (sequence
    epochs, ``horizon`` > 0) every trajectory once whole and ``rollout_batches`` rollouts."""
    repeats = cfg.frame_batches // max(1, len(train) // cfg.batch_size) + 1
    plan = [("frames", b) for _ in range(repeats)
            for b in _batches(train, cfg.batch_size, generator)][:cfg.frame_batches]
    if horizon:
        plan += [("fock", b) for b in _batches(train, cfg.batch_size, generator)]
        plan += [("rollout", b)
                 for b in _batches(train, cfg.batch_size, generator)[:cfg.rollout_batches]]
    return plan


def _batch_loss(model: RTMLModel, kind: str, items: list[TrainingTrajectory], cfg: TrainConfig,
                horizon: int, generator: torch.Generator, sums: dict) -> torch.Tensor | None:
    """The loss of one planned batch (None: nothing to fit); its terms go to ``sums``."""
    if kind == "frames":
        loss = frame_loss(model, items, cfg.frames_per_trajectory, generator)
        if loss is not None:
            sums["fock"].append(float(loss.detach()))
        return loss
    if kind == "fock":
        terms = fock_loss(model, items, cfg.sequence_frames)
        sums["one_step"].append(float(terms["one_step"].detach()))
        if "fock" in terms:
            sums["fock"].append(float(terms["fock"].detach()))
        return terms.get("fock", terms["one_step"])
    loss = cfg.rollout_weight * rollout_loss(model, items, horizon)
    sums["rollout"].append(float(loss.detach()))
    return loss


def _check_finite(value: torch.Tensor, what: str, epoch: int, step: int) -> None:
    if not torch.isfinite(value):
        raise RtmlError(f"training diverged: non-finite {what} at epoch {epoch} (step {step}); "
                        "model.pt is left as it was (try a lower --lr)")


def _check_something_trains(train: list[TrainingTrajectory], cfg: TrainConfig, store) -> None:
    """Refuse settings under which no optimiser step would run (an untrained model)."""
    if cfg.sequence_epochs == 0 and all(t.delta_fock is None for t in train):  # epochs >= 1
        raise InputError(f"'{store}' has no Fock matrices, so the frame batches have no target, "
                         "and there are no sequence epochs: nothing would be trained")


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def _resume(path: Path, dataset_hash: str, cfg: TrainConfig, model: RTMLModel, optimizer,
            generator: torch.Generator) -> dict | None:
    """Load the checkpoint at ``path`` into the model, optimiser and every random state
    (torch's generator of the batches and frames, torch's, numpy's and Python's global ones).

    Returns:
        The checkpoint, or None when there is none to resume: no file, an unreadable or
        incomplete one, or one made from another dataset or settings (each logged; training
        then starts over and replaces it after its first epoch).
    """
    if not path.is_file():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated or garbage file: torch raises several kinds
        log.warning("checkpoint '%s' is unreadable (%s): training starts over", path,
                    str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None
    if not isinstance(ckpt, dict) or any(key not in ckpt for key in _CHECKPOINT_KEYS):
        log.warning("checkpoint '%s' is incomplete or from an older rtml: training starts over",
                    path)
        return None
    if ckpt.get("dataset_sha256") != dataset_hash or ckpt.get("train_config") != asdict(cfg):
        log.info("checkpoint '%s' was made from another dataset or settings: training starts "
                 "over", path)
        return None
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    generator.set_state(ckpt["generator"])
    torch.set_rng_state(ckpt["torch_rng"])
    np.random.set_state(ckpt["numpy_rng"])
    random.setstate(ckpt["python_rng"])
    return ckpt


def _write_outputs(out: Path, ckpt: dict, model_changed: bool) -> None:
    """``model.pt`` (the best model so far, when ``model_changed``) and ``train_metrics.csv``
    (every finished epoch once), both derived from the checkpoint ``ckpt``."""
    if model_changed:
        save_state(out / "model.pt", ckpt["best_model"])
    write_rows(out / "train_metrics.csv", ckpt["history"], METRIC_FIELDS)


class _Scalars:
    """TensorBoard scalars of the finished epochs. The event file is opened at the first
    one (a run that fails earlier writes nothing); events from ``first_step`` on, left by
    a killed run, are purged, so a redone epoch is shown once."""

    KEYS = ("fock_loss", "one_step_loss", "rollout_loss", "val_rollout_error", "lr")

    def __init__(self, log_dir: Path, first_step: int):
        self.log_dir, self.first_step, self.writer = log_dir, first_step, None

    def add(self, row: dict) -> None:
        if self.writer is None:
            self.writer = SummaryWriter(log_dir=str(self.log_dir), purge_step=self.first_step)
        for key in self.KEYS:
            if np.isfinite(row[key]):
                self.writer.add_scalar(key, row[key], row["step"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _model_state(model: RTMLModel, cfg: TrainConfig, dataset_hash: str, store, val: float) -> dict:
    """What ``model.pt`` holds: a copy of the weights (kept as the best model while the live
    ones train on), the settings, the dataset hash and the split."""
    return {**copy.deepcopy(model.state_dict_for_checkpoint()), "train_config": asdict(cfg),
            "dataset_sha256": dataset_hash, "store": str(Path(store).resolve()),
            "val_rollout_error": val,
            "split": {"fractions": list(cfg.fractions), "seed": cfg.seed,
                      "held_out_molecules": list(cfg.held_out_molecules)}}


@torch.no_grad()
def _initialise_scales(model: RTMLModel, items: list[TrainingTrajectory]) -> None:
    """Input/output scales from the training data (:meth:`RTMLModel.set_scales`); the target's
    RMS comes from each trajectory's ``fock_scale`` (mean |learned ΔG'|², computed once)."""
    sq = sum(float(((it.rho - it.system.rho0[0]).abs() ** 2).sum()) for it in items)
    size = sum(it.rho.numel() for it in items)
    with_fock = [it for it in items if it.delta_fock is not None]
    out = None
    if with_fock:
        out = math.sqrt(sum(it.fock_scale * it.delta_fock.numel() for it in with_fock)
                        / sum(it.delta_fock.numel() for it in with_fock))
    model.set_scales(math.sqrt(sq / size), out)
