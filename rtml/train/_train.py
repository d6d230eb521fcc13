r"""Training loop of :class:`rtml.model.RTMLModel` (``rtml train --model rtml|rtml-mlp``).

Reads only the dataset store (:class:`rtml.data.TrajectoryWindows`, batches of one basis
size). Per step, for a window of ``horizon + bundle`` frames:

- teacher-forced one-step-ahead predictions of all frames in parallel (Mamba scan);
- **scheduled sampling**: with probability :math:`p_{ss}` (ramping from 0 to
  ``ss_max`` over training) an input frame is replaced by the model's own projected
  prediction from a first, gradient-free pass;
- **temporal bundling**: each step predicts ``bundle`` future frames;
- **horizon curriculum**: the window grows 16 → 32 → 48 → 64 frames over training.

Loss (each term averaged over frames, spins and elements):

.. math::

    \mathcal L = \underbrace{\langle w_{ij}|\hat P - P|^2_{ij}\rangle / e_0}_{\text{reconstruction}}
    + \lambda_d\underbrace{\langle w_{ij}|(\hat P - P_k) - (P - P_k)|^2\rangle / e_0}_{\text{time derivative}}
    + \lambda_h\,\|\tfrac12(\tilde P - \tilde P^\dagger)\|^2 + \lambda_t\,|\mathrm{Tr}\tilde PS - N|^2
    + \lambda_i\,\|Q^2 - Q\|^2

with :math:`\hat P` the projected and :math:`\tilde P` the raw (pre-projection) prediction,
:math:`e_0 = \langle w_{ij}|P - P_k|^2\rangle` the persistence error of the batch (so a
loss of 1 means "as good as persistence"),
and per-element variance weights :math:`w_{ij} \propto 1/(\mathrm{Var}_t P_{ij} + f\,
\overline{\mathrm{Var}_t P})` (normalised to mean 1 per window), so elements that move
little count as much as large ones, up to the floor :math:`f` (``variance_floor``). With
:math:`f = 10^{-3}` the near-static elements dominated and the plain one-step MSE hardly
improved on persistence; :math:`f = 1` (default) balances the two (measured on LiH: the
held-out one-step MSE fell from 0.6x to 0.1x persistence's in the same short run). Optimiser AdamW, learning rate a pure function of the step (linear warm-up, cosine
decay). Every epoch writes ``checkpoint.pt`` (model, optimiser, step, epoch, best
validation loss, dataset hash, config) and, when validation improves, ``model.pt``;
metrics go to ``train_metrics.csv`` and TensorBoard.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import time
from dataclasses import asdict, dataclass, field as dc_field
from pathlib import Path

import numpy as np
import torch

from rtml._atomic import atomic_write
from rtml._errors import InputError
from rtml._progress import Progress
from rtml.model._basis_layout import BasisLayout
from rtml.model._projection import hermiticity_penalty, idempotency_penalty, trace_penalty
from rtml.model._rtml import ModelConfig, MoleculeBatch, RTMLModel, n_per_spin_tensor

log = logging.getLogger("rtml.train")


@dataclass
class TrainConfig:
    """Settings of a training run (stored in checkpoints)."""

    epochs: int = 8
    batch_size: int = 8
    horizons: tuple = (16, 32, 48, 64)
    stride: int = 8
    lr: float = 3e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 20
    ss_max: float = 0.3
    lambda_derivative: float = 1.0
    lambda_hermitian: float = 1e-2
    lambda_trace: float = 1e-2
    lambda_idempotency: float = 1e-2
    variance_floor: float = 1.0
    seed: int = 0
    split_by: str = "geometry"
    held_out_molecules: tuple = ()
    fractions: tuple = (0.8, 0.1, 0.1)
    molecules: tuple | None = None
    max_batches_per_epoch: int | None = None
    model: dict = dc_field(default_factory=dict)


def learning_rate(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``cfg.lr``, then cosine decay to 1 % of it (pure function of step)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def horizon_at(epoch: int, cfg: TrainConfig) -> int:
    """Curriculum: equal shares of the epochs at each horizon, shortest first."""
    stage = min(len(cfg.horizons) - 1, epoch * len(cfg.horizons) // max(cfg.epochs, 1))
    return int(cfg.horizons[stage])


def scheduled_sampling_probability(epoch: int, cfg: TrainConfig) -> float:
    """0 in the first epoch, rising linearly to ``cfg.ss_max`` in the last."""
    return cfg.ss_max * epoch / max(cfg.epochs - 1, 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _layout_of(item: dict) -> BasisLayout:
    return BasisLayout.from_metadata(item["basis_atom_index"][0].numpy(),
                                     item["basis_angular_momentum"][0].numpy(),
                                     item["basis_magnetic_quantum"][0].numpy(),
                                     item["atomic_numbers"][0].numpy())


def molecule_batch(batch: dict, n_spin: int, multiplicities: dict, layouts: dict) -> MoleculeBatch:
    """MoleculeBatch for a collated batch of windows of one molecule."""
    mol = batch["molecule"][0]
    if mol not in layouts:
        layouts[mol] = _layout_of(batch)
    b = batch["rho"].shape[0]
    return MoleculeBatch(layouts[mol], batch["positions"].float(), batch["atomic_numbers"][0],
                         batch["overlap"].double(),
                         n_per_spin_tensor(int(batch["n_electrons"][0]), multiplicities[mol], n_spin, b))


def variance_weights(rho: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Per-element weights 1/(Var_t P_ij + floor * mean_ij Var_t P_ij), mean 1, for
    (B, L, S, n, n) windows. The floor caps how much an element that hardly moves can
    count: a small floor balances elements, a large one approaches a plain MSE."""
    var = rho.real.var(dim=1, keepdim=True) + rho.imag.var(dim=1, keepdim=True)
    w = 1.0 / (var + floor * var.mean(dim=(-1, -2), keepdim=True) + 1e-30)
    return w / w.mean(dim=(-1, -2), keepdim=True)


