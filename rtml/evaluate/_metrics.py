r"""Metrics comparing predicted density trajectories with RT-TDDFT references.

All functions take complex densities of shape (T, n_spin, n, n) in the AO basis (atomic
units); frame 0 is the common initial state and step k is frame k. Norms are Frobenius
norms over all spins.

- **One-step error** (teacher forcing): :math:`\mathrm{MSE}_1 = \langle|\hat P(t_{k+1}) - P(t_{k+1})|^2\rangle`
  with :math:`\hat P(t_{k+1})` predicted from the *true* :math:`P(t_k)`, averaged over elements.
- **Relative rollout error** of a free rollout,

  .. math:: e(t) = \frac{\|\hat P(t) - P(t)\|_F}{\max_{t'}\|P(t') - P(0)\|_F},

  the error against the size of the dynamics (the full P is dominated by its constant part,
  so relative to P itself every model would look good). A reference that does not move
  beyond numerical noise, :math:`\max_{t\sigma\mu\nu}|P_\sigma(t)-P_\sigma(0)| \le 10^{-8}`
  (:data:`STATIC_ATOL`, the bound of ``rtml validate``'s ``response`` check: field-free
  runs drift by up to ~1e-10), is *static*: :math:`e` is undefined (NaN), never a division
  by round-off, and it is left out of every e-based aggregate and curve.

  - ``rollout_error_at_<k>``: :math:`e(k)`, with k the step actually reached
    (:func:`rollout_errors_at`: min(requested, T-1), and always the last step T-1).
  - valid horizon: the first step with :math:`e > 0.1`; T (one past the last step) if
    :math:`e` never exceeds 0.1 (:func:`valid_horizon`).
  - ``scaled_l2_<k>`` (OrbEvo's scaled L2, k = 8, 16, 32, 64, 100): the mean of
    :math:`e(t)` over steps 1..k; NaN if the trajectory has fewer than k steps (the name
    would otherwise claim a horizon it does not have).
- **Dipole nRMSE** (:func:`dipole_nrmse`): RMSE over all times and the three components of
  the induced dipole :math:`\hat\mu(t)-\hat\mu(0)` against :math:`\mu(t)-\mu(0)`, divided
  by the range (max - min over times and components) of the reference induced dipole. The
  range, not the standard deviation, so that a model that predicts no response scores
  ~O(1/sqrt(3)..1) whatever the pulse shape; NaN if the reference dipole does not move.
- **Spectrum nRMSE** (:func:`spectrum_nrmse`, kick trajectories): RMSE of the predicted
  absorption strength S(ω) against the reference on the energy grid up to 20 eV, divided
  by the reference's maximum there. Also kept: the normalised spectrum overlap and the
  largest shift of a reference peak to its nearest predicted peak (eV).
- **Physics compliance** (:func:`physics_compliance`): :math:`|\mathrm{Tr}(P_\sigma S) - N_\sigma|`,
  :math:`\max|P - P^\dagger|`, the smallest and largest eigenvalue (occupation) of
  :math:`S^{1/2}P_\sigma S^{1/2}`, which must lie in [0, 2] for a closed-shell total
  density (n_spin = 1) and in [0, 1] per spin (n_spin = 2), and the largest violation of
  those bounds.
"""

from __future__ import annotations

import numpy as np

from rtml.data import RESPONSE_ATOL
from rtml.observables import hermiticity_error, overlap_sqrt, trace_error

#: Relative error that ends the valid horizon.
VALID_HORIZON_THRESHOLD = 0.1
#: A reference whose largest element change max|P(t) - P(0)| is at most this (a.u.) is
#: static: below it lies numerical noise (rtml validate's response check, the same bound).
STATIC_ATOL = RESPONSE_ATOL
#: Windows (steps) of OrbEvo's scaled L2 error.
SCALED_L2_WINDOWS = (8, 16, 32, 64, 100)
#: Upper edge of the spectrum nRMSE window, eV.
SPECTRUM_NRMSE_MAX_EV = 20.0


