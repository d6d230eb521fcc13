"""``rtml evaluate``: trained models and the baselines on the same test trajectories.

Every model is evaluated by the same code on the **test split only** (see
:func:`rtml.data.trajectory_splits`; a molecule without test trajectories is skipped, never
scored on its training data); the baselines are fitted here on the training trajectories
(validation only selects the ridge penalty). Per trajectory (metric definitions:
:mod:`rtml.evaluate._metrics`): teacher-forced one-step MSE, free rollouts from the first
frame under the true field with the relative error e(t), its value at the steps reached
(``rollout_error_at_<k>``), the valid horizon, OrbEvo's ``scaled_l2_<k>``, the induced-dipole
nRMSE, spectra of kick trajectories (nRMSE below 20 eV, overlap, peak shifts) and physics
compliance of the rolled-out densities.

Aggregation over a molecule's test trajectories (one row per model and molecule):
``rollout_error_at_<k>`` and ``median_valid_horizon`` are medians (``..._mean`` /
``mean_valid_horizon`` the means); ``scaled_l2_<k>``, ``one_step_mse``, the dipole and
spectrum errors and ``spectrum_overlap`` are means; ``max_peak_shift_ev`` and the physics
columns are the worst case. Static references (no response above numerical noise) are
counted in ``static_reference`` and left out of every e-based metric. Results go to ``metrics.json``
and ``metrics.tsv`` and to plots drawn from the same numbers.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rtml._atomic import atomic_write_text
from rtml._errors import InputError
from rtml.chem import build_mole_from_atoms, dipole_integrals, nuclear_dipole
from rtml.data import open_store_groups, trajectory_data, trajectory_splits
from rtml.evaluate._metrics import (SCALED_L2_WINDOWS, VALID_HORIZON_THRESHOLD,
                                    dipole_from_density, dipole_nrmse, dynamics_scale,
                                    mean_squared_error, peak_shifts, physics_compliance,
                                    relative_error_curve, rollout_errors_at, scaled_l2,
                                    spectrum_nrmse, spectrum_overlap, valid_horizon)
from rtml.evaluate._calibration import plot_calibration, spread_calibration
from rtml.evaluate._plots import plot_results
from rtml.model import LinearResponsePropagator, PersistenceModel, fit_linear, load_model
from rtml.observables import electrons_per_spin
from rtml.tddft import absorption_spectrum, find_peaks
from rtml.units import HARTREE_EV

log = logging.getLogger("rtml.evaluate")

#: Requested rollout horizons (steps); the last step is always reported too.
HORIZONS = (100,)
#: metrics.tsv columns; the ``rollout_error_at_<k>`` columns of the steps actually reached
#: are inserted where ``rollout_error_at_<k>`` stands (see :func:`tsv_columns`).
TSV_COLUMNS = ("model", "molecule", "held_out", "n_test", "static_reference", "one_step_mse",
               "rollout_error_at_<k>", "median_valid_horizon", "mean_valid_horizon",
               *(f"scaled_l2_{k}" for k in SCALED_L2_WINDOWS), "dipole_nrmse",
               "spectrum_nrmse_20ev", "spectrum_overlap", "max_peak_shift_ev", "trace_error",
               "hermiticity_error", "min_eigenvalue", "max_eigenvalue", "occupation_violation")
_WORST = {"trace_error": max, "hermiticity_error": max, "min_eigenvalue": min,
          "max_eigenvalue": max, "occupation_violation": max, "max_peak_shift_ev": max}
_MEAN = ("one_step_mse", *(f"scaled_l2_{k}" for k in SCALED_L2_WINDOWS), "dipole_nrmse",
         "dipole_rmse_au", "spectrum_nrmse_20ev", "spectrum_overlap")


def dipole_operator(ds, row: int):
    """AO dipole integrals (3, nao, nao) about the stored origin and the nuclear dipole (3,),
    bohr, of trajectory ``row`` of a molecule's store group ``ds`` (the stored dipole is
    ``nuclear - Re Tr(ints P)``, :func:`dipole_from_density`)."""
    mol = build_mole_from_atoms(ds.attrs.get("molecule", "molecule"), ds.atomic_numbers.values,
                                ds.positions[row].values, ds.attrs["basis"], ds.attrs["charge"],
                                ds.attrs["multiplicity"])
    origin = ds.dipole_origin[row].values
    return dipole_integrals(mol, origin), nuclear_dipole(mol, origin)


def _kick_spectrum(time, dipole, kick, polarization):
    spec = absorption_spectrum(time, dipole, kick, polarization, omega_max=1.5)
    omega, _ = find_peaks(spec, min_relative_height=0.05)
    return spec, omega


class Reference(NamedTuple):
    """A reference trajectory and what every model is compared with, computed once."""

    traj: object                # TrajectoryData
    dipole: np.ndarray          # (T, 3) stored RT-TDDFT dipole
    dipole_ints: np.ndarray     # (3, n, n)
    nuclear_dipole: np.ndarray  # (3,)
    n_per_spin: np.ndarray
    time: np.ndarray
    kick: tuple | None          # (kappa, polarization) of a kick trajectory
    spectrum: tuple | None      # (Spectrum, peaks) of the reference dipole
    dynamics_scale: float       # max_t ||P(t) - P(0)||_F of the reference


def reference(ds, row: int, molecule: str) -> Reference:
    """Load trajectory ``row`` and precompute its dipole operator and reference spectrum."""
    traj = trajectory_data(ds, row, molecule)
    ints, nuc = dipole_operator(ds, row)
    dipole, time = ds.dipole[row].values, ds.time.values
    kappa = float(ds.kick_strength[row].values)
    kick = spectrum = None
    if str(ds.field_kind[row].values) == "kick" and kappa != 0.0 and len(traj.rho) >= 16:
        kick = (kappa, ds.field_polarization[row].values)
        spectrum = _kick_spectrum(time, dipole, *kick)
    n_per_spin = electrons_per_spin(traj.n_electrons, traj.multiplicity, traj.rho.shape[1])
    return Reference(traj, dipole, ints, nuc, n_per_spin, time, kick, spectrum,
                     dynamics_scale(traj.rho))


def evaluate_trajectory(model, ref: Reference, horizons=HORIZONS) -> dict:
    """All metrics of one model on one reference trajectory (see :mod:`rtml.evaluate._metrics`).

    Returns the scalar metrics plus ``error_curve`` (T,), ``static_reference`` (bool),
    ``dynamics_scale`` (the reference's response max_t ||P(t) - P(0)||_F, which the plots
    use to show the most-moving trajectory), ``dipole_pred``/``dipole_ref`` (T, 3) and, for
    a kick, ``spectra`` (reference, predicted).
    """
    rho = ref.traj.rho
    one_step = model.one_step(ref.traj)
    rollout = model.rollout_trajectory(ref.traj)
    curve = relative_error_curve(rollout, rho)
    static = bool(np.isnan(curve).all())
    out = {"one_step_mse": mean_squared_error(one_step, rho[1:]), "error_curve": curve,
           "static_reference": static, "dynamics_scale": ref.dynamics_scale,
           "valid_horizon": valid_horizon(curve),
           **rollout_errors_at(curve, horizons), **scaled_l2(curve)}
    dip_pred = dipole_from_density(rollout, ref.dipole_ints, ref.nuclear_dipole)
    out["dipole_nrmse"] = dipole_nrmse(dip_pred, ref.dipole)
    out["dipole_rmse_au"] = float(np.sqrt(np.mean(((dip_pred - dip_pred[0])
                                                    - (ref.dipole - ref.dipole[0])) ** 2)))
    out["dipole_pred"], out["dipole_ref"] = dip_pred, ref.dipole
    out.update(physics_compliance(rollout, ref.traj.overlap, ref.n_per_spin))
    if ref.kick is not None:
        s_ref, peaks_ref = ref.spectrum
        s_pred, peaks_pred = _kick_spectrum(ref.time, dip_pred, *ref.kick)
        out["spectrum_overlap"] = spectrum_overlap(s_pred.strength, s_ref.strength)
        out["spectrum_nrmse_20ev"] = spectrum_nrmse(s_ref.omega_ev, s_pred.strength, s_ref.strength)
        shifts = peak_shifts(peaks_pred, peaks_ref) * HARTREE_EV
        out["max_peak_shift_ev"] = float(shifts.max()) if len(shifts) else float("nan")
        out["spectra"] = (s_ref, s_pred)
    return out


def _defined(values) -> list[float]:
    """Values other than None/NaN (inf is kept: a missing peak is an infinite shift)."""
    return [float(v) for v in values if v is not None and not np.isnan(v)]


def _agg(func, values) -> float:
    values = _defined(values)
    return float(func(values)) if values else float("nan")


def aggregate(results: list[dict]) -> dict:
    """One row of the summary from the per-trajectory results of one model and molecule.

    Medians for ``rollout_error_at_<k>`` and the valid horizon (means as ``..._mean`` and
    ``mean_valid_horizon``), means for the other errors, worst case for the physics columns
    and ``max_peak_shift_ev``; NaN where no trajectory defines a metric (static references).
    """
    at_keys = sorted({k for r in results for k in r if k.startswith("rollout_error_at_")},
                     key=lambda k: int(k.rsplit("_", 1)[1]))
    row = {"n_test": len(results),
           "static_reference": sum(bool(r["static_reference"]) for r in results),
           "n_kick": sum("spectra" in r for r in results),
           "median_valid_horizon": _agg(np.median, [r["valid_horizon"] for r in results]),
           "mean_valid_horizon": _agg(np.mean, [r["valid_horizon"] for r in results])}
    for key in at_keys:
        row[key] = _agg(np.median, [r.get(key) for r in results])
        row[f"{key}_mean"] = _agg(np.mean, [r.get(key) for r in results])
    for key in _MEAN:
        row[key] = _agg(np.mean, [r.get(key) for r in results])
    for key, worst in _WORST.items():
        row[key] = _agg(worst, [r.get(key) for r in results])
    return row


def evaluate_models(models: dict, groups: dict, splits: dict,
                    held_out_molecules=()) -> tuple[dict, dict]:
    """Metrics per model and molecule on the test split, and per-trajectory details for plots.

    ``held_out`` in each row says what the test trajectories are new to the model:
    ``geometry`` (held-out geometries of a trained molecule) or ``molecule`` (a molecule kept
    out of training: zero-shot). Molecules without test trajectories are skipped.
    """
    summary, details = {}, {}
    references: dict = {}  # loaded and prepared once, shared by every model
    for mol in groups:
        if not splits[mol]["test"]:
            log.warning("%s has no test trajectories (too few geometries for a test split): "
                        "not evaluated", mol)
    for name, model in models.items():
        summary[name], details[name] = {}, {}
        for mol, ds in groups.items():
            rows = splits[mol]["test"]
            if not rows:
                continue
            if hasattr(model, "fits") and mol not in model.fits:
                log.info("%s has no fit for %s (held out or not trained); skipped", name, mol)
                continue
            for row in rows:
                if (mol, row) not in references:
                    references[(mol, row)] = reference(ds, row, mol)
            results = [evaluate_trajectory(model, references[(mol, row)]) for row in rows]
            details[name][mol] = [(row, r) for row, r in zip(rows, results)]
            summary[name][mol] = {
                "held_out": "molecule" if mol in held_out_molecules else "geometry",
                "test_split": "test", **aggregate(results)}
            m = summary[name][mol]
            log.info("%s on %s (%d test trajectories, %d static): one-step MSE %.3e, median "
                     "valid horizon %.0f", name, mol, len(rows), m["static_reference"],
                     m["one_step_mse"], m["median_valid_horizon"])
    if not any(summary[name] for name in summary):
        raise InputError("no test trajectories to evaluate (every molecule's test split is empty "
                         "or no model was fitted for it)")
    return summary, details


def tsv_columns(summary: dict) -> list[str]:
    """:data:`TSV_COLUMNS` with the ``rollout_error_at_<k>`` columns present in ``summary``."""
    at = sorted({k for per_mol in summary.values() for m in per_mol.values() for k in m
                 if k.startswith("rollout_error_at_") and not k.endswith("_mean")},
                key=lambda k: int(k.rsplit("_", 1)[1]))
    i = TSV_COLUMNS.index("rollout_error_at_<k>")
    return [*TSV_COLUMNS[:i], *at, *TSV_COLUMNS[i + 1:]]


def write_metrics(summary: dict, output_dir: Path, settings: dict) -> None:
    """``metrics.json`` (everything) and ``metrics.tsv`` (one row per model and molecule)."""
    columns = tsv_columns(summary)
    lines = ["\t".join(columns)]
    for name, per_mol in summary.items():
        for mol, m in per_mol.items():
            values = [m.get(c, float("nan")) for c in columns[2:]]
            cells = [name, mol] + [f"{v:.6g}" if isinstance(v, float) else str(v) for v in values]
            lines.append("\t".join(cells))
    atomic_write_text(output_dir / "metrics.tsv", "\n".join(lines) + "\n")
    atomic_write_text(output_dir / "metrics.json",
                      json.dumps({"settings": settings, "models": summary}, indent=2,
                                 sort_keys=True, default=float))


#: ``ModelConfig.learned`` -> suffix of the model's name in the tables (none for the default).
_LEARNED_SUFFIX = {"xc-nonlinear": "", "xc": "-xc", "two-electron": "-2e"}


def _model_name(state: dict) -> str:
    if state.get("model") == "rtml":
        cfg = state["config"]
        base = "rtml" if cfg.get("dynamics", "mamba") == "mamba" else "rtml-mlp"
        return base + _LEARNED_SUFFIX.get(cfg.get("learned", "xc"), "")
    return f"trained_{state['model']}"


def evaluate(store, model_dir, output_dir, baselines=("persistence", "linear", "lr-tddft"),
             molecules=None, compare=()) -> dict:
    """Evaluate the model in ``model_dir``, further trained models (``compare``) and the
    baselines on the test split of ``store`` (the split the first model was trained with)."""
    model, state = load_model(model_dir)
    split_cfg = state.get("split", {})
    groups = open_store_groups(store, molecules)
    splits = trajectory_splits(groups, split_cfg.get("fractions", (0.8, 0.1, 0.1)),
                               split_cfg.get("seed", 0), split_cfg.get("held_out_molecules", ()))
    models = {_model_name(state): model}
    for other_dir in compare:
        other, other_state = load_model(other_dir)
        models[_model_name(other_state)] = other
    for name in baselines:
        if name == "persistence":
            models["persistence"] = PersistenceModel()
        elif name == "linear":
            models["linear"] = fit_linear(groups, splits)
        elif name == "lr-tddft":
            models["lr-tddft"] = LinearResponsePropagator()
        else:
            raise InputError(f"unknown baseline '{name}' (known: persistence, linear, lr-tddft)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, details = evaluate_models(models, groups, splits,
                                       split_cfg.get("held_out_molecules", ()))
    write_metrics(summary, out, {"store": str(Path(store).resolve()), "model_dir": str(model_dir),
                                 "baselines": list(baselines), "split": split_cfg,
                                 "evaluated_split": "test", "horizons": list(HORIZONS),
                                 "scaled_l2_windows": list(SCALED_L2_WINDOWS),
                                 "valid_horizon_threshold": VALID_HORIZON_THRESHOLD})
    plot_results(summary, details, groups, out)
    if len(getattr(model, "members", ())) > 1:
        write_calibration(model, groups, splits, out)
    return summary


def write_calibration(ensemble, groups: dict, splits: dict, out: Path) -> dict:
    """``calibration.json`` and ``calibration.png``: the ensemble's spread against its error
    on the test split (:func:`rtml.evaluate.spread_calibration`)."""
    refs = {mol: [reference(ds, row, mol) for row in splits[mol]["test"]]
            for mol, ds in groups.items() if splits[mol]["test"]}
    calibration = spread_calibration(ensemble, refs)
    atomic_write_text(out / "calibration.json", json.dumps(calibration, indent=1, default=float))
    plot_calibration(calibration, out / "calibration.png")
    for kind, per_mol in calibration["monotonic"].items():
        log.info("spread calibration (%s): error rises with the spread bin by bin for %s; not for %s",
                 kind, ", ".join(m for m, ok in per_mol.items() if ok) or "none",
                 ", ".join(m for m, ok in per_mol.items() if not ok) or "none")
    return calibration
