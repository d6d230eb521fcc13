"""Plots of an evaluation, drawn from the same numbers as ``metrics.tsv``.

- ``dipole.png``: the induced dipole along the field of the test trajectory that moves most
  (largest :math:`\\max_t\\|P(t)-P(0)\\|_F`, stated in the title), RT-TDDFT against each
  model's free rollout;
- ``error_vs_horizon.png``: one panel per molecule; per model, the median over the test
  trajectories of the relative error e(t) with its 25-75 % band, and a vertical line at the
  row's ``median_valid_horizon`` of metrics.tsv (the very number, not a recomputation).
  Static references (no response above numerical noise, e undefined) are left out of the
  curves and counted in the legend;
- ``spectrum.png``: S(E) in 1/eV of the most-moving kick test trajectory, RT-TDDFT against
  each model; when the test split holds no kick, a figure that says so (the file always
  exists, for the workflow's report).

Every PNG carries its title, labels, legend and marked positions as JSON in its
``Description`` text chunk (:func:`rtml.tddft.figure_record`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtml._errors import InputError
from rtml.evaluate._metrics import VALID_HORIZON_THRESHOLD, error_curve_quantiles
from rtml.tddft import agg_pyplot, draw_spectrum, save_figure

__all__ = ["plot_results", "HORIZON_MARKER_GID"]

log = logging.getLogger("rtml.evaluate")

#: ``gid`` of the vertical line at a model's median valid horizon on a molecule in
#: error_vs_horizon.png (the key of its marker in :func:`rtml.tddft.figure_record`).
HORIZON_MARKER_GID = "median_valid_horizon:{model}:{molecule}"


def plot_results(summary: dict, details: dict, groups: dict, output_dir: Path) -> list[Path]:
    """Write dipole.png, error_vs_horizon.png and spectrum.png into ``output_dir``.

    Args:
        summary: ``{model: {molecule: row}}``, the rows of metrics.tsv (:func:`aggregate`).
        details: ``{model: {molecule: [(row, result), ...]}}``, per-trajectory results
            (:func:`evaluate_trajectory`).
        groups: ``{molecule: xarray.Dataset}``, the store groups evaluated.
        output_dir: existing directory.

    Returns:
        The three paths written.
    """
    references = _test_references(details)
    if not references:
        raise InputError("no test trajectories to evaluate")
    output_dir = Path(output_dir)
    return [_plot_dipole(details, groups, references, output_dir / "dipole.png"),
            _plot_error_curves(summary, details, output_dir / "error_vs_horizon.png"),
            _plot_spectrum(details, groups, references, output_dir / "spectrum.png")]


def _test_references(details: dict) -> dict:
    """``{(molecule, row): result}`` of every evaluated test trajectory (one model's result
    per trajectory: the reference quantities are the same for all)."""
    refs: dict = {}
    for per_mol in details.values():
        for mol, rows in per_mol.items():
            for row, result in rows:
                refs.setdefault((mol, row), result)
    return refs


def _most_moving(references: dict) -> tuple[str, int]:
    """The (molecule, row) whose reference has the largest max_t ||P(t) - P(0)||_F."""
    return max(references, key=lambda key: references[key]["dynamics_scale"])


def _trajectory_name(ds, row: int) -> str:
    """``traj_id, field spec`` of trajectory ``row`` of a molecule's store group."""
    return f"{ds.traj_id[row].values}, field {ds.field_spec[row].values}"


def _model_result(rows, row: int) -> dict | None:
    return next((r for rw, r in rows if rw == row), None)


