"""Plots of an evaluation, drawn from the same numbers as ``metrics.json``: the dipole of a
test rollout, the median relative error e(t) against the rollout step, and a kick spectrum."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np

from rtml._atomic import atomic_write
from rtml._errors import InputError
from rtml.evaluate._metrics import VALID_HORIZON_THRESHOLD, median_error_curve

__all__ = ["plot_results"]


def _pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display)."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after choosing the backend, which pyplot reads on import

    return plt


def plot_results(details: dict, groups: dict, output_dir: Path) -> list[Path]:
    """dipole.png, error_vs_horizon.png and (with a kick trajectory) spectrum.png.

    error_vs_horizon.png shows the median over the test trajectories of the same e(t) as
    the metrics (:func:`median_error_curve`), with the valid-horizon threshold.
    """
    plt = _pyplot()
    written = []
    names = list(details)
    first = next(((mol, rows[0]) for name in names for mol, rows in details[name].items()
                  if rows), None)
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
    ax.set_title(f"{mol} {ds.traj_id[row].values}: rollout from t=0 (test)")
    ax.legend()
    fig.tight_layout()
    written.append(_save(fig, output_dir / "dipole.png"))

    fig, ax = plt.subplots(figsize=(7.5, 4))
    for name in names:
        curves = [r["error_curve"] for rows in details[name].values() for _, r in rows]
        median = median_error_curve(curves)
        n_moving = sum(not np.isnan(c).all() for c in curves)
        if len(median) > 1:
            ax.semilogy(np.arange(1, len(median)), np.maximum(median[1:], 1e-16),
                        label=f"{name} (median of {n_moving})")
    ax.axhline(VALID_HORIZON_THRESHOLD, color="grey", ls=":", lw=1,
               label=f"valid-horizon threshold e = {VALID_HORIZON_THRESHOLD}")
    ax.set_xlabel("rollout step")
    ax.set_ylabel("e(t) = ‖P̂(t)−P(t)‖ / max‖P(t')−P(0)‖")
    ax.set_title("relative rollout error, median over test trajectories")
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
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    _pyplot().close(fig)
    return path
