r"""Metrics comparing predicted density trajectories with RT-TDDFT references.

All functions take complex densities of shape (T, n_spin, n, n) in the AO basis (atomic
units). Errors are Frobenius norms summed over spins.

- One-step error (teacher forcing): :math:`\mathrm{MSE}_1 = \langle|\hat P(t_{k+1}) - P(t_{k+1})|^2\rangle`
  with :math:`\hat P(t_{k+1})` predicted from the *true* :math:`P(t_k)`, averaged over elements.
- Rollout error at horizon h: the same mean squared error after feeding predictions back h times.
- Relative error :math:`e(t) = \|\hat P(t) - P(t)\|_F / \max_{t'}\|P(t') - P(0)\|_F`: the
  error against the size of the dynamics (the full P is dominated by its constant part, so
  relative to P itself every model would look good). The valid horizon is the first step
  with :math:`e > 0.1`.
- Physics compliance: :math:`|\mathrm{Tr}(PS) - N|`, :math:`\max|P - P^\dagger|` and the most
  negative eigenvalue of :math:`S^{1/2}PS^{1/2}` (occupations must lie in [0, 2] / [0, 1]).
"""

from __future__ import annotations

import numpy as np

from rtml.observables import hermiticity_error, overlap_sqrt, trace_error

#: Relative error that ends the valid horizon.
VALID_HORIZON_THRESHOLD = 0.1


def mean_squared_error(pred: np.ndarray, ref: np.ndarray) -> float:
    """Mean over all elements of |pred - ref|^2."""
    return float(np.mean(np.abs(pred - ref) ** 2))


def relative_error_curve(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    r"""e(t) = ||P̂(t) - P(t)||_F / max_t' ||P(t') - P(0)||_F, shape (T,)."""
    diff = np.sqrt((np.abs(pred - ref) ** 2).sum(axis=(-3, -2, -1)))
    scale = np.sqrt((np.abs(ref - ref[0]) ** 2).sum(axis=(-3, -2, -1))).max()
    return diff / max(scale, 1e-300)


def valid_horizon(error_curve: np.ndarray, threshold: float = VALID_HORIZON_THRESHOLD) -> int:
    """First step whose relative error exceeds ``threshold`` (len(curve) if none does)."""
    above = np.flatnonzero(error_curve > threshold)
    return int(above[0]) if len(above) else int(len(error_curve))


def physics_compliance(rho: np.ndarray, overlap: np.ndarray, n_per_spin) -> dict:
    """Worst trace error, Hermiticity error and most negative occupation over a trajectory."""
    s_half = overlap_sqrt(overlap)
    p_orth = s_half @ rho @ s_half
    p_herm = 0.5 * (p_orth + p_orth.conj().swapaxes(-1, -2))
    min_eig = float(np.linalg.eigvalsh(p_herm).min())
    return {"trace_error": float(trace_error(rho, overlap, n_per_spin).max()),
            "hermiticity_error": float(hermiticity_error(rho).max()),
            "min_eigenvalue": min_eig}


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
