r"""Real coordinates of Hermitian density matrices.

A Hermitian :math:`n\times n` matrix has :math:`n^2` real degrees of freedom: the real
upper triangle with the diagonal (:math:`n(n+1)/2`) and the imaginary strict upper triangle
(:math:`n(n-1)/2`). :func:`hermitian_to_real` and :func:`real_to_hermitian` map between
(..., n_spin, n, n) complex arrays and (..., n_spin * n^2) real vectors; the maps are
exact inverses on Hermitian input, and every real vector maps to a Hermitian matrix.
:func:`hermitian_coordinates` and :func:`from_hermitian_coordinates` are the same
coordinates in torch, per matrix (spins kept as a batch axis), without and with the
imaginary part, for the model's maps.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch


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


@lru_cache(maxsize=None)
def _torch_triangles(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.triu_indices(n, n), torch.triu_indices(n, n, offset=1)


def hermitian_coordinates(mat: torch.Tensor, imaginary: bool) -> torch.Tensor:
    """(..., n, n) Hermitian -> (..., m) float64: the upper triangle of Re (with the diagonal),
    then, when ``imaginary``, the strict upper triangle of Im."""
    iu, su = _torch_triangles(mat.shape[-1])
    x = mat.real[..., iu[0], iu[1]].to(torch.float64)
    if imaginary:
        x = torch.cat([x, mat.imag[..., su[0], su[1]].to(torch.float64)], dim=-1)
    return x


def from_hermitian_coordinates(x: torch.Tensor, n: int, imaginary: bool) -> torch.Tensor:
    """Inverse of :func:`hermitian_coordinates`: (..., m) -> (..., n, n) complex128."""
    iu, su = _torch_triangles(n)
    m = iu.shape[1]
    re = torch.zeros(*x.shape[:-1], n, n, dtype=torch.float64)
    re[..., iu[0], iu[1]] = x[..., :m]
    re = re + re.transpose(-1, -2) - torch.diag_embed(torch.diagonal(re, dim1=-2, dim2=-1))
    im = torch.zeros_like(re)
    if imaginary:
        im[..., su[0], su[1]] = x[..., m:]
        im = im - im.transpose(-1, -2)
    return torch.complex(re, im)


def hermitian_basis(n: int, imaginary: bool) -> torch.Tensor:
    """(m, n, n) complex basis dual to :func:`hermitian_coordinates`: real symmetric unit
    matrices (upper-triangle order), then i x the antisymmetric ones when ``imaginary``."""
    eye = torch.eye(n * (n + 1) // 2 + (n * (n - 1) // 2 if imaginary else 0), dtype=torch.float64)
    return from_hermitian_coordinates(eye, n, imaginary)