def _plot_dipole(details: dict, groups: dict, references: dict, path: Path) -> Path:
    """Induced dipole (μ(t) - μ(0))·e along the field polarisation e (e·bohr) against time
    (a.u.) of the most-moving test trajectory: RT-TDDFT and every model's rollout."""
    mol, row = _most_moving(references)
    ds, ref = groups[mol], references[(mol, row)]
    time, pol = ds.time.values, ds.field_polarization[row].values
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    induced_ref = (ref["dipole_ref"] - ref["dipole_ref"][0]) @ pol
    ax.plot(time, induced_ref, color="black", lw=2, label="RT-TDDFT")
    for name, per_mol in details.items():
        result = _model_result(per_mol.get(mol, ()), row)
        if result is not None:
            pred = result["dipole_pred"]
            ax.plot(time, (pred - pred[0]) @ pol, lw=1.2, ls="--", label=name)
    ax.set_xlabel("time (a.u.)")
    ax.set_ylabel("induced dipole along the field (e·bohr)")
    ax.set_title(f"{_trajectory_name(ds, row)}\nrollouts from t=0; the most-moving of "
                 f"{len(references)} test trajectories: max‖P(t)−P(0)‖_F = "
                 f"{ref['dynamics_scale']:.3g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _plot_error_curves(summary: dict, details: dict, path: Path) -> Path:
    """One panel per molecule: per model, the median e(t) over the test trajectories with
    its 25-75 % band, and a vertical line at metrics.tsv's ``median_valid_horizon``."""
    molecules = list(dict.fromkeys(mol for per_mol in details.values() for mol in per_mol))
    ncols = min(2, len(molecules))
    nrows = -(-len(molecules) // ncols)
    plt = agg_pyplot()
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, 3.8 * nrows), squeeze=False,
                             sharey=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, mol in zip(axes.flat, molecules):
        for k, name in enumerate(details):
            if mol in details[name]:
                _draw_model_curve(ax, name, mol,
                                  [r["error_curve"] for _, r in details[name][mol]],
                                  summary[name][mol], colors[k % len(colors)])
        ax.axhline(VALID_HORIZON_THRESHOLD, color="grey", ls=":", lw=1,
                   label=f"threshold e = {VALID_HORIZON_THRESHOLD}")
        ax.set_yscale("log")
        held_out = next(summary[name][mol]["held_out"] for name in details if mol in details[name])
        ax.set_title(f"{mol} (test trajectories: held-out {held_out})", fontsize=10)
        ax.set_xlabel("rollout step")
        ax.set_ylabel("e(t) = ‖P̂(t)−P(t)‖_F / max‖P(t')−P(0)‖_F", fontsize=8)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(molecules):]:
        ax.set_visible(False)
    fig.suptitle("relative rollout error e(t) on the test trajectories: median and 25-75 % "
                 "band;\ndashed line: the median valid horizon of metrics.tsv", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_model_curve(ax, name: str, mol: str, curves: list, row: dict, color) -> None:
    """Model ``name`` on molecule ``mol``: median e(t) over its moving test trajectories (steps
    1..T-1), the 25-75 % band, and the dashed marker at ``row['median_valid_horizon']``;
    the legend counts the curves and the static references left out."""
    n_static = int(row["static_reference"])
    left_out = f", {n_static} static left out" if n_static else ""
    q25, median, q75 = error_curve_quantiles(curves)
    if len(median) < 2:
        log.info("error_vs_horizon.png, %s on %s: all %d test trajectories static, no curve",
                 name, mol, len(curves))
        ax.plot([], [], color=color, label=f"{name}: all {len(curves)} static, no curve")
        return
    if n_static:
        log.info("error_vs_horizon.png, %s on %s: %d static test trajectories left out of "
                 "the curve", name, mol, n_static)
    floor = 1e-16  # log axis: an exact zero (a perfect step) is drawn at the floor
    steps = np.arange(1, len(median))
    horizon = row["median_valid_horizon"]
    ax.fill_between(steps, np.maximum(q25[1:], floor), np.maximum(q75[1:], floor),
                    color=color, alpha=0.2, lw=0)
    n_moving = len(curves) - n_static
    ax.plot(steps, np.maximum(median[1:], floor), color=color, lw=1.4,
            label=f"{name}: median valid horizon {horizon:.6g} "
                  f"({n_moving} trajector{'y' if n_moving == 1 else 'ies'}{left_out})")
    ax.axvline(horizon, color=color, ls="--", lw=1,
               gid=HORIZON_MARKER_GID.format(model=name, molecule=mol))


def _plot_spectrum(details: dict, groups: dict, references: dict, path: Path) -> Path:
    """S(E) (1/eV) of the most-moving kick test trajectory: RT-TDDFT and every model."""
    kicks = {key: r for key, r in references.items() if "spectra" in r}
    plt = agg_pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4))
    if not kicks:
        ax.text(0.5, 0.5, "no kick trajectory (of 16 frames or more) in the test split: "
                "no spectrum",
                ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return save_figure(fig, path)
    mol, row = _most_moving(kicks)
    draw_spectrum(ax, kicks[(mol, row)]["spectra"][0], color="black", lw=2, label="RT-TDDFT")
    for name, per_mol in details.items():
        result = _model_result(per_mol.get(mol, ()), row)
        if result is not None:
            draw_spectrum(ax, result["spectra"][1], ls="--", lw=1.2, label=name)
    ax.set_title(f"{_trajectory_name(groups[mol], row)}\nthe most-moving of {len(kicks)} "
                 "kick test trajectories", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
