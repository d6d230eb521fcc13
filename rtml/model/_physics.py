r"""The exact parts of the model's time step, in torch (Löwdin basis, atomic units).

The model propagates the density exactly as the RT-TDDFT engine does, and learns only what
the engine spends its time on: the two-electron response of the Fock matrix. In the
Löwdin basis (:math:`P' = S^{1/2}PS^{1/2}`, :math:`F' = S^{-1/2}FS^{-1/2}`):

.. math::

    P'(t+\Delta) = U P'(t) U^\dagger,\qquad U = e^{-i\Delta\,\tilde F'},\qquad
    \tilde F' = F_0' + \Delta G'[\Delta P'] + \mathbf E(t+\tfrac\Delta2)\cdot\mathbf D'

with :math:`F_0'` the ground-state Fock matrix of the geometry (made to commute with
:math:`P_0'` exactly, :func:`stationary_fock`), :math:`\mathbf D'` the dipole integrals about
the stored origin (length gauge, electron charge −1, as in the engine) and
:math:`\Delta G'` the two-electron change for :math:`\Delta P' = P' - P_0'`. The Coulomb and
exact-exchange parts of :math:`\Delta G'` are linear and cheap for these basis sizes
(:func:`coulomb_exchange_operators`); the exchange-correlation part is learned.

Because U is unitary, Hermiticity, the trace and every occupation (eigenvalue of
:math:`P'`) are conserved to rounding; because :math:`[F_0', P_0'] = 0` and
:math:`\Delta G'[0] = 0`, the ground state at zero field is an exact fixed point.
"""

from __future__ import annotations

import numpy as np
import torch
from pyscf import dft

from rtml.model._hermitian import from_hermitian_coordinates, hermitian_coordinates

#: PySCF grid level of the XC kernel in the model's exact step (``learned="xc-nonlinear"``):
#: the network learns what the kernel misses anyway, and level 1 is within 2e-4 (H2O) to
#: 8e-4 (C6H6) of level 3's kernel at a third of its cost
#: (``benchmarks/results/response_setup``).
XC_KERNEL_GRID_LEVEL = 1

__all__ = ["lowdin_transforms", "stationary_fock", "coulomb_exchange_operators",
           "xc_kernel_operator", "XC_KERNEL_GRID_LEVEL", "apply_coulomb_exchange", "exponential_step", "hybrid_coefficients"]


