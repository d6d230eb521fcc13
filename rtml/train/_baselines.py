"""Fitting the baseline propagators on the training split of a dataset store.

The ridge baseline (:class:`rtml.model.LinearPropagator`) is fitted per molecule on the
training trajectories; the validation trajectories only select its ridge penalty
(:func:`rtml.model.fit_ridge_map`); the test split is never read here.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtml._errors import InputError
from rtml.data import open_store_groups, trajectory_data, trajectory_splits
from rtml.model import PersistenceModel, fit_linear
from rtml.train._config import BASELINE_MODELS
from rtml.train._shots import few_shot_selection
from rtml.train._outputs import check_model_dir, save_state, write_rows

log = logging.getLogger("rtml.train")


def one_step_mse(model, ds, rows, molecule: str) -> float:
    """Teacher-forced one-step MSE (mean over elements) over the given trajectories (NaN if none)."""
    errors = []
    for row in rows:
        traj = trajectory_data(ds, row, molecule)
        errors.append(float(np.mean(np.abs(model.one_step(traj) - traj.rho[1:]) ** 2)))
    return float(np.mean(errors)) if errors else float("nan")


def train_baseline(store, model_name: str, output_dir, molecules=None, seed: int = 0,
                   fractions=(0.8, 0.1, 0.1), held_out_molecules=(), shots: int = 0) -> Path:
    """Fit a baseline on ``store`` and write ``model.pt`` and ``train_metrics.csv``.

    ``shots`` > 0 fits on that many training trajectories only, the same ones
    :func:`rtml.train._shots.few_shot_selection` gives the learned model.

    Both files are written to temporary names and renamed; the directory is created only
    then, so a fit that fails leaves none.
    """
    if model_name not in BASELINE_MODELS:
        raise InputError(f"unknown model '{model_name}'; choose from {', '.join(BASELINE_MODELS)}")
    out = Path(output_dir)
    check_model_dir(out)
    groups = open_store_groups(store, molecules)
    splits = trajectory_splits(groups, fractions, seed, held_out_molecules)
    if shots:
        keep = set(few_shot_selection([(mol, row) for mol in groups for row in splits[mol]["train"]],
                                      shots, seed, store))
        for mol in groups:
            splits[mol]["train"] = [row for row in splits[mol]["train"] if (mol, row) in keep]
    model = fit_linear(groups, splits) if model_name == "linear" else PersistenceModel()
    rows = []
    for mol, ds in groups.items():
        if model_name == "linear" and mol not in model.fits:
            continue
        row = {"molecule": mol, "n_train": len(splits[mol]["train"]),
               "n_val": len(splits[mol]["val"]), "n_test": len(splits[mol]["test"]),
               "train_one_step_mse": one_step_mse(model, ds, splits[mol]["train"], mol),
               "val_one_step_mse": one_step_mse(model, ds, splits[mol]["val"], mol)}
        if model_name == "linear":
            row["ridge"] = model.fits[mol].ridge
            row["spectral_radius"] = model.fits[mol].spectral_radius
        rows.append(row)
        log.info("%s: %s one-step MSE train %.3e, val %.3e", model_name, mol,
                 row["train_one_step_mse"], row["val_one_step_mse"])
    out.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    state.update({"store": str(Path(store).resolve()), "dataset_molecules": sorted(groups),
                  "split": {"fractions": list(fractions), "seed": seed,
                            "held_out_molecules": list(held_out_molecules)}})
    save_state(out / "model.pt", state)
    write_rows(out / "train_metrics.csv", rows, list(rows[0]) if rows else ["molecule"])
    return out