def mean_squared_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over all elements of |pred - ref|^2."""
    return float(np.mean(np.abs(pred - ref) ** 2))


def _frobenius(a: np.ndarray) -> np.ndarray:
    """(T, n_spin, n, n) -> (T,) Frobenius norm over spins and both AO indices."""
    return np.sqrt((np.abs(a) ** 2).sum(axis=(-3, -2, -1)))


def dynamics_scale(ref: np.ndarray) -> float:
    r""":math:`\max_t\|P(t) - P(0)\|_F` of a reference (T, n_spin, n, n)."""
    return float(_frobenius(ref - ref[0]).max())


def is_static(ref: np.ndarray, atol: float = STATIC_ATOL) -> bool:
    r"""Whether :math:`\max_{t\sigma\mu\nu}|P_\sigma(t)-P_\sigma(0)| \le` ``atol`` for a
    reference (T, n_spin, n, n): it moves no more than numerical noise (nothing to predict)."""
    return float(np.abs(ref - ref[0]).max(initial=0.0)) <= atol


def relative_error_curve(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    r"""e(t) = ||P̂(t) - P(t)||_F / max_t' ||P(t') - P(0)||_F, shape (T,); all NaN if static."""
    if is_static(ref):
        return np.full(len(ref), np.nan)
    return _frobenius(pred - ref) / dynamics_scale(ref)


def valid_horizon(error_curve: np.ndarray, threshold: float = VALID_HORIZON_THRESHOLD) -> float:
    """First step whose relative error exceeds ``threshold``; len(curve) if none does, NaN if
    the curve is undefined (static reference)."""
    if np.isnan(error_curve).all():
        return float("nan")
    above = np.flatnonzero(error_curve > threshold)
    return float(above[0]) if len(above) else float(len(error_curve))


def rollout_errors_at(error_curve: np.ndarray, horizons=(100,)) -> dict[str, float]:
    """``{"rollout_error_at_<k>": e(k)}`` for k = min(h, T-1) of each requested h, and k = T-1."""
    last = len(error_curve) - 1
    steps = sorted({min(int(h), last) for h in horizons} | {last})
    return {f"rollout_error_at_{k}": float(error_curve[k]) for k in steps if k >= 1}


def scaled_l2(error_curve: np.ndarray, windows=SCALED_L2_WINDOWS) -> dict[str, float]:
    """``{"scaled_l2_<k>": mean of e(t) over steps 1..k}``; NaN where T-1 < k."""
    return {f"scaled_l2_{k}": float(np.mean(error_curve[1:k + 1])) if len(error_curve) > k
            else float("nan") for k in windows}


def dipole_nrmse(dipole_pred: np.ndarray, dipole_ref: np.ndarray) -> float:
    r"""RMSE of the induced dipoles (T, 3) over times and components / range of the reference's.

    .. math:: \frac{\sqrt{\langle(\hat\mu_i(t)-\hat\mu_i(0) - \mu_i(t)+\mu_i(0))^2\rangle_{t,i}}}
              {\max_{t,i}\delta\mu_i(t) - \min_{t,i}\delta\mu_i(t)},\qquad \delta\mu = \mu(t)-\mu(0)

    NaN when the reference induced dipole does not move (range < 1e-14 e·bohr).
    """
    induced_ref = dipole_ref - dipole_ref[0]
    induced_pred = dipole_pred - dipole_pred[0]
    span = float(induced_ref.max() - induced_ref.min())
    if span < 1e-14:
        return float("nan")
    return float(np.sqrt(np.mean((induced_pred - induced_ref) ** 2)) / span)


def spectrum_nrmse(omega_ev: np.ndarray, s_pred: np.ndarray, s_ref: np.ndarray,
                   max_ev: float = SPECTRUM_NRMSE_MAX_EV) -> float:
    """RMSE of S_pred - S_ref on the grid points up to ``max_ev`` / max of S_ref there."""
    mask = np.asarray(omega_ev) <= max_ev
    top = float(np.max(s_ref[mask])) if mask.any() else 0.0
    if not top > 0:
        return float("nan")
    return float(np.sqrt(np.mean((s_pred[mask] - s_ref[mask]) ** 2)) / top)


def physics_compliance(rho: np.ndarray, overlap: np.ndarray, n_per_spin) -> dict:
    """Worst trace error, Hermiticity error, extreme occupations and occupation-bound violation.

    Occupations are the eigenvalues of the Hermitian part of S^{1/2} P_σ S^{1/2}; bounds
    [0, 2] for n_spin = 1 (closed-shell total density), [0, 1] per spin for n_spin = 2.
    """
    s_half = overlap_sqrt(overlap)
    p_orth = s_half @ rho @ s_half
    p_herm = 0.5 * (p_orth + p_orth.conj().swapaxes(-1, -2))
    eig = np.linalg.eigvalsh(p_herm)
    upper = 2.0 if rho.shape[-3] == 1 else 1.0
    min_eig, max_eig = float(eig.min()), float(eig.max())
    return {"trace_error": float(trace_error(rho, overlap, n_per_spin).max()),
            "hermiticity_error": float(hermiticity_error(rho).max()),
            "min_eigenvalue": min_eig, "max_eigenvalue": max_eig,
            "occupation_violation": max(0.0, -min_eig, max_eig - upper)}


def dipole_from_density(rho: np.ndarray, dipole_ints: np.ndarray, nuclear_dipole: np.ndarray) -> np.ndarray:
    r"""(T, 3) dipoles :math:`-\sum_\sigma\mathrm{Re\,Tr}(P_\sigma\mathbf D) + \mu_\text{nuc}`."""
    return -np.einsum("xij,tsji->tx", dipole_ints, rho).real + nuclear_dipole


def spectrum_overlap(s_pred: np.ndarray, s_ref: np.ndarray) -> float:
    r"""Normalised overlap :math:`\int S_1S_2 / \sqrt{\int S_1^2\int S_2^2}` on a common grid."""
    num = float(np.dot(s_pred, s_ref))
    den = float(np.sqrt(np.dot(s_pred, s_pred) * np.dot(s_ref, s_ref)))
    return num / den if den > 0 else 0.0


def peak_shifts(peaks_pred: np.ndarray, peaks_ref: np.ndarray) -> np.ndarray:
    """For each reference peak, distance to the nearest predicted peak (inf if none)."""
    if len(peaks_pred) == 0:
        return np.full(len(peaks_ref), np.inf)
    return np.abs(np.asarray(peaks_ref)[:, None] - np.asarray(peaks_pred)[None, :]).min(axis=1)


def error_curve_quantiles(curves, percents=(25, 50, 75)) -> np.ndarray:
    """Percentiles over trajectories of e(t) at each step (ragged lengths: over those that
    reach it), leaving out static references (all-NaN curves); shape (len(percents), max T),
    (len(percents), 0) when every reference is static. The median is ``percents=(50,)``."""
    curves = [np.asarray(c, dtype=float) for c in curves if not np.isnan(c).all()]
    if not curves:
        return np.zeros((len(percents), 0))
    table = np.full((len(curves), max(len(c) for c in curves)), np.nan)
    for i, c in enumerate(curves):
        table[i, :len(c)] = c
    return np.nanpercentile(table, percents, axis=0)
