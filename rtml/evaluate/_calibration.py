r"""Is an ensemble's spread a usable measure of its error? (the hybrid engine relies on it)

On reference trajectories the ensemble (:class:`rtml.model.EnsembleStepper`) is stepped two
ways, everything relative to the trajectory's dynamics scale
:math:`s = \max_t\|P(t) - P(0)\|_F` (as e(t)):

- **one step**, from each true frame :math:`P_k` (gate memories driven by the true frames):
  the spread :math:`\sigma_k = \Delta t\max_m\|[\Delta G'_m - \overline{\Delta G'}, P'_k]\|_F`
  against the error of the ensemble's step, :math:`\|\hat P_{k+1} - P_{k+1}\|_F`;
- **rollout**, free from :math:`P_0`: the spread accumulated along it, :math:`\sum_{j<k}
  \sigma_j` (what the hybrid engine compares with ``spread_tol``), against e(t_k).

The pairs are binned by spread (equal-count bins) and the mean error of each bin is
reported; calibration is useful when that error rises with the spread bin by bin
(:func:`is_monotonic`).
"""

from __future__ import annotations

import numpy as np
import torch

from rtml.evaluate._metrics import dynamics_scale, is_static
from rtml.model import EnsembleStepper, density_norm, frame_spacing, midpoint_fields

#: Equal-count spread bins of a calibration table.
CALIBRATION_BINS = 5


@torch.no_grad()
def spread_and_error(propagator, traj) -> dict[str, np.ndarray] | None:
    """Relative spreads and errors of an ensemble on one trajectory (see the module doc):
    ``one_step_spread``, ``one_step_error`` (T-1,) and ``rollout_spread``, ``rollout_error``
    (T-1,), the latter at frames 1..T-1. None for a reference that does not move."""
    if is_static(traj.rho):
        return None
    scale = dynamics_scale(traj.rho)
    members = propagator.members
    system = propagator.system(traj)
    rho = system.to_orthonormal_density(torch.as_tensor(traj.rho)[None].to(torch.complex128))
    field = torch.as_tensor(midpoint_fields(traj))[None]
    dt = frame_spacing(traj)
    forced, free = EnsembleStepper(members, system), EnsembleStepper(members, system)
    out = {k: np.empty(rho.shape[1] - 1) for k in ("one_step_spread", "one_step_error",
                                                    "rollout_spread", "rollout_error")}
    p_free, accumulated = rho[:, 0], 0.0
    for k in range(rho.shape[1] - 1):
        e = field[:, k]
        pred = forced.step(rho[:, k], e, dt)
        out["one_step_spread"][k] = float(forced.spread(rho[:, k], dt)[0]) / scale
        out["one_step_error"][k] = float(density_norm(pred - rho[:, k + 1])[0]) / scale
        nxt = free.step(p_free, e, dt)
        accumulated += float(free.spread(p_free, dt)[0]) / scale
        p_free = nxt
        out["rollout_spread"][k] = accumulated
        out["rollout_error"][k] = float(density_norm(p_free - rho[:, k + 1])[0]) / scale
    return out


def calibration_table(spread: np.ndarray, error: np.ndarray,
                      n_bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-count bins of ``spread``: per bin its spread range, count, mean spread and the
    mean and median of ``error``."""
    spread, error = np.asarray(spread, float), np.asarray(error, float)
    order = np.argsort(spread, kind="stable")
    rows = []
    for part in np.array_split(order, n_bins):
        if not len(part):
            continue
        s, e = spread[part], error[part]
        rows.append({"spread_lo": float(s.min()), "spread_hi": float(s.max()), "n": int(len(part)),
                     "mean_spread": float(s.mean()), "mean_error": float(e.mean()),
                     "median_error": float(np.median(e))})
    return rows


def is_monotonic(table: list[dict], key: str = "mean_error") -> bool:
    """The error rises strictly from each spread bin to the next."""
    values = [row[key] for row in table]
    return len(values) >= 2 and all(b > a for a, b in zip(values, values[1:]))


def spread_calibration(propagator, references: dict, n_bins: int = CALIBRATION_BINS) -> dict:
    """Calibration tables of an ensemble per molecule and over all molecules.

    Args:
        propagator: an ensemble (:class:`rtml.model.RTMLPropagator` with >= 2 members).
        references: molecule -> list of :class:`rtml.evaluate.Reference` (held-out).

    Returns:
        ``{"one_step": {mol: table, "all": table}, "rollout": {...}, "monotonic": {...},
        "pairs": {...}}`` (tables as :func:`calibration_table`, ``monotonic`` per kind and
        molecule, ``pairs`` the numbers of (spread, error) pairs).
    """
    if len(propagator.members) < 2:
        raise ValueError("spread calibration needs an ensemble (>= 2 members)")
    pooled = {"one_step": ([], []), "rollout": ([], [])}
    out = {"one_step": {}, "rollout": {}, "monotonic": {"one_step": {}, "rollout": {}},
           "pairs": {}}
    for mol, refs in references.items():
        per_mol = {"one_step": ([], []), "rollout": ([], [])}
        for ref in refs:
            result = spread_and_error(propagator, ref.traj)
            if result is None:
                continue
            for kind in per_mol:
                per_mol[kind][0].append(result[f"{kind}_spread"])
                per_mol[kind][1].append(result[f"{kind}_error"])
        for kind, (spreads, errors) in per_mol.items():
            if not spreads:
                continue
            s, e = np.concatenate(spreads), np.concatenate(errors)
            pooled[kind][0].append(s)
            pooled[kind][1].append(e)
            out[kind][mol] = calibration_table(s, e, n_bins)
            out["monotonic"][kind][mol] = is_monotonic(out[kind][mol])
            out["pairs"][mol] = int(len(s))
    for kind, (spreads, errors) in pooled.items():
        if spreads:
            out[kind]["all"] = calibration_table(np.concatenate(spreads), np.concatenate(errors),
                                                 n_bins)
            out["monotonic"][kind]["all"] = is_monotonic(out[kind]["all"])
    return out


def plot_calibration(calibration: dict, path) -> object:
    """Mean error against mean spread per bin, one line per molecule, one panel per kind
    (log-log: spreads and errors span decades)."""
    from rtml.tddft import agg_pyplot, save_figure

    plt = agg_pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    titles = {"one_step": "one step from the true frame", "rollout": "free rollout (accumulated)"}
    for ax, kind in zip(axes, ("one_step", "rollout")):
        for mol, table in calibration[kind].items():
            x = [row["mean_spread"] for row in table]
            y = [row["mean_error"] for row in table]
            style = {"color": "black", "lw": 2.5} if mol == "all" else {"lw": 1.2}
            ax.plot(x, y, marker="o", label=mol, **style)
        lo = min(min(r["mean_spread"] for r in t) for t in calibration[kind].values())
        hi = max(max(r["mean_spread"] for r in t) for t in calibration[kind].values())
        if lo > 0:
            ax.plot([lo, hi], [lo, hi], ls=":", color="grey", label="error = spread")
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.set_xlabel("ensemble spread (relative to the dynamics' size)")
        ax.set_ylabel("mean error in the bin (relative)")
        ax.set_title(titles[kind])
        ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
