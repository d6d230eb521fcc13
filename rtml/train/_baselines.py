"""Fitting the baseline propagators on the training split of a dataset store."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from rtml._atomic import atomic_write
from rtml._errors import InputError
from rtml.evaluate._metrics import mean_squared_error
from rtml.model._baselines import LinearPropagator, PersistenceModel

log = logging.getLogger("rtml.train")

BASELINE_MODELS = ("linear", "persistence")


def trajectory_splits(datasets: dict, fractions=(0.8, 0.1, 0.1), seed: int = 0,
                      held_out_molecules=()) -> dict[str, dict[str, list[int]]]:
    """Row indices of each molecule's trajectories per split, by geometry.

    The split of a geometry is :func:`rtml.data.assign_splits` (stable SHA-256 hash, the same
    as :class:`rtml.data.TrajectoryWindows`); molecules in ``held_out_molecules`` go to
    ``test`` whole (zero-shot).

    Returns:
        ``{molecule: {"train": [...], "val": [...], "test": [...]}}``.
    """
    from rtml.data._windows import assign_splits

    keys = [(mol, str(g)) for mol, ds in datasets.items() for g in ds.geometry_id.values]
    assignment = assign_splits(keys, fractions=fractions, seed=seed)
    out = {}
    for mol, ds in datasets.items():
        rows = {"train": [], "val": [], "test": []}
        for row, geometry in enumerate(ds.geometry_id.values):
            split = "test" if mol in held_out_molecules else assignment[(mol, str(geometry))]
            rows[split].append(row)
        out[mol] = rows
    return out


def open_store_groups(store, molecules=None) -> dict:
    """xarray Datasets of the requested molecule groups (all if None)."""
    from rtml.data import open_dataset

    groups = open_dataset(store)
    if molecules:
        missing = [m for m in molecules if m not in groups]
        if missing:
            raise InputError(f"store '{store}' has no trajectories for {', '.join(missing)} "
                             f"(it has: {', '.join(groups) or 'none'})")
        groups = {m: groups[m] for m in molecules}
    if not groups:
        raise InputError(f"store '{store}' holds no trajectories")
    return groups


def fit_linear(groups: dict, splits: dict, ridge: float = 1e-8) -> LinearPropagator:
    """Ridge fit of one linear propagator per molecule on its training trajectories."""
    model = LinearPropagator(ridge=ridge)
    for mol, ds in groups.items():
        rows = splits[mol]["train"] or splits[mol]["val"]
        if not rows:
            log.warning("%s: no training trajectories; the linear propagator skips it", mol)
            continue
        for row in rows:
            model.accumulate(mol, ds.rho[row].values, ds.field[row].values)
    model.solve()
    return model


def one_step_mse(model, ds, rows, molecule: str) -> float:
    """Teacher-forced one-step MSE over the given trajectories (NaN if none)."""
    from rtml.evaluate._run import trajectory_data

    errors = []
    for row in rows:
        traj = trajectory_data(ds, row, molecule)
        errors.append(mean_squared_error(model.one_step(traj), traj.rho[1:]))
    return float(np.mean(errors)) if errors else float("nan")


def train_baseline(store, model_name: str, output_dir, molecules=None, seed: int = 0,
                   fractions=(0.8, 0.1, 0.1), held_out_molecules=(), ridge: float = 1e-8) -> Path:
    """Fit a baseline on ``store`` and write ``model.pt`` and ``train_metrics.csv``.

    Both files are written to temporary names and renamed.
    """
    import torch

    if model_name not in BASELINE_MODELS:
        raise InputError(f"unknown model '{model_name}'; choose from {', '.join(BASELINE_MODELS)}")
    groups = open_store_groups(store, molecules)
    splits = trajectory_splits(groups, fractions, seed, held_out_molecules)
    model = fit_linear(groups, splits, ridge) if model_name == "linear" else PersistenceModel()
    rows = []
    for mol, ds in groups.items():
        if model_name == "linear" and mol not in model.fits:
            continue
        row = {"molecule": mol, "n_train": len(splits[mol]["train"]),
               "n_val": len(splits[mol]["val"]), "n_test": len(splits[mol]["test"]),
               "train_one_step_mse": one_step_mse(model, ds, splits[mol]["train"], mol),
               "val_one_step_mse": one_step_mse(model, ds, splits[mol]["val"], mol)}
        rows.append(row)
        log.info("%s: %s one-step MSE train %.3e, val %.3e", model_name, mol,
                 row["train_one_step_mse"], row["val_one_step_mse"])
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    state.update({"store": str(Path(store).resolve()), "dataset_molecules": sorted(groups),
                  "split": {"fractions": list(fractions), "seed": seed,
                            "held_out_molecules": list(held_out_molecules)}})
    atomic_write(out / "model.pt", lambda p: torch.save(state, p))
    atomic_write(out / "train_metrics.csv", lambda p: _write_csv(p, rows))
    return out


def _write_csv(path, rows) -> None:
    with open(path, "w", newline="") as fh:
        if not rows:
            fh.write("molecule\n")
            return
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def load_model(model_dir):
    """Load a trained model directory (``model.pt``) into a model object and its state."""
    import torch

    from rtml.model._baselines import load_baseline

    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise InputError(f"no trained model at '{path}'")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("model") == "rtml":
        from rtml.model import load_rtml

        return load_rtml(state), state
    return load_baseline(state), state
