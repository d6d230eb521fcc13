r"""Projection of predicted densities onto physical one-particle density matrices.

A Kohn-Sham density evolving under the Liouville-von Neumann equation stays Hermitian,
keeps its electron count and stays idempotent in the metric of the overlap :math:`S`:

.. math::

    P_\sigma = P_\sigma^\dagger, \qquad
    \mathrm{Tr}(P_\sigma S) = N_\sigma, \qquad
    P_\sigma S P_\sigma = o\,P_\sigma,

with occupation :math:`o = 2` for a closed-shell total density (``n_spin = 1``) and
:math:`o = 1` per spin channel (``n_spin = 2``). A learned model predicts densities that
satisfy these only approximately. :func:`project_density` restores all three in float64
(McWeeny purification in the Löwdin basis); :func:`hermiticity_penalty`,
:func:`trace_penalty` and :func:`idempotency_penalty` measure the violations as
differentiable loss terms.

Shapes: densities are (..., n_spin, n, n) (complex, or real), overlaps (..., n, n) and
electron counts (..., n_spin); the leading dimensions broadcast. Atomic units throughout
(the quantities here are dimensionless).

References
----------
R. McWeeny, Rev. Mod. Phys. 32, 335 (1960) (purification);
P.-O. Löwdin, J. Chem. Phys. 18, 365 (1950) (symmetric orthogonalisation).
"""

from __future__ import annotations

from typing import Sequence

import torch

from rtml._errors import InputError

__all__ = ["project_density", "hermiticity_penalty", "trace_penalty", "idempotency_penalty"]

_REDUCTIONS = ("mean", "sum", "none")


def _occupation(n_spin: int) -> float:
    """Maximum occupation of a spatial orbital: 2 for a total density, 1 per spin channel."""
    if n_spin == 1:
        return 2.0
    if n_spin == 2:
        return 1.0
    raise InputError(f"densities must have n_spin = 1 or 2 on axis -3, got {n_spin}")


def _check_shapes(p: torch.Tensor, s: torch.Tensor) -> None:
    if p.dim() < 3 or p.shape[-1] != p.shape[-2]:
        raise InputError(f"P must be (..., n_spin, n, n), got shape {tuple(p.shape)}")
    if s.dim() < 2 or s.shape[-2:] != p.shape[-2:]:
        raise InputError(f"S must be (..., n, n) with n = {p.shape[-1]}, got shape {tuple(s.shape)}")


def _dagger(a: torch.Tensor) -> torch.Tensor:
    return a.conj().transpose(-1, -2)


def _hermitise(a: torch.Tensor) -> torch.Tensor:
    r""":math:`(A + A^\dagger)/2`; exactly Hermitian in floating point (element (i, j) and the
    conjugate of (j, i) are the same sum of the same two numbers)."""
    return 0.5 * (a + _dagger(a))


def _trace(a: torch.Tensor) -> torch.Tensor:
    return torch.diagonal(a, dim1=-2, dim2=-1).sum(-1)


def _electron_counts(n_per_spin, like: torch.Tensor) -> torch.Tensor:
    """(..., n_spin) float64 tensor of electron counts on ``like``'s device (a scalar is
    accepted for n_spin = 1)."""
    n = torch.as_tensor(n_per_spin, dtype=torch.float64, device=like.device)
    if n.dim() == 0 and like.shape[-3] == 1:
        n = n.reshape(1)                                 # a bare total count, closed shell
    if n.dim() == 0 or n.shape[-1] != like.shape[-3]:
        raise InputError(f"n_per_spin must be (..., n_spin) with n_spin = {like.shape[-3]}, "
                         f"got shape {tuple(n.shape)}")
    return n


