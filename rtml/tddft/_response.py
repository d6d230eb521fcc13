r"""Linear response of the Fock matrix: a cheap corrector model for the propagation loop.

The end-point Fock matrix of a time step depends on the density it produces; the engine
iterates that fixed point. Every full Fock build costs a pass over the DFT grid and a
libxc call, but the change of F between corrector iterations is tiny and, to first order,
linear in the change of P:

.. math::

    F[P + \Delta P] = F[P] + \mathcal L[\Delta P] + O(\Delta P^2),\qquad
    \mathcal L[\Delta P] = J[\Delta P^R] - \tfrac{c_x}{2}K[\Delta P] - \tfrac{c_{lr}-c_x}{2}K^{lr}[\Delta P]
        + \int \phi_\mu\phi_\nu\, f_{xc}\,\delta\rho

(closed shell; for UKS/UHF the exchange enters per spin with :math:`c_x` and
:math:`f_{xc}` couples the spins). J and K are exactly linear; only the XC kernel
:math:`f_{xc} = \delta^2E_{xc}/\delta\rho^2` is frozen at a reference density. With
:math:`\mathcal L` stored as dense matrices on packed index pairs (symmetric pairs
:math:`\mu\le\nu` for :math:`\Delta P^R`, which J, K and XC see; antisymmetric pairs
:math:`\mu<\nu` for :math:`\Delta P^I`, which only exact exchange sees), a corrector
iteration is one small matrix-vector product instead of a grid pass.

Packed vectors carry off-diagonal elements once: :math:`x_q = \Delta P^R_{\lambda\sigma}`
times 2 for :math:`\lambda<\sigma` (both triangles of a symmetric matrix), so that
:math:`\Delta F^R_p = \sum_q L^{sym}_{pq}x_q`, and :math:`y_q = \Delta P^I_{\lambda\sigma}`
(:math:`\lambda<\sigma`) with :math:`\Delta F^I_p = \sum_q L^{anti}_{pq}y_q`:

.. math::

    L^{sym}_{pq} = (\mu\nu|\lambda\sigma) - \tfrac{c_x}{4}\big[(\mu\lambda|\sigma\nu)
        + (\mu\sigma|\lambda\nu)\big] + \sum_g w_g\,B_g^{p\,T} f_g B_g^q,\qquad
    L^{anti}_{pq} = -\tfrac{c_x}{2}\big[(\mu\lambda|\sigma\nu) - (\mu\sigma|\lambda\nu)\big]

with :math:`B^p_g = (\phi_\mu\phi_\nu, \nabla(\phi_\mu\phi_\nu), \tfrac12\nabla\phi_\mu\cdot\nabla\phi_\nu)`
at grid point g (the density variables of the pair).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from dataclasses import dataclass

import numpy as np
from pyscf import ao2mo

from rtml.tddft._fock import (_NVAR, FockContext, attach_grid, block_ao_values, density_on_grid,
                              libxc_rows, point_slices)

log = logging.getLogger("rtml.tddft")

#: Fraction of the context's memory budget the response matrices may take.
MEMORY_FRACTION = 0.25
#: AO pairs whose largest |value or gradient| product on a grid block is below this are
#: left out of that block's XC kernel (C6H6: 1e-7 changes the kernel by 3e-8 of its norm and
#: saves a fifth of its cost against 1e-12).
PAIR_CUTOFF = 1e-7
#: The XC kernel is integrated on a PySCF grid this many levels coarser than the SCF's (at
#: least level 0). It is the corrector's model, not the Fock build: its error only sets how
#: far the model may carry, and is measured on every step. C6H6 (PBE0, grid 3 -> 1):
#: 141k -> 46k points, relative error of the kernel 7.6e-4.
KERNEL_GRID_COARSENING = 2
#: ... but not below this level: a level-0 kernel (1.7e-2 off) costs H2O's weak kick 1.65
#: builds per step instead of 1.0.
KERNEL_GRID_MIN_LEVEL = 1
#: ... and only where the kernel on the SCF grid would be slow: its cost is about grid points
#: x (spins x AO pairs)^2 (C6H6: 141k x 2211^2 = 6.9e11 took 18.7 s). Below this the SCF
#: grid's kernel is kept: a second or two, and a more accurate model carries further
#: (H2O, Magnus-4 dt 0.5, weak kick, 8 fields: 0.185 builds per step on the coarse kernel,
#: 0.010 on the SCF grid's).
KERNEL_COARSEN_ABOVE = 5e10


def kernel_coarsening(ctx: FockContext) -> int:
    """Levels the XC kernel's grid is coarsened for this context: ``KERNEL_GRID_COARSENING``
    where the kernel on the SCF grid costs more than ``KERNEL_COARSEN_ABOVE`` (see there),
    else 0."""
    npair = ctx.nao * (ctx.nao + 1) // 2
    points = sum(len(block.weights) for block in ctx.grid_blocks)
    cost = points * float(ctx.nspin * npair) ** 2
    return KERNEL_GRID_COARSENING if cost > KERNEL_COARSEN_ABOVE else 0


def kernel_context(ctx: FockContext, grid_level: int,
                   coarsening: int = KERNEL_GRID_COARSENING) -> FockContext:
    """A copy of ``ctx`` whose grid is PySCF's of level ``max(grid_level - coarsening,
    KERNEL_GRID_MIN_LEVEL)`` (``ctx`` itself when that is not coarser than ``grid_level``,
    or for HF)."""
    level = max(grid_level - coarsening, KERNEL_GRID_MIN_LEVEL)
    if ctx.xctype is None or level >= grid_level:
        return ctx
    from pyscf.dft import gen_grid
    grids = gen_grid.Grids(ctx.mol)
    grids.level = level
    grids.build()
    coarse = dataclasses.replace(ctx)
    attach_grid(coarse, grids, ctx.max_memory_mb, None)
    return coarse


@dataclass
class FockResponse:
    r"""The linearised Fock map :math:`\Delta P \to \mathcal L[\Delta P]` in the AO basis.

    Attributes
    ----------
    nao, nspin : int
    sym : (nspin*npair, nspin*npair) array
        Response of :math:`\Delta F^R` to packed :math:`\Delta P^R` (J, exchange, XC kernel).
    anti : (npair_anti, npair_anti) array or None
        Response of :math:`\Delta F^I_\sigma` to packed :math:`\Delta P^I_\sigma` (exact
        exchange only, the same for each spin); None without exact exchange.
    """

    nao: int
    nspin: int
    sym: np.ndarray
    anti: np.ndarray | None

    def apply(self, dm: np.ndarray) -> np.ndarray:
        r""":math:`\mathcal L[\Delta P]` for a batch of complex Hermitian AO matrices (nb, nspin, n, n)."""
        nb, nspin, n = dm.shape[0], dm.shape[1], dm.shape[-1]
        iu, ju, weight, ia, ja = _pair_indices(n)
        x = (dm.real[..., iu, ju] * weight).reshape(nb, nspin * len(iu))
        out_sym = (x @ self.sym.T).reshape(nb, nspin, len(iu))
        out = np.zeros(dm.shape, dtype=complex)
        out.real[..., iu, ju] = out_sym
        out.real[..., ju, iu] = out_sym
        if self.anti is not None:
            out_anti = dm.imag[..., ia, ja] @ self.anti.T
            out.imag[..., ia, ja] = out_anti
            out.imag[..., ja, ia] = -out_anti
        return out


@functools.lru_cache(maxsize=8)
def _pair_indices(n: int):
    """Upper-triangle pairs (with the diagonal; weight 2 off it) and strict upper pairs of
    n x n matrices: the packed index the response matrices act on (built once per n: the
    corrector applies the response several times per step)."""
    iu, ju = np.triu_indices(n)
    ia, ja = np.triu_indices(n, 1)
    return iu, ju, np.where(iu == ju, 1.0, 2.0), ia, ja


def response_size_mb(nao: int, nspin: int) -> float:
    """Memory (MB) of the response matrices of ``nao`` AOs and ``nspin`` spins."""
    npair = nao * (nao + 1) // 2
    return ((nspin * npair) ** 2 + (npair - nao) ** 2) * 8 / 1e6


def build_fock_response(ctx: FockContext, dm_ref: np.ndarray,
                        kernel_ctx: FockContext | None = None) -> FockResponse | None:
    """Dense linear response of the Fock map at the reference density ``dm_ref``.

    Args:
        ctx: the molecule's :class:`FockContext`.
        dm_ref: (nspin, nao, nao) real AO density whose XC kernel is used (the ground state).
        kernel_ctx: the context whose grid integrates the XC kernel (:func:`kernel_context`;
            default ``ctx``).

    Returns:
        The :class:`FockResponse`, or None when its matrices would take more than
        ``MEMORY_FRACTION`` of ``ctx.max_memory_mb``.
    """
    nao, nspin = ctx.nao, ctx.nspin
    size = response_size_mb(nao, nspin)
    if size > MEMORY_FRACTION * ctx.max_memory_mb:
        log.info("linear-response corrector off: its matrices need %.0f MB (budget %.0f MB)",
                 size, MEMORY_FRACTION * ctx.max_memory_mb)
        return None
    # large GEMMs: BLAS keeps its threads here (unlike in the propagation loop)
    xc_sym = (xc_kernel(kernel_ctx or ctx, np.asarray(dm_ref, dtype=float)) if ctx.xctype
              else None)
    coulomb, exchange_sym, exchange_anti = _two_electron_response(ctx.eri, nao)
    scale = 0.5 if nspin == 1 else 1.0  # closed shell: K of the total density enters with 1/2
    npair = nao * (nao + 1) // 2
    sym = np.zeros((nspin * npair, nspin * npair))
    anti = None
    for s in range(nspin):
        for t in range(nspin):
            sym[s * npair:(s + 1) * npair, t * npair:(t + 1) * npair] = coulomb
        sym[s * npair:(s + 1) * npair, s * npair:(s + 1) * npair] -= scale * ctx.c_x * exchange_sym
    if ctx.has_exact_exchange:
        anti = -scale * ctx.c_x * exchange_anti
    if ctx.eri_lr is not None:
        _, lr_sym, lr_anti = _two_electron_response(ctx.eri_lr, nao)
        coeff = scale * (ctx.c_lr - ctx.c_x)
        for s in range(nspin):
            sym[s * npair:(s + 1) * npair, s * npair:(s + 1) * npair] -= coeff * lr_sym
        anti = anti - coeff * lr_anti
    if xc_sym is not None:
        sym += xc_sym
    return FockResponse(nao=nao, nspin=nspin, sym=sym, anti=anti)


def _two_electron_response(eri: np.ndarray, nao: int):
    r"""Packed Coulomb and exchange response matrices from 8-fold symmetric ERIs.

    Returns :math:`J_{pq} = (\mu\nu|\lambda\sigma)`,
    :math:`K^{sym}_{pq} = \tfrac12[(\mu\lambda|\sigma\nu) + (\mu\sigma|\lambda\nu)]` on
    symmetric pairs and :math:`K^{anti}_{pq} = (\mu\lambda|\sigma\nu) - (\mu\sigma|\lambda\nu)`
    on antisymmetric pairs, so that :math:`K[D]_{\mu\nu} = \sum_{\lambda\sigma}(\mu\lambda|\sigma\nu)D_{\lambda\sigma}`.
    """
    full = ao2mo.restore(1, eri, nao)  # (mu nu | lam sig)
    iu, ju = np.triu_indices(nao)
    ia, ja = np.triu_indices(nao, 1)
    coulomb = full[iu, ju][:, iu, ju]
    # exchange[mu, nu, lam, sig] = (mu lam | sig nu)
    exchange = full.transpose(0, 3, 1, 2)
    k_direct = exchange[iu, ju][:, iu, ju]          # (mu lam|sig nu)
    k_swapped = exchange[iu, ju][:, ju, iu]         # (mu sig|lam nu)
    k_sym = 0.5 * (k_direct + k_swapped)
    k_anti = exchange[ia, ja][:, ia, ja] - exchange[ia, ja][:, ja, ia]
    return coulomb, k_sym, k_anti


def _pair_variables(ao_t: np.ndarray, xctype: str, iu: np.ndarray, ju: np.ndarray) -> np.ndarray:
    r"""Density variables :math:`B^p_g` of AO pairs p = (iu, ju), pair-major: (nvar, npair, ng),
    in the dtype of ``ao_t``.

    Args:
        ao_t: (nvar_ao, nao, ng) AO values (and gradients), AO-major so that pairs are row
            gathers.
    """
    value = ao_t[0]
    nvar = _NVAR[xctype]
    out = np.empty((nvar, len(iu), ao_t.shape[-1]), dtype=ao_t.dtype)
    left, right = value[iu], value[ju]
    np.multiply(left, right, out=out[0])
    if nvar > 1:
        for x in range(1, 4):
            out[x] = ao_t[x][iu] * right + left * ao_t[x][ju]
    if xctype == "MGGA":
        out[4] = 0.5 * sum(ao_t[x][iu] * ao_t[x][ju] for x in range(1, 4))
    return out


def xc_kernel(ctx: FockContext, dm_ref: np.ndarray, exact: bool = False) -> np.ndarray:
    r"""XC part of :math:`L^{sym}`: :math:`\sum_g w_g B_g^T f_{xc}(g) B_g`, spin blocks for UKS.

    Per point the weighted kernel (spin and density variables, m = nspin*nvar) is split as
    :math:`w_g f_{xc}(g) = \sum_k \lambda_k u_k u_k^T`, so that

    .. math::

        L = \sum_{g,k} \operatorname{sign}\lambda_k\, d_{gk} d_{gk}^T,\qquad
        d_{gk} = \sqrt{|\lambda_k|}\, \sum_{sa} u_{k,sa} B^{s}_{a,g}

    a symmetric rank update (SYRK: half a GEMM's work) per sign, in single precision (the
    response is the corrector's model, whose error is measured on every step; its relative
    error stays ~1e-6, tested). ``exact=True`` keeps every AO pair and works in double
    precision (the model's exact step, whose equivariance is tested to 1e-10).
    """
    from scipy.linalg.blas import dsyrk, ssyrk

    real, syrk, cutoff = (np.float64, dsyrk, 0.0) if exact else (np.float32, ssyrk, PAIR_CUTOFF)

    nao, nspin = ctx.nao, ctx.nspin
    nvar = _NVAR[ctx.xctype]
    m = nspin * nvar
    npair = nao * (nao + 1) // 2
    iu_all, ju_all = np.triu_indices(nao)
    pair_index = np.full((nao, nao), -1)
    pair_index[iu_all, ju_all] = np.arange(npair)
    kernel = np.zeros((nspin, npair, nspin, npair))
    for block in ctx.grid_blocks:
        idx = block.ao_index
        sub_dm = dm_ref[:, idx[:, None], idx]
        ao_all, value_all = block_ao_values(ctx, block)
        # pairs whose value and gradient products stay below PAIR_CUTOFF on the whole
        # block add nothing measurable (the model's error is measured anyway)
        largest = np.abs(ao_all).max(axis=(0, 1))
        iu, ju = np.triu_indices(len(idx))
        keep = largest[iu] * largest[ju] > cutoff
        iu, ju = iu[keep], ju[keep]
        pairs = pair_index[idx[iu], idx[ju]]
        n_kept = len(pairs)
        # the block's upper triangle, accumulated over its point slices
        blk = np.zeros((nspin * n_kept, nspin * n_kept), dtype=real, order="F")
        for sl in point_slices(len(block.weights), (nvar + 2 * m * nspin) * n_kept / 2 + 1,
                               MEMORY_FRACTION * ctx.max_memory_mb):
            ao, weights = ao_all[sl], block.weights[sl]
            rho = density_on_grid(ao, value_all[sl], sub_dm, ctx.xctype)  # (ng, nspin, nvar)
            fxc = ctx.numint.eval_xc_eff(ctx.xc, libxc_rows(rho, nspin, ctx.xctype), deriv=2,
                                         xctype=ctx.xctype, spin=nspin - 1)[2]
            f = (fxc.reshape(m, m, len(weights)) * weights).transpose(2, 0, 1)  # (ng, m, m)
            lam, u = np.linalg.eigh(0.5 * (f + f.transpose(0, 2, 1)))         # (ng, m), (ng, m, m)
            scale = np.sqrt(np.abs(lam))                                        # (ng, m)
            b = _pair_variables(np.ascontiguousarray(ao.transpose(1, 2, 0), dtype=real),
                                ctx.xctype, iu, ju)                               # (nvar, P, ng)
            ng = len(weights)
            # d[(s, p), (k, g)] = sqrt|lam_k| sum_a u[(s, a), k] B[a, p, g]: one column per
            # eigenvector and point, C order, so d.T is the Fortran array BLAS reads
            d = np.empty((nspin, n_kept, m * ng), dtype=real)
            for s in range(nspin):
                for k in range(m):
                    cols = d[s, :, k * ng:(k + 1) * ng]
                    np.multiply(b[0], (u[:, s * nvar, k] * scale[:, k]).astype(real), out=cols)
                    for a in range(1, nvar):
                        cols += b[a] * (u[:, s * nvar + a, k] * scale[:, k]).astype(real)
            d = d.reshape(nspin * n_kept, m * ng)
            positive = (lam > 0).T.reshape(-1)                                  # (m*ng,) k-major
            for sign, cols in ((1.0, positive), (-1.0, ~positive)):
                if cols.any():
                    part = d if cols.all() else np.compress(cols, d, axis=1)
                    blk = syrk(sign, part.T, c=blk, beta=1.0, trans=1, overwrite_c=True)
        full = blk + blk.T
        full[np.diag_indices_from(full)] *= 0.5
        full = full.reshape(nspin, n_kept, nspin, n_kept)
        for s in range(nspin):
            for t in range(nspin):
                kernel[s, pairs[:, None], t, pairs] += full[s, :, t]
    return kernel.reshape(nspin * npair, nspin * npair)
