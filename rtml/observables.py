r"""Physics diagnostics of AO density matrices :math:`P_\sigma(t)`.

All functions take densities of shape (..., nspin, nao, nao) (total density when nspin = 1)
and return the worst value over the last three axes, shape (...,) per frame and spin where
stated. They are what ``rtml validate`` and the tests check.
"""

from __future__ import annotations

import numpy as np

__all__ = ["hermiticity_error", "trace_error", "idempotency_error", "overlap_sqrt",
           "electrons_per_spin"]


def overlap_sqrt(overlap: np.ndarray) -> np.ndarray:
    r""":math:`S^{1/2} = V\,\mathrm{diag}(\sqrt\lambda)\,V^T` from :math:`S = V\Lambda V^T`."""
    lam, vec = np.linalg.eigh(0.5 * (overlap + overlap.T))
    return (vec * np.sqrt(lam)) @ vec.T


def electrons_per_spin(n_electrons: int, multiplicity: int, nspin: int) -> np.ndarray:
    r""":math:`[N]` for nspin = 1, :math:`[N_\alpha, N_\beta]` with :math:`N_\alpha - N_\beta = M - 1`."""
    if nspin == 1:
        return np.array([float(n_electrons)])
    n_alpha = (n_electrons + multiplicity - 1) // 2
    return np.array([float(n_alpha), float(n_electrons - n_alpha)])


def hermiticity_error(dm: np.ndarray) -> np.ndarray:
    r""":math:`\max_{\mu\nu}|P - P^\dagger|_{\mu\nu}`, shape ``dm.shape[:-2]``."""
    return np.abs(dm - dm.conj().swapaxes(-1, -2)).max(axis=(-2, -1), initial=0.0)


def trace_error(dm: np.ndarray, overlap: np.ndarray, n_per_spin) -> np.ndarray:
    r""":math:`|\mathrm{Tr}(P_\sigma S) - N_\sigma|`, shape ``dm.shape[:-2]``."""
    #: tr[..., s] = einsum('...ij,ji->...', P, S)
    trace = np.einsum("...ij,ji->...", dm, overlap)
    return np.abs(trace - np.asarray(n_per_spin, dtype=float))


def idempotency_error(dm: np.ndarray, overlap_half: np.ndarray) -> np.ndarray:
    r"""Idempotency residual :math:`\max_{\mu\nu}|P'_\sigma P'_\sigma - P'_\sigma|` in the Löwdin basis.

    :math:`P'_\sigma = w\,S^{1/2}P_\sigma S^{1/2}` with :math:`w = 1/2` for a closed-shell
    total density (nspin = 1, each orbital doubly occupied) and :math:`w = 1` for spin
    densities. Zero for any single-determinant state, also while it evolves unitarily.
    """
    weight = 0.5 if dm.shape[-3] == 1 else 1.0
    p = weight * (overlap_half @ dm @ overlap_half)
    return np.abs(p @ p - p).max(axis=(-2, -1), initial=0.0)
