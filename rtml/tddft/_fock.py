r"""Kohn-Sham / Hartree-Fock matrices and energies for batches of complex densities.

Everything constant in time is computed once per geometry in :func:`build_fock_context`:
the one-electron matrices of :func:`rtml.chem.one_electron_matrices` (core Hamiltonian,
overlap, dipole integrals about the centre of nuclear charge), the Löwdin transform, the
in-core electron repulsion integrals (also their long-range part for range-separated
hybrids), and the AO values (and gradients for GGA/meta-GGA) on the DFT grid.
:func:`fock_and_energy` then builds the Fock matrices of a whole batch of densities in one
pass over the grid and one libxc call.

For a Hermitian density :math:`P = P^R + iP^I` (:math:`P^R` symmetric, :math:`P^I`
antisymmetric) of a closed-shell molecule (total density, ``nspin = 1``):

.. math::

    F[P] = h + J[P^R] - \tfrac{c_x}{2}\left(K[P^R] + iK[P^I]\right)
           - \tfrac{c_{lr}-c_x}{2}\left(K^{lr}[P^R] + iK^{lr}[P^I]\right) + V_{xc}[\rho]

    E[P] = \mathrm{Re\,Tr}(hP) + \tfrac12\mathrm{Re\,Tr}(J P)
           - \tfrac{c_x}{4}\mathrm{Re\,Tr}(K[P] P) - \tfrac{c_{lr}-c_x}{4}\mathrm{Re\,Tr}(K^{lr}[P]P)
           + E_{xc}[\rho] + E_{nuc}

with :math:`J[P]_{\mu\nu} = \sum_{\lambda\sigma}(\mu\nu|\lambda\sigma)P_{\lambda\sigma}`,
:math:`K[P]_{\mu\nu} = \sum_{\lambda\sigma}(\mu\lambda|\sigma\nu)P_{\lambda\sigma}`, and
:math:`\rho(\mathbf r) = \sum_{\mu\nu}P^R_{\mu\nu}\phi_\mu\phi_\nu` (the antisymmetric part
gives no density, and J of it vanishes). Exact exchange sees the full complex density: K of
the antisymmetric :math:`P^I` is antisymmetric and not zero, and dropping it shifts every
excitation of a hybrid functional. For ``nspin = 2`` (UKS/UHF) each spin has
:math:`F_\sigma = h + J[P_\alpha + P_\beta] - c_x K[P_\sigma] + \dots + V_{xc,\sigma}` and the
exchange energy is :math:`-\tfrac{c_x}{2}\sum_\sigma\mathrm{Re\,Tr}(K[P_\sigma]P_\sigma)`.
The coefficients :math:`(\omega, c_{lr}, c_x)` are PySCF's ``rsh_and_hybrid_coeff``.

Reference: PySCF ``dft/rks.py:get_veff`` and ``dft/numint.py:nr_rks`` implement the same
equations for real densities; :func:`fock_and_energy` agrees with them (tests).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg
from pyscf import dft, gto, scf
from threadpoolctl import ThreadpoolController

from rtml._errors import InputError
from rtml.chem import check_functional, one_electron_matrices

#: Memory budget (MB) of the XC part: the AO cache takes at most half of it (else AO values
#: are recomputed at every build), the per-block work arrays of a batch the other half.
DEFAULT_MAX_MEMORY_MB = 2000.0
#: Grid points per block (AO screening is decided per block).
DEFAULT_GRID_BLOCK_SIZE = 2048
#: AOs whose value and gradient stay below this on every point of a block are dropped from
#: the block's products (they change no matrix element by more than ~1e-14; tests: 1e-12).
AO_CUTOFF = 1e-14
_NVAR = {"LDA": 1, "GGA": 4, "MGGA": 5}
#: V = Phi^T A + A^T Phi counts the rho term twice: A takes half of it.
_HALF_RHO = np.array([0.5, 1.0, 1.0, 1.0])


@dataclass
class FockContext:
    """Time-independent data for Fock builds of one molecule geometry (atomic units).

    Attributes
    ----------
    mol : pyscf.gto.Mole
    nspin : int
        1 for a closed-shell total density, 2 for alpha/beta densities.
    hcore, overlap : (nao, nao) arrays
    orth : (nao, nao) array
        Löwdin transform X = S^{-1/2}: F' = X F X, P = X P' X.
    orth_inv : (nao, nao) array
        S^{1/2}: P' = S^{1/2} P S^{1/2}.
    dipole_ints : (3, nao, nao) array
        <mu|r - O|nu> with O = ``dipole_origin``.
    dipole_origin : (3,) array, bohr
        Centre of nuclear charge.
    nuclear_dipole : (3,) array
        sum_A Z_A (R_A - O) (zero for the centre of nuclear charge, kept for clarity).
    energy_nuc : float
    xc : str
        Functional name as given to PySCF (``"hf"`` for Hartree-Fock).
    xctype : str or None
        ``"LDA"``, ``"GGA"``, ``"MGGA"`` or None for Hartree-Fock.
    omega, c_lr, c_x : float
        Range-separation parameter and long-range/full exact-exchange coefficients.
    eri, eri_lr : arrays or None
        In-core 8-fold-symmetric ERIs (full and long-range), None if not needed.
    grid_blocks : list of :class:`GridBlock`
        The DFT grid in blocks, with the AOs that matter on each (and their values when
        cached).
    max_memory_mb : float
        Memory budget of the XC part (AO cache plus one block's work arrays).
    """

    mol: gto.Mole
    nspin: int
    hcore: np.ndarray
    overlap: np.ndarray
    orth: np.ndarray
    orth_inv: np.ndarray
    dipole_ints: np.ndarray
    dipole_origin: np.ndarray
    nuclear_dipole: np.ndarray
    energy_nuc: float
    xc: str
    xctype: str | None
    omega: float
    c_lr: float
    c_x: float
    eri: np.ndarray | None
    eri_lr: np.ndarray | None
    numint: dft.numint.NumInt | None = None
    grid_blocks: list = field(default_factory=list)
    max_memory_mb: float = DEFAULT_MAX_MEMORY_MB

    @property
    def nao(self) -> int:
        return self.mol.nao_nr()

    @property
    def has_exact_exchange(self) -> bool:
        return self.c_x != 0.0 or self.c_lr != 0.0

    @property
    def ao_deriv(self) -> int:
        return 0 if self.xctype == "LDA" else 1


def lowdin_orthogonalizer(overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Return :math:`(S^{-1/2}, S^{1/2})` from the eigendecomposition of the overlap."""
    evals, evecs = scipy.linalg.eigh(overlap)
    if evals.min() < 1e-10:
        raise InputError(f"basis is numerically linearly dependent (smallest overlap eigenvalue "
                         f"{evals.min():.2e}); Löwdin orthogonalisation is unsafe")
    return (evecs / np.sqrt(evals)) @ evecs.T, (evecs * np.sqrt(evals)) @ evecs.T


def build_fock_context(mol: gto.Mole, xc: str, nspin: int, grids=None,
                       max_memory_mb: float = DEFAULT_MAX_MEMORY_MB,
                       block_size: int | None = None) -> FockContext:
    """Precompute everything a Fock build needs that does not change in time.

    Args:
        mol: built PySCF molecule.
        xc: functional name (``"hf"`` for RT-TDHF).
        nspin: 1 (closed shell, total density) or 2 (alpha, beta).
        grids: a built ``pyscf.dft.gen_grid.Grids`` (the SCF's), required unless HF.
        max_memory_mb: memory budget of the XC part; AO values on the grid are cached
            when they take at most half of it, else recomputed at every build.
        block_size: grid points per block (default ``DEFAULT_GRID_BLOCK_SIZE``).
    """
    xctype = check_functional(xc)
    one_electron = one_electron_matrices(mol)
    orth, orth_inv = lowdin_orthogonalizer(one_electron.overlap)

    if xctype is None:
        ni, omega, c_lr, c_x = None, 0.0, 0.0, 1.0
    else:
        ni = dft.numint.NumInt()
        omega, c_lr, c_x = ni.rsh_and_hybrid_coeff(xc, spin=nspin - 1)
    eri = mol.intor("int2e", aosym="s8")  # J is always needed
    eri_lr = None
    if omega != 0.0 and c_lr != c_x:
        with mol.with_range_coulomb(omega):
            eri_lr = mol.intor("int2e", aosym="s8")

    ctx = FockContext(
        mol=mol, nspin=nspin, hcore=one_electron.hcore, overlap=one_electron.overlap, orth=orth,
        orth_inv=orth_inv, dipole_ints=one_electron.dipole_ints,
        dipole_origin=one_electron.dipole_origin, nuclear_dipole=one_electron.nuclear_dipole,
        energy_nuc=float(mol.energy_nuc()), xc=xc,
        xctype=xctype, omega=float(omega), c_lr=float(c_lr), c_x=float(c_x), eri=eri,
        eri_lr=eri_lr, numint=ni)
    if xctype is not None:
        if grids is None:
            raise ValueError("a DFT Fock context needs the SCF's integration grid")
        attach_grid(ctx, grids, max_memory_mb, block_size)
    return ctx


@dataclass
class GridBlock:
    """One block of grid points with the AO values that are not negligible on it.

    Attributes
    ----------
    coords : (ngrid, 3) array, bohr
    weights : (ngrid,) array
    ao_index : (nsub,) int array
        AOs kept on this block (those with a value or gradient above ``AO_CUTOFF`` on at
        least one of its points); points where every AO is negligible are dropped.
    ao : (ngrid, nvar_ao, nsub) array or None
        Point-major AO values (nvar_ao = 1 for LDA, 4 for GGA/MGGA: value, d/dx, d/dy,
        d/dz); None when not cached (recomputed at every build).
    ao_value : (ngrid, nsub) array or None
        Contiguous copy of ``ao[:, 0]`` for the GEMMs.
    """

    coords: np.ndarray
    weights: np.ndarray
    ao_index: np.ndarray
    ao: np.ndarray | None = None
    ao_value: np.ndarray | None = None


def attach_grid(ctx: FockContext, grids, max_memory_mb: float, block_size: int | None) -> None:
    """Split the grid into blocks, screen negligible AOs and points, cache AO values if they fit.

    The AO cache takes ngrid * nvar_ao * nao * 8 bytes; what is left of ``max_memory_mb``
    bounds the work arrays of one block (about 3 * nb * nspin * nvar * ngrid_block * nao
    doubles for a batch of nb densities), which sets the block size unless ``block_size``
    is given.
    """
    coords, weights = np.asarray(grids.coords), np.asarray(grids.weights)
    keep = weights != 0.0  # PySCF pads grids with zero-weight points
    coords, weights = coords[keep], weights[keep]
    nvar_ao = 1 if ctx.ao_deriv == 0 else 4
    cache_mb = len(weights) * (nvar_ao + 1) * ctx.nao * 8 / 1e6
    cached = cache_mb <= 0.5 * max_memory_mb
    ctx.max_memory_mb = max_memory_mb
    ctx.grid_blocks = []
    step = block_size or DEFAULT_GRID_BLOCK_SIZE
    for i in range(0, len(weights), step):
        block_coords, block_weights = coords[i:i + step], weights[i:i + step]
        ao = _eval_ao(ctx, block_coords)  # (nvar_ao, ng, nao)
        magnitude = np.abs(ao).max(axis=0)  # (ng, nao)
        ao_index = np.flatnonzero(magnitude.max(axis=0) > AO_CUTOFF)
        points = magnitude.max(axis=1) > AO_CUTOFF
        if len(ao_index) == 0 or not points.any():
            continue  # no AO reaches these points: no density, no potential
        block = GridBlock(coords=block_coords[points], weights=block_weights[points],
                          ao_index=ao_index)
        if cached:
            block.ao = np.ascontiguousarray(ao[:, points][:, :, ao_index].transpose(1, 0, 2))
            block.ao_value = np.ascontiguousarray(block.ao[:, 0])
        ctx.grid_blocks.append(block)


def _eval_ao(ctx: FockContext, coords: np.ndarray) -> np.ndarray:
    """AO values on grid points: shape (nvar_ao, ngrid, nao), nvar_ao = 1 (LDA) or 4."""
    ao = ctx.numint.eval_ao(ctx.mol, coords, deriv=ctx.ao_deriv)
    return ao.reshape(-1, len(coords), ctx.nao)


def block_ao_values(ctx: FockContext, block: GridBlock) -> tuple[np.ndarray, np.ndarray]:
    """Point-major AO values (ng, nvar_ao, nsub) and their contiguous values (ng, nsub) on a
    block's points, for its ``ao_index`` AOs: the cached arrays, or evaluated now when the
    context's memory budget left them out of the cache."""
    if block.ao is not None:
        return block.ao, block.ao_value
    ao = _eval_ao(ctx, block.coords)[:, :, block.ao_index]
    ao = np.ascontiguousarray(ao.transpose(1, 0, 2))
    return ao, np.ascontiguousarray(ao[:, 0])


def density_on_grid(ao: np.ndarray, ao_value: np.ndarray, dms: np.ndarray,
                    xctype: str) -> np.ndarray:
    r"""Density variables on grid points for a stack of real symmetric density matrices.

    .. math::

        \rho = \sum_{\mu\nu} D_{\mu\nu}\phi_\mu\phi_\nu,\quad
        \nabla\rho = 2\sum_{\mu\nu} D_{\mu\nu}\phi_\mu\nabla\phi_\nu,\quad
        \tau = \tfrac12\sum_{\mu\nu} D_{\mu\nu}\nabla\phi_\mu\cdot\nabla\phi_\nu

    The whole stack is one GEMM, :math:`C_{g,k\nu} = \sum_\mu\phi_{g\mu}D_{k,\mu\nu}`
    of shape (ng, ndm*nao), then one batched (ndm x nao) @ (nao x nvar_ao) product per point.
    The result stays point-major, the layout of both products (libxc does not care in which
    order the points of a batch come).

    Args:
        ao: (ngrid, nvar_ao, nao) point-major AO values (nvar_ao = 1 for LDA, 4 otherwise).
        ao_value: (ngrid, nao) contiguous AO values (``ao[:, 0]``).
        dms: (ndm, nao, nao) real symmetric density matrices.
        xctype: "LDA", "GGA" or "MGGA".

    Returns:
        (ngrid, ndm, nvar) with nvar = 1 (LDA: rho), 4 (GGA: rho, d/dx, d/dy, d/dz) or
        5 (MGGA: ..., tau).
    """
    ndm, nao = dms.shape[0], dms.shape[-1]
    ng = ao.shape[0]
    nvar = _NVAR[xctype]
    stacked = dms.transpose(1, 0, 2).reshape(nao, ndm * nao)
    #: c[g,k,j] = einsum("gi,kij->gkj", ao_value, dms)
    c0 = (ao_value @ stacked).reshape(ng, ndm, nao)
    if xctype == "LDA":
        return np.matmul(c0, ao_value[:, :, None])
    out = np.empty((ng, ndm, nvar))
    #: out[g,k,x] = einsum("gkj,gxj->gkx", c0, ao)
    np.matmul(c0, ao[:, :4].transpose(0, 2, 1), out=out[:, :, :4])
    out[:, :, 1:4] *= 2.0
    if xctype == "MGGA":
        out[:, :, 4] = 0.0
        for x in range(1, 4):
            grad = np.ascontiguousarray(ao[:, x])
            cx = (grad @ stacked).reshape(ng, ndm, nao)
            out[:, :, 4] += 0.5 * np.matmul(cx, grad[:, :, None])[:, :, 0]
    return out


def xc_matrix(ao: np.ndarray, ao_value: np.ndarray, wv: np.ndarray, xctype: str) -> np.ndarray:
    r"""XC potential matrices from weighted functional derivatives on one grid block.

    .. math::

        V_{\mu\nu} = \sum_g w_g\Big[v_\rho\phi_\mu\phi_\nu
            + \mathbf v_{\nabla\rho}\cdot(\nabla\phi_\mu\,\phi_\nu + \phi_\mu\nabla\phi_\nu)
            + \tfrac12 v_\tau\nabla\phi_\mu\cdot\nabla\phi_\nu\Big]

    computed as :math:`V = \Phi^T A + A^T\Phi` with
    :math:`A_{g,k\nu} = \tfrac12 w v_\rho\phi_{g\nu} + w\mathbf v_{\nabla\rho}\cdot\nabla\phi_{g\nu}`:
    one batched (ndm x nvar_ao) @ (nvar_ao x nao) product per point and one GEMM
    (nao x ng) @ (ng x ndm*nao) for the whole stack.

    Args:
        ao: (ngrid, nvar_ao, nao) point-major AO values.
        ao_value: (ngrid, nao) contiguous AO values.
        wv: (ngrid, ndm, nvar) point-major derivatives of the XC energy density with
            respect to (rho, grad rho, tau), already multiplied by the grid weights.

    Returns:
        (ndm, nao, nao) symmetric matrices.
    """
    ng, ndm = wv.shape[:2]
    nao = ao.shape[-1]
    if xctype == "LDA":
        #: V = einsum("gi,gk,gj->kij", ao, wv, ao)
        aow = wv[:, :, :1] * ao_value[:, None, :]  # (ng, ndm, nao)
        vmat = ao_value.T @ aow.reshape(ng, ndm * nao)
        return vmat.reshape(nao, ndm, nao).transpose(1, 0, 2)
    #: aow[g,k,j] = einsum("gkx,gxj->gkj", half, ao), half = wv with 1/2 on the rho part
    aow = np.matmul(wv[:, :, :4] * _HALF_RHO, ao[:, :4])
    vmat = (ao_value.T @ aow.reshape(ng, ndm * nao)).reshape(nao, ndm, nao).transpose(1, 0, 2)
    vmat = vmat + vmat.transpose(0, 2, 1)
    if xctype == "MGGA":
        for x in range(1, 4):
            grad = np.ascontiguousarray(ao[:, x])
            aow = wv[:, :, 4:5] * grad[:, None, :]
            vmat += 0.5 * (grad.T @ aow.reshape(ng, ndm * nao)).reshape(nao, ndm, nao).transpose(1, 0, 2)
    return vmat


def libxc_rows(rho: np.ndarray, nspin: int, xctype: str) -> np.ndarray:
    """Point-major density variables (npoint, nspin, nvar) in the row layout PySCF's libxc
    interface takes: (nvar, npoint) closed shell, (nspin, nvar, npoint) open shell, and
    without the variable axis for LDA (one contiguous copy)."""
    rows = np.ascontiguousarray(rho.transpose(1, 2, 0))
    if nspin == 1:
        rows = rows[0]
    if xctype == "LDA":
        rows = rows[..., 0, :]
    return rows


def xc_derivatives(ni, xc: str, rho: np.ndarray, nspin: int, xctype: str,
                   weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    r"""XC energy density and first derivatives at point-major density variables (libxc).

    libxc gives :math:`\varepsilon_{xc}` and the derivatives with respect to
    :math:`(\rho_\sigma, \sigma_{\sigma\sigma'} = \nabla\rho_\sigma\cdot\nabla\rho_{\sigma'}, \tau_\sigma)`;
    the chain rule turns the :math:`\sigma` derivatives into gradient derivatives,

    .. math::

        \frac{\partial f}{\partial\nabla\rho} = 2f_{\sigma}\nabla\rho\ \ (\text{closed shell}),\qquad
        \frac{\partial f}{\partial\nabla\rho_\alpha} = 2f_{\sigma_{\alpha\alpha}}\nabla\rho_\alpha
            + f_{\sigma_{\alpha\beta}}\nabla\rho_\beta

    (PySCF's ``eval_xc_eff`` does the same with more copies of the data).

    Args:
        ni: PySCF ``NumInt``.
        rho: (npoint, nspin, nvar) density variables (``nvar`` = 1, 4 or 5).
        weights: optional (npoint,) grid weights multiplied into the derivatives (saves a
            pass over the array).

    Returns:
        exc: (npoint,) energy per particle; v: (npoint, nspin, nvar) derivatives of
        :math:`\rho\varepsilon_{xc}` with respect to the density variables (times the
        weights when given).
    """
    npoint, nvar = rho.shape[0], rho.shape[-1]
    exc, vxc = ni.eval_xc(xc, libxc_rows(rho, nspin, xctype), spin=nspin - 1, deriv=1)[:2]
    w = 1.0 if weights is None else weights[:, None]
    v = np.empty((npoint, nspin, nvar))
    np.multiply(vxc[0].reshape(npoint, nspin), w, out=v[:, :, 0])
    if xctype == "LDA":
        return exc, v
    vsigma = vxc[1].reshape(npoint, 2 * nspin - 1) * w
    grad = rho[:, :, 1:4]
    if nspin == 1:
        np.multiply(2.0 * vsigma, grad[:, 0], out=v[:, 0, 1:4])
    else:
        v[:, 0, 1:4] = 2.0 * vsigma[:, 0:1] * grad[:, 0] + vsigma[:, 1:2] * grad[:, 1]
        v[:, 1, 1:4] = 2.0 * vsigma[:, 2:3] * grad[:, 1] + vsigma[:, 1:2] * grad[:, 0]
    if xctype == "MGGA":
        np.multiply(vxc[3].reshape(npoint, nspin), w, out=v[:, :, 4])
    return exc, v


def point_slices(n_points: int, doubles_per_point: float, budget_mb: float):
    """Slices of ``n_points`` grid points whose work arrays fit in ``budget_mb`` (at least
    64 points each)."""
    step = max(int(budget_mb * 1e6 / 8 // doubles_per_point), 64)
    for i in range(0, n_points, step):
        yield slice(i, i + step)


def block_point_slices(ctx: FockContext, block: GridBlock, ndm: int):
    """Slices of a block's points whose work arrays for ``ndm`` densities (about
    3 * ndm * (nvar + nsub) + 8 doubles per point) fit in half the context's memory budget."""
    per_point = 3 * ndm * (_NVAR[ctx.xctype] + len(block.ao_index)) + 8
    return point_slices(len(block.weights), per_point, 0.5 * ctx.max_memory_mb)


def xc_potential(ctx: FockContext, dms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XC matrices and energies for real densities.

    Each grid block is evaluated for the whole batch at once: one GEMM for the densities
    on the grid, one libxc call for all densities (laid side by side along the grid), one
    GEMM for the potential matrices. Only the AOs that are not negligible on a block
    enter its products.

    Args:
        dms: (nb, nspin, nao, nao) real symmetric densities (total density for nspin=1).

    Returns:
        vxc (nb, nspin, nao, nao) and exc (nb,) in Hartree.
    """
    # Threaded BLAS pays a thread synchronisation for each of the per-point (ndm x nao)
    # products of a stacked matmul, which made a 2-thread build 5x slower than its floor;
    # libxc keeps its OpenMP threads.
    with _blas_controller().limit(limits=1, user_api="blas"):
        return _xc_potential(ctx, dms)


_CONTROLLER = []


def _blas_controller():
    """One threadpoolctl controller per process (building one inspects every library)."""
    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0]


def _xc_potential(ctx: FockContext, dms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nb, nspin, nao = dms.shape[0], dms.shape[1], dms.shape[-1]
    nvar = _NVAR[ctx.xctype]
    ndm = nb * nspin
    flat = dms.reshape(ndm, nao, nao)
    vxc = np.zeros((ndm, nao, nao))
    exc = np.zeros(nb)
    for block in ctx.grid_blocks:
        idx = block.ao_index
        sub_dms = flat[:, idx[:, None], idx]
        ao_all, value_all = block_ao_values(ctx, block)
        sub_v = np.zeros((ndm, len(idx), len(idx)))
        for sl in block_point_slices(ctx, block, ndm):
            ao, ao_value, weights = ao_all[sl], value_all[sl], block.weights[sl]
            ng = len(weights)
            # one libxc call for the whole batch: the points of all members side by side
            rho = density_on_grid(ao, ao_value, sub_dms, ctx.xctype).reshape(ng * nb, nspin, nvar)
            point_weights = np.repeat(weights, nb)  # points run (grid point, member)
            e, v = xc_derivatives(ctx.numint, ctx.xc, rho, nspin, ctx.xctype, point_weights)
            exc += (rho[:, :, 0].sum(axis=1) * e * point_weights).reshape(ng, nb).sum(axis=0)
            sub_v += xc_matrix(ao, ao_value, v.reshape(ng, ndm, nvar), ctx.xctype)
        vxc[:, idx[:, None], idx] += sub_v
    return vxc.reshape(nb, nspin, nao, nao), exc


def _exchange(eri: np.ndarray, dms: np.ndarray) -> np.ndarray:
    """K[D] for a stack of real (not necessarily symmetric) matrices: (n, nao, nao)."""
    return np.asarray(scf.hf.dot_eri_dm(eri, dms, hermi=0, with_j=False)[1]).reshape(dms.shape)


def exact_exchange(ctx: FockContext, dms: np.ndarray) -> np.ndarray:
    r"""Weighted exact exchange :math:`c_x K[P] + (c_{lr}-c_x) K^{lr}[P]` for complex P.

    Args:
        dms: (n, nao, nao) complex Hermitian densities (one spin each).

    Returns:
        (n, nao, nao) complex Hermitian matrices; K of the real symmetric part is real
        symmetric, K of the imaginary antisymmetric part is antisymmetric.
    """
    stacked = np.concatenate([dms.real, dms.imag])
    n = len(dms)

    def split(k):
        return k[:n] + 1j * k[n:]

    vk = np.zeros(dms.shape, dtype=complex)
    if ctx.c_x != 0.0:
        vk += ctx.c_x * split(_exchange(ctx.eri, stacked))
    if ctx.eri_lr is not None:
        vk += (ctx.c_lr - ctx.c_x) * split(_exchange(ctx.eri_lr, stacked))
    return vk


def fock_and_energy(ctx: FockContext, dm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fock matrices and total energies of a batch of complex AO densities.

    Args:
        dm: (nb, nspin, nao, nao) complex Hermitian AO density matrices (total density
            when nspin=1).

    Returns:
        fock: (nb, nspin, nao, nao) complex Hermitian AO Fock matrices (no field term).
        energy: (nb,) total energies E[P] in Hartree (electronic + nuclear repulsion).
    """
    nb, nspin, nao = dm.shape[0], dm.shape[1], dm.shape[-1]
    dm_real = np.ascontiguousarray(dm.real)
    dm_total = dm_real.sum(axis=1)  # (nb, nao, nao)
    vj = np.asarray(scf.hf.dot_eri_dm(ctx.eri, dm_total, hermi=1, with_k=False)[0])
    vj = vj.reshape(nb, nao, nao)
    fock = np.empty(dm.shape, dtype=complex)
    fock[:] = (ctx.hcore + vj)[:, None]
    energy = (np.einsum("ij,bji->b", ctx.hcore, dm_total) + 0.5 * np.einsum("bij,bji->b", vj, dm_total))
    if ctx.has_exact_exchange:
        vk = exact_exchange(ctx, dm.reshape(nb * nspin, nao, nao)).reshape(dm.shape)
        # closed shell: K of the total density enters with 1/2, exchange energy with 1/4
        scale = 0.5 if nspin == 1 else 1.0
        fock -= scale * vk
        energy -= 0.5 * scale * np.einsum("bsij,bsji->b", vk, dm).real
    if ctx.xctype is not None:
        vxc, exc = xc_potential(ctx, dm_real)
        fock += vxc
        energy += exc
    return fock, energy + ctx.energy_nuc
