"""``rtml train-guess``: fit the learned ground-state guess (:class:`rtml.model.GroundStateGuess`)
on the ground states a dataset store records, one per geometry.

Geometries are split as the dynamics model splits them (:func:`rtml.data.trajectory_splits`,
the same fractions and seed give the same test geometries); the weights kept are those of
the epoch with the lowest validation loss (the test split is only reported).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from rtml._errors import InputError
from rtml.chem import build_mole_from_atoms
from rtml.data import open_store_groups, trajectory_data, trajectory_splits
from rtml.model import (GUESS_FILE, BasisLayout, GroundStateGuess, ModelConfig, float64_default,
                        minao_density)
from rtml.tddft import lowdin_orthogonalizer

log = logging.getLogger("rtml.train")

#: Metrics written beside the weights.
GUESS_METRICS_FILE = "guess_metrics.json"


class GuessSample(NamedTuple):
    """One geometry's ground state, as the guess learns it (Löwdin basis, total density)."""

    molecule: str
    geometry_id: str
    split: str
    mol: object                 # PySCF Mole
    layout: BasisLayout
    positions_angstrom: np.ndarray
    overlap: np.ndarray
    rho_ground: np.ndarray      # (n_spin, n, n) AO
    xc: str
    target: np.ndarray          # P0' - P'_minao, (n, n)
    p0_norm: float              # ||P0'||_F
    minao_error: float          # ||P'_minao - P0'||_F / ||P0'||_F


def guess_samples(stores, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                  held_out_molecules=()) -> list[GuessSample]:
    """Every geometry of the stores with a recorded ground state, with its split."""
    samples = []
    for store in stores:
        groups = open_store_groups(store)
        splits = trajectory_splits(groups, fractions, seed, held_out_molecules)
        for molecule, split_rows in splits.items():
            ds = groups[molecule]
            seen = set()
            for split, rows in split_rows.items():
                for row in rows:
                    gid = str(ds.geometry_id.values[row])
                    if gid in seen:
                        continue
                    t = trajectory_data(ds, row, molecule)
                    if t.rho_ground is None:
                        continue
                    seen.add(gid)
                    mol = build_mole_from_atoms(molecule, t.atomic_numbers, t.positions_angstrom,
                                                t.basis, t.charge, t.multiplicity)
                    _, s_half = lowdin_orthogonalizer(t.overlap)
                    p0 = s_half @ t.rho_ground.sum(0) @ s_half
                    minao = s_half @ minao_density(mol) @ s_half
                    samples.append(GuessSample(
                        molecule, gid, split, mol, BasisLayout.from_mole(mol),
                        np.asarray(t.positions_angstrom, dtype=float), t.overlap, t.rho_ground,
                        str(t.xc), p0 - minao, float(np.linalg.norm(p0)),
                        float(np.linalg.norm(minao - p0) / np.linalg.norm(p0))))
    if not any(s.split == "train" for s in samples):
        raise InputError("no training geometry with a recorded ground state in "
                         + ", ".join(str(s) for s in stores))
    return samples


def _batches(samples, split):
    """One (layout, positions (B, A, 3), targets (B, n, n), samples) per molecule."""
    by = {}
    for s in samples:
        if s.split == split:
            by.setdefault(s.molecule, []).append(s)
    return [(v[0].layout, torch.as_tensor(np.stack([s.positions_angstrom for s in v])),
             torch.as_tensor(np.stack([s.target for s in v])), v) for v in by.values()]


def _loss(model, batches, scale: float) -> torch.Tensor:
    r"""Mean over molecules of the mean squared error of ΔP', in units of the targets' RMS."""
    return sum(((model(layout, pos) - target) ** 2).mean() for layout, pos, target, _ in batches
               ) / (len(batches) * scale ** 2)


@torch.no_grad()
def _errors(model, batches) -> dict:
    """Relative Löwdin density error ||P'_minao + ΔP'_θ - P0'|| / ||P0'|| (before
    purification) per geometry, and minao's."""
    out = {}
    for layout, pos, target, items in batches:
        pred = model(layout, pos).numpy()
        for s, p, t in zip(items, pred, target.numpy()):
            out[f"{s.molecule}/{s.geometry_id}"] = {
                "split": s.split, "guess": float(np.linalg.norm(p - t) / s.p0_norm),
                "minao": s.minao_error}
    return out


def train_ground_state_guess(stores, output, epochs: int = 400, lr: float = 1e-3,
                             weight_decay: float = 1e-2, seed: int = 0,
                             fractions=(0.8, 0.1, 0.1), held_out_molecules=(),
                             eval_every: int = 10, config: ModelConfig | None = None) -> Path:
    """Fit the guess on the training geometries of ``stores``; write ``output/GUESS_FILE``
    (the best-validation weights) and ``output/GUESS_METRICS_FILE``. Returns the weights path.

    Full-batch AdamW (one step per epoch over every training geometry); the validation loss
    every ``eval_every`` epochs selects the weights (the training loss when there is no
    validation geometry)."""
    if epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {epochs}")
    samples = guess_samples(stores, fractions, seed, held_out_molecules)
    torch.manual_seed(seed)
    with float64_default():
        model = GroundStateGuess(config)
    train, val, test = (_batches(samples, s) for s in ("train", "val", "test"))
    scale = float(np.sqrt(np.mean(np.concatenate([t.numpy().ravel() for _, _, t, _ in train]) ** 2)))
    model.output_scale.fill_(scale)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    best, t0 = (np.inf, None, -1), time.perf_counter()
    log.info("ground-state guess: %d train, %d val, %d test geometries of %s", sum(len(b[3]) for b in train),
             sum(len(b[3]) for b in val), sum(len(b[3]) for b in test),
             ", ".join(sorted({s.molecule for s in samples})))
    for epoch in range(epochs):
        opt.zero_grad()
        loss = _loss(model, train, scale)
        loss.backward()
        opt.step()
        if epoch % eval_every == 0 or epoch == epochs - 1:
            with torch.no_grad():
                v = float(_loss(model, val, scale)) if val else float(loss.detach())
            if v < best[0]:
                best = (v, {k: x.clone() for k, x in model.state_dict().items()}, epoch)
            log.info("guess epoch %d/%d: train %.4f, val %.4f (best %.4f at %d), %.0f s",
                     epoch + 1, epochs, float(loss.detach()), v, best[0], best[2] + 1,
                     time.perf_counter() - t0)
    model.load_state_dict(best[1])
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict_for_checkpoint()
    state["training"] = {"stores": [str(Path(s).resolve()) for s in stores], "epochs": epochs,
                         "lr": lr, "weight_decay": weight_decay, "seed": seed,
                         "fractions": list(fractions), "held_out_molecules": list(held_out_molecules),
                         "best_epoch": best[2] + 1, "best_val_loss": best[0]}
    errors = _errors(model, train + val + test)
    summary = {split: {k: float(np.median([e[k] for e in errors.values() if e["split"] == split]))
                       for k in ("guess", "minao")}
               for split in ("train", "val", "test") if any(e["split"] == split for e in errors.values())}
    _write_atomic(out / GUESS_FILE, lambda f: torch.save(state, f))
    _write_atomic(out / GUESS_METRICS_FILE, lambda f: f.write(json.dumps(
        {"training": state["training"], "median_relative_error": summary, "geometries": errors},
        indent=1).encode()))
    log.info("guess: median relative density error (test) %s", summary.get("test"))
    return out / GUESS_FILE


def _write_atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)