def loss_terms(model: RTMLModel, rho: torch.Tensor, field: torch.Tensor, mb: MoleculeBatch,
               cfg: TrainConfig, ss_prob: float, generator: torch.Generator,
               rho_initial: torch.Tensor | None = None, rho_previous: torch.Tensor | None = None) -> dict:
    """All loss terms of one batch of windows (see the module docstring).

    ``rho_initial`` (the trajectory's first frame) and ``rho_previous`` (the frame before
    the window) give the model the same reference and velocity as in a full-trajectory
    rollout; by default the window's first frame stands in for both.
    """
    k = model.config.bundle
    length = rho.shape[1] - k
    inputs = rho
    if ss_prob > 0:
        with torch.no_grad():
            _, first = model(rho, field, mb, rho_initial, rho_previous)
        replace = torch.rand(length, generator=generator) < ss_prob
        replace[0] = False  # the initial density is always the true one
        if replace.any():
            inputs = rho.clone()
            idx = torch.nonzero(replace).flatten()
            # prediction of frame i made from frame i-1 (one step ahead)
            inputs[:, idx] = first[:, idx - 1, 0].to(rho.dtype)
    raw, projected = model(inputs, field, mb, rho_initial, rho_previous)
    target = torch.stack([rho[:, j:j + length] for j in range(1, k + 1)], dim=2)  # (B, L, k, S, n, n)
    start = inputs[:, :length, None]
    weights = variance_weights(rho, cfg.variance_floor)[:, :, None]
    # normalise by the persistence error, so the loss is O(1) whatever the field strength
    # (Adam's epsilon would otherwise swamp gradients of ~1e-14)
    scale = (weights * (target - start).abs() ** 2).mean().detach().clamp_min(1e-30)
    recon = (weights * (projected - target).abs() ** 2).mean() / scale
    deriv = (weights * ((projected - start) - (target - start)).abs() ** 2).mean() / scale
    flat = raw.reshape(-1, *raw.shape[3:])
    s = mb.overlap[:, None, None].expand(-1, length, k, -1, -1).reshape(-1, *mb.overlap.shape[1:])
    n = mb.n_per_spin[:, None, None].expand(-1, length, k, -1).reshape(-1, mb.n_per_spin.shape[-1])
    herm = hermiticity_penalty(flat)
    trace = trace_penalty(flat, s, n)
    idem = idempotency_penalty(flat, s)
    total = (recon + cfg.lambda_derivative * deriv + cfg.lambda_hermitian * herm
             + cfg.lambda_trace * trace + cfg.lambda_idempotency * idem)
    mse = ((projected[:, :, 0] - target[:, :, 0]).abs() ** 2).mean()
    return {"loss": total, "reconstruction": recon, "derivative": deriv, "hermiticity": herm,
            "trace": trace, "idempotency": idem, "one_step_mse": mse}


