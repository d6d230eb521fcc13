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
  exchange-correlation part for ``learned="xc"``, all of ΔG' otherwise), so weak and
  strong fields count alike;

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

The gate head starts at zero, so the gated model starts as the fitted linear one.
Validation rolls out the validation trajectories (geometries carved from the training
geometries by :func:`rtml.data.trajectory_splits`; the test split is never read) for
``val_horizon`` steps and scores the mean e(t); ``model.pt`` is the best validation model,
and a non-finite loss or validation score stops training with an error (``model.pt`` is
never replaced by a non-finite model). AdamW, learning rate a pure function of the step
(warm-up, cosine). Every epoch writes ``checkpoint.pt`` (model, optimiser, step, every
random state, best validation score, dataset hash, config); a resumed run continues from
it. Metrics go to ``train_metrics.csv`` and TensorBoard.
"""

from __future__ import annotations

import csv
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

from rtml._atomic import atomic_write
from rtml._errors import InputError
from rtml._progress import Progress
from rtml.train._config import TrainConfig
from rtml.data import open_store_groups, trajectory_data, trajectory_splits
from rtml.model import (ModelConfig, MoleculeSystem, RTMLModel, apply_coulomb_exchange,
                        frame_spacing, midpoint_fields, stack_systems, system_from_trajectories)

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
            systems[gkey] = system_from_trajectories([t])
        system = systems[gkey]
        rho = system.to_orthonormal_density(torch.as_tensor(t.rho)[None].to(torch.complex128))[0]
        motion = float(((rho - rho[:1]).abs() ** 2).sum(dim=(-1, -2, -3)).max())
        delta, scale = None, 0.0
        if t.fock is not None:
            fock = system.to_orthonormal_operator(torch.as_tensor(t.fock)[None].to(torch.complex128))[0]
            delta = fock - system.fock0_raw[0].to(torch.complex128)
            learned_part = delta
            if learned == "xc":
                dp = (rho - system.rho0[0].to(rho.dtype))[None]
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
    trajectory: many cheap steps, where a whole-trajectory pass is one expensive step."""
    items = [it for it in items if it.delta_fock is not None]
    if not items:
        return None
    system = stack_systems([it.system for it in items])
    picks = [torch.randint(len(it.rho), (n_frames,), generator=generator) for it in items]
    rho = torch.stack([it.rho[p] for it, p in zip(items, picks)])
    target = torch.stack([it.delta_fock[p] for it, p in zip(items, picks)])
    scale = torch.tensor([it.fock_scale for it in items], dtype=torch.float64).clamp_min(1e-30)
    g = model.delta_fock_ungated(rho, system)
    return ((((g - target).abs() ** 2).mean(dim=(1, 2, 3, 4))) / scale).mean()


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


def load_training_data(store, cfg: TrainConfig):
    """Training and validation trajectory records of ``store`` (the test split is not read)."""
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
    if not val:
        raise InputError(f"no validation geometries in '{store}': training needs at least two "
                         "geometries of a trained molecule (validation is never taken from test)")
    return train, val


