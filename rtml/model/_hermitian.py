r"""Real coordinates of Hermitian density matrices.

A Hermitian :math:`n\times n` matrix has :math:`n^2` real degrees of freedom: the real
upper triangle with the diagonal (:math:`n(n+1)/2`) and the imaginary strict upper triangle
(:math:`n(n-1)/2`). :func:`hermitian_to_real` and :func:`real_to_hermitian` map between
(..., n_spin, n, n) complex arrays and (..., n_spin * n^2) real vectors; the maps are
exact inverses on Hermitian input, and every real vector maps to a Hermitian matrix.
"""

from __future__ import annotations

import numpy as np


def _triangles(n: int):
    iu = np.triu_indices(n)
    su = np.triu_indices(n, k=1)
    return iu, su


def hermitian_to_real(p: np.ndarray) -> np.ndarray:
    """(..., n_spin, n, n) complex Hermitian -> (..., n_spin * n^2) real."""
    n = p.shape[-1]
    iu, su = _triangles(n)
    parts = np.concatenate([p.real[..., iu[0], iu[1]], p.imag[..., su[0], su[1]]], axis=-1)
    return parts.reshape(*p.shape[:-3], -1)


def real_to_hermitian(x: np.ndarray, n_spin: int, n: int) -> np.ndarray:
    """(..., n_spin * n^2) real -> (..., n_spin, n, n) complex Hermitian."""
    iu, su = _triangles(n)
    x = x.reshape(*x.shape[:-1], n_spin, n * n)
    n_re = len(iu[0])
    p = np.zeros((*x.shape[:-1], n, n), dtype=complex)
    p[..., iu[0], iu[1]] = x[..., :n_re]
    p[..., iu[1], iu[0]] = x[..., :n_re]
    p[..., su[0], su[1]] += 1j * x[..., n_re:]
    p[..., su[1], su[0]] -= 1j * x[..., n_re:]
    return p