def _loader(dataset, batch_size: int, seed: int):
    from torch.utils.data import DataLoader

    from rtml.data import EqualBasisBatchSampler, collate_windows

    sampler = EqualBasisBatchSampler(dataset, batch_size=batch_size, shuffle=True, seed=seed)
    return sampler, DataLoader(dataset, batch_sampler=sampler, num_workers=0,
                               collate_fn=collate_windows)


def _store_hash(store) -> str:
    import zarr

    return str(zarr.open_group(str(store), mode="r", zarr_format=3).attrs.get("dataset_sha256", ""))


def _multiplicities(store, molecules) -> dict:
    from rtml.data import open_dataset

    return {m: int(open_dataset(store, m).attrs["multiplicity"]) for m in molecules}


@torch.no_grad()
def validation_mse(model, dataset, cfg, multiplicities, layouts, max_batches=32) -> float:
    """Mean teacher-forced one-step MSE (projected) over validation windows."""
    if dataset is None or len(dataset) == 0:
        return float("nan")
    model.eval()
    sampler, loader = _loader(dataset, cfg.batch_size, cfg.seed)
    errors = []
    for i, batch in enumerate(loader):
        if i >= max_batches:
            break
        mb = molecule_batch(batch, batch["rho"].shape[2], multiplicities, layouts)
        _, projected = model(batch["rho"], batch["field"], mb, batch.get("rho_initial"),
                             batch.get("rho_previous"))
        errors.append(float(((projected[:, :, 0] - batch["rho"][:, 1:1 + projected.shape[1]]).abs() ** 2).mean()))
    model.train()
    return float(np.mean(errors)) if errors else float("nan")