def train_rtml(store, output_dir, cfg: TrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train :class:`RTMLModel` on ``store``; returns the output directory.

    Resumes from ``output_dir/checkpoint.pt`` when it exists and was made from the same
    dataset (hash) and config.
    """
    seed_everything(cfg.seed)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_cfg = ModelConfig(**cfg.model)
    t_load = time.perf_counter()
    train_recs, val_recs = load_training_data(store, cfg)
    train = prepare_trajectories(train_recs, model_cfg.learned)
    val = prepare_trajectories(val_recs, model_cfg.learned)
    log.info("training on %d trajectories, validating on %d (%.1f s to load)", len(train), len(val),
             time.perf_counter() - t_load)
    dataset_hash = _store_hash(store)

    model = RTMLModel(model_cfg).to(torch.float64)
    _initialise_scales(model, train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    n_seq = len(_batches(train, cfg.batch_size, torch.Generator().manual_seed(0)))
    n_seq_epochs = min(cfg.sequence_epochs, cfg.epochs)
    total_steps = (cfg.epochs * cfg.frame_batches
                   + n_seq_epochs * (n_seq + cfg.rollout_batches))
    start_epoch, step, best_val = 0, 0, float("inf")
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("dataset_sha256") == dataset_hash and ckpt.get("train_config") == asdict(cfg):
            model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            start_epoch, step, best_val = ckpt["epoch"] + 1, ckpt["step"], ckpt["best_val"]
            generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            np.random.set_state(ckpt["numpy_rng"])
            random.setstate(ckpt["python_rng"])
            log.info("resuming training from epoch %d (step %d)", start_epoch, step)
    log.info("%r", model)

    writer = SummaryWriter(log_dir=str(out / "tensorboard"))
    metrics_path = out / "train_metrics.csv"
    fields = ["epoch", "step", "lr", "horizon", "fock_loss", "one_step_loss", "rollout_loss",
              "val_rollout_error", "seconds"]
    if start_epoch == 0 or not metrics_path.is_file():
        with open(metrics_path, "w", newline="") as fh:
            csv.writer(fh).writerow(fields)
    bar = Progress(total_steps, "train", enabled=progress, unit="batches")
    bar(step)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        horizon = horizon_at(epoch, cfg)
        sums: dict[str, list] = {"fock": [], "one_step": [], "rollout": []}
        plan = [("frames", b) for _ in range(cfg.frame_batches // max(1, len(train) // cfg.batch_size) + 1)
                for b in _batches(train, cfg.batch_size, generator)][:cfg.frame_batches]
        if horizon:
            plan += [("fock", b) for b in _batches(train, cfg.batch_size, generator)]
            roll = _batches(train, cfg.batch_size, generator)[:cfg.rollout_batches]
            plan += [("rollout", b) for b in roll]
        model.train()
        for kind, batch in plan:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, cfg)
            items = [train[i] for i in batch]
            if kind == "frames":
                loss = frame_loss(model, items, cfg.frames_per_trajectory, generator)
                if loss is None:
                    continue
                sums["fock"].append(float(loss.detach()))
            elif kind == "fock":
                terms = fock_loss(model, items, cfg.sequence_frames)
                loss = terms.get("fock", terms["one_step"])
                sums["one_step"].append(float(terms["one_step"].detach()))
                if "fock" in terms:
                    sums["fock"].append(float(terms["fock"].detach()))
            else:
                loss = cfg.rollout_weight * rollout_loss(model, items, horizon)
                sums["rollout"].append(float(loss.detach()))
            if not torch.isfinite(loss):
                raise InputError(f"non-finite training loss at epoch {epoch} (step {step}); the "
                                 "store may hold non-finite data")
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            bar(step)
        model.eval()
        val_err = validation_error(model, val, cfg.val_horizon, cfg.batch_size)
        mean = lambda xs: float(np.mean(xs)) if xs else float("nan")
        row = {"epoch": epoch, "step": step, "lr": learning_rate(step, total_steps, cfg),
               "horizon": horizon, "fock_loss": mean(sums["fock"]), "one_step_loss": mean(sums["one_step"]),
               "rollout_loss": mean(sums["rollout"]), "val_rollout_error": val_err,
               "seconds": time.perf_counter() - t0}
        with open(metrics_path, "a", newline="") as fh:
            csv.writer(fh).writerow([row[f] for f in fields])
        for key in ("fock_loss", "one_step_loss", "rollout_loss", "val_rollout_error", "lr"):
            if np.isfinite(row[key]):
                writer.add_scalar(key, row[key], step)
        log.info("epoch %d: ΔG loss %.3e, one-step %.3e, rollout(%d) %.3e, val e %.3e (%.1f s)",
                 epoch, row["fock_loss"], row["one_step_loss"], horizon, row["rollout_loss"], val_err,
                 row["seconds"])
        if not np.isfinite(val_err):
            raise InputError(f"validation error is not finite at epoch {epoch}; model.pt left as it was")
        if val_err < best_val:
            best_val = val_err
            _save(out / "model.pt", _model_state(model, cfg, dataset_hash, store, best_val))
        _save(ckpt_path, {**_model_state(model, cfg, dataset_hash, store, best_val),
                          "optimizer": optimizer.state_dict(), "epoch": epoch, "step": step,
                          "best_val": best_val, "generator": generator.get_state(),
                          "torch_rng": torch.get_rng_state(), "numpy_rng": np.random.get_state(),
                          "python_rng": random.getstate()})
    bar.close()
    writer.close()
    return out


def _model_state(model: RTMLModel, cfg: TrainConfig, dataset_hash: str, store, val: float) -> dict:
    return {**model.state_dict_for_checkpoint(), "train_config": asdict(cfg),
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


def _save(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))