def lowdin_transforms(overlap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r""":math:`(S^{-1/2}, S^{1/2})` of (..., n, n) overlaps, by eigendecomposition."""
    evals, evecs = torch.linalg.eigh(overlap)
    vt = evecs.transpose(-1, -2)
    return (evecs / evals.sqrt()[..., None, :]) @ vt, (evecs * evals.sqrt()[..., None, :]) @ vt


def stationary_fock(fock0: torch.Tensor, rho0: torch.Tensor, occupation: float) -> torch.Tensor:
    r"""The part of :math:`F_0'` that commutes with the ground state :math:`P_0'`.

    .. math:: \bar F_0' = \Pi F_0' \Pi + (1-\Pi) F_0' (1-\Pi),\qquad \Pi = P_0'/f

    with f = 2 (closed shell, total density) or 1 (per spin). The dropped occupied-virtual
    block is the SCF's residual gradient (~1e-6 Ha at convergence); without dropping it the
    ground state would rotate slowly instead of being a fixed point.

    Args:
        fock0, rho0: (..., n, n) Löwdin-basis ground-state Fock and density (idempotent
            :math:`\Pi`).
    """
    proj = rho0 / occupation
    comp = torch.eye(proj.shape[-1], dtype=proj.dtype, device=proj.device) - proj
    out = proj @ fock0 @ proj + comp @ fock0 @ comp
    return 0.5 * (out + out.transpose(-1, -2))


def hybrid_coefficients(xc: str, n_spin: int) -> tuple[float, float, float]:
    """(omega, c_lr, c_x) of a functional as PySCF defines them; HF is (0, 0, 1)."""
    if xc.strip().lower() in ("hf", "rhf", "uhf", "hartree-fock"):
        return 0.0, 0.0, 1.0
    omega, c_lr, c_x = dft.numint.NumInt().rsh_and_hybrid_coeff(xc, spin=n_spin - 1)
    return float(omega), float(c_lr), float(c_x)


def coulomb_exchange_operators(mol, xc: str, n_spin: int, orth: np.ndarray):
    r"""Linear maps of the Coulomb and exact-exchange response in the Löwdin basis.

    With :math:`(ij|kl)'` the ERIs transformed by :math:`X = S^{-1/2}`,

    .. math::

        J'[D]_{ij} = \sum_{kl} (ij|kl)' D_{kl},\qquad K'[D]_{ij} = \sum_{kl} (ik|jl)' D_{kl},

    and the two-electron change of spin channel s is
    :math:`\Delta G_s = J[\Delta P_\text{tot}] - \gamma\,K_\text{eff}[\Delta P_s]` with
    :math:`K_\text{eff} = c_x K + (c_{lr}-c_x)K^{lr}`, γ = 1/2 for a closed-shell total
    density and 1 per spin (the engine's convention, :func:`rtml.tddft._fock.fock_and_energy`).

    The maps act on the real coordinates of Hermitian matrices
    (:func:`rtml.model._hermitian.hermitian_coordinates`): the upper triangle of Re D maps to the
    upper triangle of Re ΔG (J and K), the strict upper triangle of Im D to that of Im ΔG
    (K only: J of an antisymmetric matrix vanishes). Packed this way a map has a quarter of
    the n⁴ entries of the dense one.

    Returns:
        ``(same, total)``: each a pair ``(real map (m, m), imaginary map (m', m'))`` with
        m = n(n+1)/2, m' = n(n-1)/2, acting on the spin's ΔP and on the total ΔP; ``total``
        is None for a closed shell (folded into ``same``).
    """
    omega, c_lr, c_x = hybrid_coefficients(xc, n_spin)
    eri = _to_lowdin(mol.intor("int2e", aosym="s1"), orth)
    k_eff = c_x * eri.transpose(0, 2, 1, 3) if c_x else None
    if omega != 0.0 and c_lr != c_x:
        with mol.with_range_coulomb(omega):
            lr = (c_lr - c_x) * _to_lowdin(mol.intor("int2e", aosym="s1"), orth).transpose(0, 2, 1, 3)
        k_eff = lr if k_eff is None else k_eff + lr
    if n_spin == 1:
        w = eri if k_eff is None else eri - 0.5 * k_eff
        return _packed(w), None
    return _packed(-k_eff if k_eff is not None else np.zeros_like(eri)), _packed(eri)


def xc_kernel_operator(mol, xc: str, n_spin: int, orth: np.ndarray, rho0_ao: np.ndarray,
                       grid_level: int = XC_KERNEL_GRID_LEVEL) -> np.ndarray | None:
    r"""The XC kernel's linear response at the ground state, in the Löwdin basis.

    .. math::

        \Delta V^{xc}_s[\Delta P]_{ij} \approx \sum_{t,kl} f'_{st,ijkl}\,\Delta P'_{t,kl},\qquad
        f_{st,\mu\nu\lambda\sigma} = \int \frac{\delta^2 E_{xc}}{\delta\rho_s\,\delta\rho_t}
            [\rho_0]\,\phi_\mu\phi_\nu\phi_\lambda\phi_\sigma

    (with the gradient terms of a GGA), integrated by :func:`rtml.tddft.xc_kernel` in double
    precision with every AO pair, on PySCF's grid of ``grid_level`` oriented in the molecule's
    own frame (:func:`rtml.chem.molecule_frame_grids`), and transformed by :math:`X = S^{-1/2}`
    on all four indices. PySCF's own grids do not turn with the molecule, and the kernel's
    low-density tail (large :math:`f_{xc}`, few points) is where that shows: on them the
    response of a turned LiH differs from the turned response by 14 % at level 1 (H2O: 1e-4);
    on the molecule's frame it turns to rounding (1e-13). Semi-local XC sees only Re ΔP',
    so the map acts on real coordinates only.

    Args:
        rho0_ao: (S, n, n) real AO ground-state density (the total density for S = 1).

    Returns:
        (S, S, m, m) real maps on the upper-triangle coordinates of Re ΔP'_t -> Re ΔV'_s
        (m = n(n+1)/2), or None for Hartree-Fock.
    """
    from rtml.chem import molecule_frame_grids
    from rtml.tddft import build_fock_context, xc_kernel

    if xc.strip().lower() in ("hf", "rhf", "uhf", "hartree-fock"):
        return None
    ctx = build_fock_context(mol, xc, n_spin, molecule_frame_grids(mol, grid_level))
    n = orth.shape[0]
    npair = n * (n + 1) // 2
    packed = xc_kernel(ctx, np.asarray(rho0_ao, dtype=float), exact=True).reshape(n_spin, npair, n_spin, npair)
    # the packed kernel acts on x_q = (2 - delta) D_q; as a full sum over both orders of each
    # AO pair it has the same entry for (mu, nu) and (nu, mu)
    pair = np.zeros((n, n), dtype=int)
    iu = np.triu_indices(n)
    pair[iu] = np.arange(npair)
    pair = np.maximum(pair, pair.T)
    out = np.empty((n_spin, n_spin, npair, npair))
    for s in range(n_spin):
        for t in range(n_spin):
            full = packed[s, :, t][pair][:, :, pair]                       # (n, n, n, n)
            out[s, t] = _packed(_to_lowdin(full, orth))[0]
    return out


def _to_lowdin(w4: np.ndarray, orth: np.ndarray) -> np.ndarray:
    """w'[i,j,k,l] = X_ia X_jb X_kc X_ld w[a,b,c,d] of an (n^4) array, one index at a time (n^5)."""
    n = orth.shape[0]
    w4 = w4.reshape(n, n, n, n)
    for _ in range(4):
        w4 = np.tensordot(w4, orth, axes=([0], [0]))
    return w4


def _packed(w4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n,n,n,n) map W[i,j,k,l] (ΔG_ij = sum_kl W_ijkl D_kl) -> (real (m, m), imaginary
    (m', m')) maps on Hermitian coordinates."""
    n = w4.shape[0]
    iu, su = np.triu_indices(n), np.triu_indices(n, 1)
    rows = w4[iu[0], iu[1]]                                   # (m, n, n)
    real = rows[:, iu[0], iu[1]] + rows[:, iu[1], iu[0]]
    real[:, iu[0] == iu[1]] *= 0.5                           # the diagonal is counted once
    rows = w4[su[0], su[1]]
    imag = rows[:, su[0], su[1]] - rows[:, su[1], su[0]]
    return np.ascontiguousarray(real), np.ascontiguousarray(imag)


def apply_coulomb_exchange(dp: torch.Tensor, same, total, spin=None) -> torch.Tensor:
    r"""Exact :math:`\Delta G'_{JK}` of (B, ..., S, n, n) complex ΔP' with per-geometry maps.

    Args:
        dp: (B, ..., S, n, n) complex Hermitian.
        same, total: ``(real (B, m, m), imaginary (B, m', m'))`` maps of
            :func:`coulomb_exchange_operators` stacked over the geometries (``total`` None
            for a closed shell). A batch of one geometry repeated (stride 0) is applied as
            one matrix product for all members.
        spin: optional (B, S, S, m, m) real maps between spin channels (an open shell's XC
            kernel, :func:`xc_kernel_operator`): Re ΔG'_s += sum_t spin[s, t] Re ΔP'_t.
    """
    n = dp.shape[-1]
    x = hermitian_coordinates(dp, imaginary=True)
    m = n * (n + 1) // 2
    xr, xi = x[..., :m], x[..., m:]

    def act(w, v):
        #: y[b, ..., i] = sum_j w[b, i, j] v[b, ..., j]
        if w.shape[0] == 1 or w.stride(0) == 0:
            return v @ w[0].T
        b = v.shape[0]
        y = torch.einsum("bij,bmj->bmi", w, v.reshape(b, -1, v.shape[-1]))
        return y.reshape(v.shape[:-1] + (w.shape[1],))

    yr, yi = act(same[0], xr), act(same[1], xi)
    if spin is not None:
        if spin.shape[0] == 1 or spin.stride(0) == 0:
            yr = yr + torch.einsum("stij,...tj->...si", spin[0], xr)
        else:
            b = xr.shape[0]
            v = xr.reshape(b, -1, *xr.shape[-2:])
            yr = yr + torch.einsum("bstij,bktj->bksi", spin, v).reshape(yr.shape)
    if total is not None:
        yr = yr + act(total[0], xr.sum(dim=-2, keepdim=True))
        yi = yi + act(total[1], xi.sum(dim=-2, keepdim=True))
    return from_hermitian_coordinates(torch.cat([yr, yi], dim=-1), n, imaginary=True)


def exponential_step(rho: torch.Tensor, hamiltonian: torch.Tensor, dt: float) -> torch.Tensor:
    r""":math:`e^{-i\Delta t H} P e^{i\Delta t H}` for (..., n, n) Hermitian H (complex P).

    Under autograd :func:`torch.linalg.matrix_exp` (its gradient is well defined at
    degenerate eigenvalues); otherwise the eigendecomposition, which is faster.
    """
    h = 0.5 * (hamiltonian + hamiltonian.conj().transpose(-1, -2))
    if torch.is_grad_enabled() and h.requires_grad:
        u = torch.linalg.matrix_exp(-1j * dt * h)
    else:
        evals, evecs = torch.linalg.eigh(h)
        u = (evecs * torch.exp(-1j * dt * evals)[..., None, :]) @ evecs.conj().transpose(-1, -2)
    return u @ rho @ u.conj().transpose(-1, -2)


def density_norm(x: torch.Tensor) -> torch.Tensor:
    r""":math:`\|x\|_F` over spin channels and matrix elements: (B, S, n, n) -> (B,)."""
    return torch.linalg.matrix_norm(x).pow(2).sum(-1).sqrt()