def train_rtml(store, output_dir, cfg: TrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train :class:`RTMLModel` on ``store``; returns the output directory.

    Resumes from ``output_dir/checkpoint.pt`` when it exists and was made from the same
    dataset (hash) and config.
    """
    from torch.utils.tensorboard import SummaryWriter

    from rtml.data import TrajectoryWindows, open_dataset

    seed_everything(cfg.seed)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    molecules = list(cfg.molecules) if cfg.molecules else list(open_dataset(store))
    window = max(cfg.horizons) + ModelConfig(**cfg.model).bundle
    common = dict(molecules=molecules, window=window, stride=cfg.stride, split_by=cfg.split_by,
                  fractions=cfg.fractions, held_out_molecules=tuple(cfg.held_out_molecules),
                  seed=cfg.seed)
    train_set = TrajectoryWindows(store, split="train", **common)
    if len(train_set) == 0:
        raise InputError(f"no training windows of {window} frames in '{store}' (trajectories "
                         f"too short for the horizon {max(cfg.horizons)}, or no train split)")
    val_set = TrajectoryWindows(store, split="val", **common)
    if len(val_set) == 0:
        val_set = TrajectoryWindows(store, split="test", **common)
    multiplicities = _multiplicities(store, molecules)
    layouts: dict = {}
    dataset_hash = _store_hash(store)

    model = RTMLModel(ModelConfig(**cfg.model))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sampler, loader = _loader(train_set, cfg.batch_size, cfg.seed)
    batches_per_epoch = len(sampler) if cfg.max_batches_per_epoch is None else min(
        len(sampler), cfg.max_batches_per_epoch)
    total_steps = cfg.epochs * batches_per_epoch
    start_epoch, step, best_val = 0, 0, float("inf")
    ckpt_path = out / "checkpoint.pt"
    if resume and ckpt_path.is_file():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ckpt.get("dataset_sha256") == dataset_hash and ckpt.get("train_config") == asdict(cfg):
            model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            start_epoch, step, best_val = ckpt["epoch"] + 1, ckpt["step"], ckpt["best_val"]
            torch.set_rng_state(ckpt["torch_rng"])
            log.info("resuming training from epoch %d (step %d)", start_epoch, step)
    if start_epoch == 0:
        _initialise_scales(model, loader, multiplicities, layouts)

    writer = SummaryWriter(log_dir=str(out / "tensorboard"))
    metrics_path = out / "train_metrics.csv"
    fields = ["epoch", "step", "lr", "horizon", "ss_prob", "loss", "reconstruction", "derivative",
              "hermiticity", "trace", "idempotency", "one_step_mse", "val_one_step_mse", "seconds"]
    if start_epoch == 0 or not metrics_path.is_file():
        with open(metrics_path, "w", newline="") as fh:
            csv.writer(fh).writerow(fields)
    generator = torch.Generator().manual_seed(cfg.seed)
    bar = Progress(total_steps, "train", enabled=progress, unit="batches")
    bar(step)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        sampler.set_epoch(epoch)
        horizon, ss_prob = horizon_at(epoch, cfg), scheduled_sampling_probability(epoch, cfg)
        sums: dict[str, float] = {}
        n = 0
        for i, batch in enumerate(loader):
            if i >= batches_per_epoch:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, total_steps, cfg)
            n_spin = batch["rho"].shape[2]
            mb = molecule_batch(batch, n_spin, multiplicities, layouts)
            frames = horizon + model.config.bundle
            terms = loss_terms(model, batch["rho"][:, :frames], batch["field"][:, :frames], mb,
                               cfg, ss_prob, generator, batch.get("rho_initial"),
                               batch.get("rho_previous"))
            optimizer.zero_grad()
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            step += 1
            n += 1
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + float(value.detach())
            bar(step)
        val = validation_mse(model, val_set, cfg, multiplicities, layouts)
        row = {"epoch": epoch, "step": step, "lr": learning_rate(step, total_steps, cfg),
               "horizon": horizon, "ss_prob": ss_prob, **{k: v / max(n, 1) for k, v in sums.items()},
               "val_one_step_mse": val, "seconds": time.perf_counter() - t0}
        with open(metrics_path, "a", newline="") as fh:
            csv.writer(fh).writerow([row.get(f, "") for f in fields])
        for key in ("loss", "one_step_mse", "val_one_step_mse", "lr"):
            writer.add_scalar(key, row[key], step)
        log.info("epoch %d: loss %.3e, one-step MSE %.3e, val %.3e, horizon %d, ss %.2f (%.1f s)",
                 epoch, row["loss"], row["one_step_mse"], val, horizon, ss_prob, row["seconds"])
        improved = np.isfinite(val) and val < best_val
        if improved or not np.isfinite(val):
            best_val = val if improved else best_val
            _save(out / "model.pt", _model_state(model, cfg, dataset_hash, store))
        _save(ckpt_path, {**_model_state(model, cfg, dataset_hash, store), "optimizer": optimizer.state_dict(),
                          "epoch": epoch, "step": step, "best_val": best_val,
                          "torch_rng": torch.get_rng_state()})
    bar.close()
    writer.close()
    if not (out / "model.pt").is_file():
        _save(out / "model.pt", _model_state(model, cfg, dataset_hash, store))
    return out


def _model_state(model: RTMLModel, cfg: TrainConfig, dataset_hash: str, store) -> dict:
    return {**model.state_dict_for_checkpoint(), "train_config": asdict(cfg),
            "dataset_sha256": dataset_hash, "store": str(Path(store).resolve()),
            "split": {"fractions": list(cfg.fractions), "seed": cfg.seed,
                      "held_out_molecules": list(cfg.held_out_molecules)}}


@torch.no_grad()
def _initialise_scales(model, loader, multiplicities, layouts) -> None:
    """Latent input/output scales from the first training batch (RTMLModel.set_scales)."""
    batch = next(iter(loader))
    mb = molecule_batch(batch, batch["rho"].shape[2], multiplicities, layouts)
    model.set_scales(batch["rho"], mb, batch.get("rho_initial"))


def _save(path: Path, state: dict) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))
