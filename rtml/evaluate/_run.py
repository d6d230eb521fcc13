"""``rtml evaluate``: a trained model and the baselines on the same test trajectories.

Every model is evaluated by the same code on the same split (see
:func:`rtml.train._baselines.trajectory_splits`): teacher-forced one-step error, free
rollouts from the first frame under the true field, induced-dipole error, spectra of kick
trajectories, and physics compliance of the rolled-out densities. Results go to
``metrics.json`` and ``metrics.tsv`` (one row per model and molecule) and plots.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rtml._atomic import atomic_write, atomic_write_text
from rtml._errors import InputError
from rtml.evaluate._metrics import (dipole_from_density, mean_squared_error, peak_shifts,
                                    physics_compliance, relative_error_curve, spectrum_overlap,
                                    valid_horizon)
from rtml.observables import electrons_per_spin
from rtml.units import HARTREE_EV

log = logging.getLogger("rtml.evaluate")

HORIZONS = (100, 1000)
TSV_COLUMNS = ("model", "molecule", "held_out", "n_test", "one_step_mse", "rollout_mse_100",
               "rollout_mse_1000", "valid_horizon", "dipole_rmse", "spectrum_overlap",
               "max_peak_shift_ev", "trace_error", "hermiticity_error", "min_eigenvalue")


def dipole_operator(ds, row: int):
    """AO dipole integrals about the stored origin and the nuclear dipole, for one trajectory."""
    from pyscf import gto

    positions = ds.positions[row].values
    atoms = [(int(z), tuple(p)) for z, p in zip(ds.atomic_numbers.values, positions)]
    mol = gto.M(atom=atoms, basis=str(ds.attrs["basis"]), charge=int(ds.attrs["charge"]),
                spin=int(ds.attrs["multiplicity"]) - 1, unit="Angstrom", verbose=0)
    origin = ds.dipole_origin[row].values
    with mol.with_common_origin(origin):
        ints = mol.intor_symmetric("int1e_r", comp=3)
    charges = mol.atom_charges().astype(float)
    return ints, charges @ (mol.atom_coords(unit="Bohr") - origin)


def _kick_spectrum(time, dipole, kick, polarization):
    from rtml.tddft import absorption_spectrum, find_peaks

    spec = absorption_spectrum(time, dipole, kick, polarization, omega_max=1.5)
    omega, _ = find_peaks(spec, min_relative_height=0.05)
    return spec, omega


def trajectory_data(ds, row: int, molecule: str):
    """The reference trajectory ``row`` of a store group as a :class:`TrajectoryData`."""
    from rtml.model import TrajectoryData

    return TrajectoryData(
        molecule=molecule, rho=ds.rho[row].values, field=ds.field[row].values,
        positions_angstrom=ds.positions[row].values, atomic_numbers=ds.atomic_numbers.values,
        basis_atom_index=ds.basis_atom_index.values,
        basis_angular_momentum=ds.basis_angular_momentum.values,
        basis_magnetic_quantum=ds.basis_magnetic_quantum.values, overlap=ds.overlap[row].values,
        n_electrons=int(ds.attrs["n_electrons"]), multiplicity=int(ds.attrs["multiplicity"]))


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
    return Reference(traj, dipole, ints, nuc, n_per_spin, time, kick, spectrum)


def evaluate_trajectory(model, ref: Reference, horizons=HORIZONS) -> dict:
    """All metrics of one model on one reference trajectory (see module docstring)."""
    rho = ref.traj.rho
    one_step = model.one_step(ref.traj)
    rollout = model.rollout_trajectory(ref.traj)
    curve = relative_error_curve(rollout, rho)
    out = {"one_step_mse": mean_squared_error(one_step, rho[1:]), "error_curve": curve,
           "valid_horizon": valid_horizon(curve)}
    for h in horizons:
        k = min(h, len(rho) - 1)
        out[f"rollout_mse_{h}"] = mean_squared_error(rollout[k], rho[k])
        out[f"rollout_horizon_{h}"] = k
    dip_pred = dipole_from_density(rollout, ref.dipole_ints, ref.nuclear_dipole)
    out["dipole_rmse"] = float(np.sqrt(np.mean((dip_pred - ref.dipole) ** 2)))
    out["dipole_pred"], out["dipole_ref"] = dip_pred, ref.dipole
    out.update(physics_compliance(rollout, ref.traj.overlap, ref.n_per_spin))
    if ref.kick is not None:
        s_ref, peaks_ref = ref.spectrum
        s_pred, peaks_pred = _kick_spectrum(ref.time, dip_pred, *ref.kick)
        out["spectrum_overlap"] = spectrum_overlap(s_pred.strength, s_ref.strength)
        shifts = peak_shifts(peaks_pred, peaks_ref) * HARTREE_EV
        out["max_peak_shift_ev"] = float(shifts.max()) if len(shifts) else float("nan")
        out["spectra"] = (s_ref, s_pred)
    return out


def _mean(values):
    values = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def evaluate_models(models: dict, groups: dict, splits: dict,
                    held_out_molecules=()) -> tuple[dict, dict]:
    """Metrics per model and molecule, and per-trajectory details for the plots.

    ``held_out`` in each row says what the test trajectories are new to the model:
    ``geometry`` (held-out geometries of a trained molecule), ``molecule`` (a molecule kept
    out of training: zero-shot) or ``none`` (one geometry only: training trajectories).
    """
    summary, details = {}, {}
    references: dict = {}  # loaded and prepared once, shared by every model
    for name, model in models.items():
        summary[name], details[name] = {}, {}
        for mol, ds in groups.items():
            split = "test" if splits[mol]["test"] else "val" if splits[mol]["val"] else "train"
            rows = splits[mol][split]
            if split == "train":
                log.warning("%s has no held-out geometry (one geometry only): evaluating on "
                            "its training trajectories", mol)
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
                "held_out": ("molecule" if mol in held_out_molecules
                             else "geometry" if split != "train" else "none"),
                "n_test": len(rows),
                "test_split": split,
                **{key: _mean([r.get(key) for r in results])
                   for key in TSV_COLUMNS[4:] if key not in ("trace_error", "hermiticity_error",
                                                            "min_eigenvalue")},
                "trace_error": max(r["trace_error"] for r in results),
                "hermiticity_error": max(r["hermiticity_error"] for r in results),
                "min_eigenvalue": min(r["min_eigenvalue"] for r in results),
                "rollout_horizon_100": min(r["rollout_horizon_100"] for r in results),
                "rollout_horizon_1000": min(r["rollout_horizon_1000"] for r in results),
            }
            log.info("%s on %s (%d trajectories): one-step MSE %.3e, valid horizon %.0f", name,
                     mol, len(rows), summary[name][mol]["one_step_mse"],
                     summary[name][mol]["valid_horizon"])
    return summary, details


def write_metrics(summary: dict, output_dir: Path, settings: dict) -> None:
    """``metrics.json`` (everything) and ``metrics.tsv`` (one row per model and molecule)."""
    lines = ["\t".join(TSV_COLUMNS)]
    for name, per_mol in summary.items():
        for mol, m in per_mol.items():
            cells = [name, mol] + [f"{m[c]:.6g}" if isinstance(m[c], float) else str(m[c])
                                   for c in TSV_COLUMNS[2:]]
            lines.append("\t".join(cells))
    atomic_write_text(output_dir / "metrics.tsv", "\n".join(lines) + "\n")
    atomic_write_text(output_dir / "metrics.json",
                 json.dumps({"settings": settings, "models": summary}, indent=2, sort_keys=True,
                            default=float))


def plot_results(details: dict, groups: dict, output_dir: Path) -> list[Path]:
    """dipole.png, error_vs_horizon.png and (with a kick trajectory) spectrum.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    names = list(details)
    first = next(((mol, rows[0]) for mol, rows in details[names[0]].items() if rows), None) if names else None
    if first is None:
        raise InputError("no test trajectories to evaluate")
    mol, (row, ref_result) = first
    ds = groups[mol]
    time = ds.time.values
    pol = ds.field_polarization[row].values
    fig, ax = plt.subplots(figsize=(7.5, 4))
    ax.plot(time, ref_result["dipole_ref"] @ pol, color="black", lw=2, label="RT-TDDFT")
    for name in names:
        rows = details[name].get(mol)
        if rows:
            ax.plot(time, rows[0][1]["dipole_pred"] @ pol, lw=1.2, ls="--", label=name)
    ax.set_xlabel("time (a.u.)")
    ax.set_ylabel("dipole along the field (e·bohr)")
    ax.set_title(f"{mol} {ds.traj_id[row].values}: rollout from t=0")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, output_dir / "dipole.png"))

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name in names:
        curves = [r["error_curve"] for rows in details[name].values() for _, r in rows]
        if curves:
            length = min(len(c) for c in curves)
            mean = np.mean([c[:length] for c in curves], axis=0)
            ax.semilogy(np.arange(1, length), np.maximum(mean[1:], 1e-16), label=name)
    ax.axhline(0.1, color="grey", ls=":", lw=1, label="valid-horizon threshold")
    ax.set_xlabel("rollout step")
    ax.set_ylabel("relative error ‖P̂−P‖ / max‖P(t)−P(0)‖")
    ax.set_title("error vs horizon (test trajectories)")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, output_dir / "error_vs_horizon.png"))

    spectra = [(name, mol_, r) for name in names for mol_, rows in details[name].items()
               for _, r in rows if "spectra" in r]
    if spectra:
        fig, ax = plt.subplots(figsize=(7.5, 4))
        s_ref = spectra[0][2]["spectra"][0]
        ax.plot(s_ref.omega_ev, s_ref.strength, color="black", lw=2, label=f"RT-TDDFT ({spectra[0][1]})")
        shown = set()
        for name, mol_, r in spectra:
            if name not in shown and mol_ == spectra[0][1]:
                ax.plot(r["spectra"][1].omega_ev, r["spectra"][1].strength, ls="--", label=name)
                shown.add(name)
        ax.set_xlabel("photon energy (eV)")
        ax.set_ylabel("S(ω) (1/Ha)")
        ax.legend()
        fig.tight_layout()
        written.append(_save(fig, output_dir / "spectrum.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
    return path


def _model_name(state: dict) -> str:
    if state.get("model") == "rtml":
        return "rtml" if state["config"].get("dynamics", "mamba") == "mamba" else "rtml-mlp"
    return f"trained_{state['model']}"


def evaluate(store, model_dir, output_dir, baselines=("persistence", "linear"),
             molecules=None, compare=()) -> dict:
    """Evaluate the model in ``model_dir``, further trained models (``compare``) and the
    baselines on the test split of ``store`` (the split the first model was trained with)."""
    from rtml.train._baselines import fit_linear, load_model, open_store_groups, trajectory_splits

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
            from rtml.model._baselines import PersistenceModel

            models["persistence"] = PersistenceModel()
        elif name == "linear":
            models["linear"] = fit_linear(groups, splits)
        else:
            raise InputError(f"unknown baseline '{name}' (known: persistence, linear)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary, details = evaluate_models(models, groups, splits,
                                       split_cfg.get("held_out_molecules", ()))
    write_metrics(summary, out, {"store": str(Path(store).resolve()), "model_dir": str(model_dir),
                                 "baselines": list(baselines), "split": split_cfg,
                                 "horizons": list(HORIZONS)})
    plot_results(details, groups, out)
    return summary