def _lowdin_factors(s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`S^{1/2}` and :math:`S^{-1/2}` from :math:`S = U\,\mathrm{diag}(s)\,U^\dagger`."""
    w, u = torch.linalg.eigh(s)
    if bool((w <= 0).any()):
        raise InputError("the overlap matrix S is not positive definite")
    ud = _dagger(u)
    s_half = (u * w.sqrt().unsqueeze(-2)) @ ud         #: U diag(s^{1/2}) U^†
    s_mhalf = (u * w.rsqrt().unsqueeze(-2)) @ ud       #: U diag(s^{-1/2}) U^†
    return s_half, s_mhalf


def _rescale_trace(q: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    r"""Scale each :math:`Q_\sigma` by the real factor :math:`t_\sigma / \mathrm{Tr}\,Q_\sigma`.

    ``target`` (..., n_spin) real. A zero target gives exactly :math:`Q = 0` (an empty spin
    channel, e.g. the beta channel of H2+); a zero trace with a non-zero target is left at
    zero (no direction to scale along; it cannot arise from a sensible prediction).
    """
    tr = _trace(q).real
    safe = torch.where(tr == 0, torch.ones_like(tr), tr)
    scale = torch.where((target == 0) | (tr == 0), torch.zeros_like(tr), target / safe)
    return q * scale[..., None, None].to(q.dtype)


def project_density(P: torch.Tensor, S: torch.Tensor, n_per_spin: torch.Tensor | Sequence[float],
                    mcweeny_iterations: int = 3) -> torch.Tensor:
    r"""Project densities onto Hermitian, correctly normalised, idempotent densities.

    Computed in float64 (complex128 for complex input) and cast back to ``P.dtype`` at the
    end; differentiable with respect to ``P`` (and ``S``).

    With occupation :math:`o = 2` for ``n_spin = 1`` (closed-shell total density) and
    :math:`o = 1` for ``n_spin = 2`` (one density per spin), for every spin channel
    :math:`\sigma`:

    1. Hermitise: :math:`\tilde P_\sigma = (P_\sigma + P_\sigma^\dagger)/2`.
    2. Löwdin basis, occupation-normalised, trace fixed by scaling:

       .. math::

           Q_\sigma = \frac{1}{o}\,S^{1/2}\tilde P_\sigma S^{1/2}, \qquad
           Q_\sigma \leftarrow \frac{N_\sigma/o}{\mathrm{Tr}\,Q_\sigma}\,Q_\sigma .

    3. McWeeny purification, ``mcweeny_iterations`` times (each result Hermitised):

       .. math:: Q_\sigma \leftarrow 3Q_\sigma^2 - 2Q_\sigma^3 .

       It maps every eigenvalue :math:`\lambda \mapsto 3\lambda^2 - 2\lambda^3` and keeps
       the eigenvectors: eigenvalues in :math:`(-\tfrac12, \tfrac12)` go to 0, those in
       :math:`(\tfrac12, \tfrac32)` to 1, quadratically (an error :math:`\epsilon` becomes
       :math:`3\epsilon^2 \mp 2\epsilon^3`), so three iterations take an idempotency
       error of 1e-3 to round-off.
    4. Trace fixed again by the same scaling,
       :math:`Q_\sigma \leftarrow (N_\sigma/o)\,Q_\sigma/\mathrm{Tr}\,Q_\sigma`, and back to
       the AO basis, Hermitised once more so the result is exactly Hermitian:

       .. math:: P_\sigma = o\,S^{-1/2} Q_\sigma S^{-1/2},
                 \qquad \mathrm{Tr}(P_\sigma S) = o\,\mathrm{Tr}\,Q_\sigma = N_\sigma .

    Why the trace is fixed by scaling and not by a shift along the identity: both keep
    :math:`Q` Hermitian (a real multiple of a Hermitian matrix, or of :math:`I`, added or
    applied) and both keep its eigenvectors, but the shift
    :math:`Q + \tfrac{\delta}{n} I` moves *every* eigenvalue, so the unoccupied (zero)
    eigenvalues become :math:`\delta/n`: all virtual orbitals get a spurious occupation and,
    for :math:`\delta < 0`, a negative one (the density stops being positive
    semidefinite). The scaling leaves the null space (the virtual orbitals) exactly empty,
    keeps :math:`Q \succeq 0`, sends an empty channel (:math:`N_\sigma = 0`) exactly to
    zero and, after purification, changes the occupied eigenvalues only by the (already
    quadratically small) relative trace error. An input that is already Hermitian,
    idempotent and correctly normalised is a fixed point of every step.

    Parameters
    ----------
    P : torch.Tensor
        (..., n_spin, n, n) AO densities, complex (or real), n_spin 1 (total) or 2.
    S : torch.Tensor
        (..., n, n) AO overlap matrix, symmetric positive definite.
    n_per_spin : torch.Tensor or sequence of float
        (..., n_spin) electrons per channel: the total count for ``n_spin = 1``,
        :math:`(N_\alpha, N_\beta)` for ``n_spin = 2`` (e.g. ``(1, 0)`` for H2+).
    mcweeny_iterations : int
        Number of purification steps (0 disables purification; the Hermitisation and
        trace fix remain).

    Returns
    -------
    torch.Tensor
        (..., n_spin, n, n), ``P.dtype``: exactly Hermitian, :math:`\mathrm{Tr}(P_\sigma S)
        = N_\sigma` to round-off, idempotent to the purification's accuracy.
    """
    _check_shapes(P, S)
    if mcweeny_iterations < 0:
        raise InputError(f"mcweeny_iterations must be >= 0, got {mcweeny_iterations}")
    work = torch.complex128 if (P.is_complex() or S.is_complex()) else torch.float64
    p = P.to(work)
    s = S.to(work)
    occ = _occupation(P.shape[-3])
    target = _electron_counts(n_per_spin, P) / occ                        # (..., n_spin)

    s_half, s_mhalf = _lowdin_factors(s)
    s_half, s_mhalf = s_half.unsqueeze(-3), s_mhalf.unsqueeze(-3)        # broadcast over spin
    q = s_half @ _hermitise(p) @ s_half / occ                            # Löwdin, occupation 1
    q = _rescale_trace(_hermitise(q), target)
    for _ in range(mcweeny_iterations):
        q2 = q @ q
        q = _hermitise(3.0 * q2 - 2.0 * (q2 @ q))
    q = _rescale_trace(q, target)
    out = _hermitise(occ * (s_mhalf @ q @ s_mhalf))
    return out.to(P.dtype)


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise InputError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def hermiticity_penalty(P: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Squared Frobenius norm of the anti-Hermitian part, summed over spin.

    .. math:: \mathcal L_\text{herm} = \sum_\sigma
              \Big\| \tfrac12 \big(P_\sigma - P_\sigma^\dagger\big) \Big\|_F^2

    Parameters
    ----------
    P : torch.Tensor
        (..., n_spin, n, n) densities.
    reduction : {"mean", "sum", "none"}
        Over the leading dimensions; ``"none"`` returns shape (...).

    Returns
    -------
    torch.Tensor
        Real scalar (or (...)), in the real dtype of ``P``.
    """
    a = 0.5 * (P - _dagger(P))
    per = (a.abs() ** 2).sum(dim=(-3, -2, -1))
    return _reduce(per, reduction)


def trace_penalty(P: torch.Tensor, S: torch.Tensor, n_per_spin, reduction: str = "mean") -> torch.Tensor:
    r"""Squared deviation of each channel's electron count.

    .. math:: \mathcal L_\text{tr} = \sum_\sigma \big|\mathrm{Tr}(P_\sigma S) - N_\sigma\big|^2

    The modulus also penalises an imaginary trace (zero for Hermitian :math:`P`).

    Parameters
    ----------
    P : torch.Tensor
        (..., n_spin, n, n) densities.
    S : torch.Tensor
        (..., n, n) overlap.
    n_per_spin : torch.Tensor or sequence of float
        (..., n_spin) electrons per channel (see :func:`project_density`).
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    torch.Tensor
        Real scalar (or (...)).
    """
    _check_shapes(P, S)
    n = _electron_counts(n_per_spin, P)
    tr = _trace(P @ S.to(torch.promote_types(P.dtype, S.dtype)).unsqueeze(-3))  # (..., n_spin)
    per = ((tr - n.to(tr.real.dtype)).abs() ** 2).sum(-1)
    return _reduce(per, reduction)


def idempotency_penalty(P: torch.Tensor, S: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    r"""Squared idempotency residual in an orthonormal basis, summed over spin.

    .. math::

        \mathcal L_\text{idem} = \sum_\sigma \big\|Q_\sigma^2 - Q_\sigma\big\|_F^2
        = \sum_\sigma \frac{1}{o^2}\,\mathrm{Tr}\big(R_\sigma^\dagger S R_\sigma S\big),
        \qquad R_\sigma = \frac{1}{o} P_\sigma S P_\sigma - P_\sigma,

    with :math:`Q_\sigma = S^{1/2} P_\sigma S^{1/2}/o` the occupation-normalised Löwdin
    density (:math:`o` = 2 for ``n_spin = 1``, 1 for ``n_spin = 2``). It is evaluated
    without a matrix square root as :math:`\|L^\mathsf{T} R_\sigma L\|_F^2/o^2` with the
    Cholesky factor :math:`S = LL^\mathsf{T}` (an orthogonal transform of :math:`S^{1/2}
    R_\sigma S^{1/2}`, so the same norm, non-negative by construction). Basis-independent,
    unlike the AO-basis norm of :math:`PSP - oP`.

    Parameters
    ----------
    P : torch.Tensor
        (..., n_spin, n, n) densities.
    S : torch.Tensor
        (..., n, n) overlap.
    reduction : {"mean", "sum", "none"}

    Returns
    -------
    torch.Tensor
        Real scalar (or (...)).
    """
    _check_shapes(P, S)
    occ = _occupation(P.shape[-3])
    dtype = torch.promote_types(P.dtype, S.dtype)
    p = P.to(dtype)
    s = S.to(dtype).unsqueeze(-3)
    r = (p @ s @ p) / occ - p
    chol = torch.linalg.cholesky(S.to(dtype)).unsqueeze(-3)
    x = _dagger(chol) @ r @ chol
    per = (x.abs() ** 2).sum(dim=(-3, -2, -1)) / occ ** 2
    return _reduce(per, reduction)
