r"""Kohn-Sham / Hartree-Fock matrices and energies for batches of complex densities.

Everything constant in time is computed once per geometry in :func:`build_fock_context`:
core Hamiltonian, overlap, the Löwdin transform, dipole integrals, the in-core electron
repulsion integrals (also their long-range part for range-separated hybrids), and the AO
values (and gradients for GGA/meta-GGA) on the DFT grid. :func:`fock_and_energy` then builds
the Fock matrices of a whole batch of densities in one pass over the grid and one libxc call.

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

from rtml._errors import InputError

#: AO values on the grid are cached only below this many MB (else recomputed per build).
DEFAULT_AO_CACHE_MB = 3000.0
#: Grid points per block when evaluating AO values and XC matrices.
GRID_BLOCK_SIZE = 4096
_NVAR = {"LDA": 1, "GGA": 4, "MGGA": 5}


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
    grid_weights : list of (ngrid_block,) arrays
    grid_ao : list of arrays or None
        Cached AO values per grid block, shape (nvar, ngrid_block, nao) with nvar = 1 (LDA)
        or 4 (GGA, MGGA: value and x/y/z gradients). None if not cached.
    grid_coords : list of (ngrid_block, 3) arrays
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
    grid_coords: list = field(default_factory=list)
    grid_weights: list = field(default_factory=list)
    grid_ao: list | None = None

    @property
    def nao(self) -> int:
        return self.mol.nao_nr()

    @property
    def has_exact_exchange(self) -> bool:
        return self.c_x != 0.0 or self.c_lr != 0.0

    @property
    def ao_deriv(self) -> int:
        return 0 if self.xctype == "LDA" else 1


def is_hartree_fock(xc: str) -> bool:
    """True for ``hf`` (and ``rhf``/``uhf``/``hartree-fock``): exact exchange, no XC."""
    return xc.strip().lower() in ("hf", "rhf", "uhf", "hartree-fock")


def check_functional(xc: str) -> str | None:
    """Return the XC type (LDA/GGA/MGGA) of a PySCF functional name, None for HF.

    Raises :class:`InputError` for names libxc/PySCF do not know and for functionals this
    engine cannot propagate (non-local VV10 correlation).
    """
    if is_hartree_fock(xc):
        return None
    ni = dft.numint.NumInt()
    try:
        xctype = ni._xc_type(xc)
        ni.rsh_and_hybrid_coeff(xc)
    except (KeyError, ValueError, NotImplementedError, RuntimeError) as err:
        raise InputError(f"unknown exchange-correlation functional '{xc}' ({err})") from None
    if xctype not in ("LDA", "GGA", "MGGA", "HF"):
        raise InputError(f"functional '{xc}' of type {xctype} is not supported by rtml "
                         "(non-local correlation cannot be propagated)")
    return None if xctype == "HF" else xctype


def centre_of_nuclear_charge(mol: gto.Mole) -> np.ndarray:
    r"""Centre of nuclear charge :math:`\mathbf O = \sum_A Z_A\mathbf R_A / \sum_A Z_A` (bohr)."""
    charges = mol.atom_charges().astype(float)
    return charges @ mol.atom_coords(unit="Bohr") / charges.sum()


def lowdin_orthogonalizer(overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Return :math:`(S^{-1/2}, S^{1/2})` from the eigendecomposition of the overlap."""
    evals, evecs = scipy.linalg.eigh(overlap)
    if evals.min() < 1e-10:
        raise InputError(f"basis is numerically linearly dependent (smallest overlap eigenvalue "
                         f"{evals.min():.2e}); Löwdin orthogonalisation is unsafe")
    return (evecs / np.sqrt(evals)) @ evecs.T, (evecs * np.sqrt(evals)) @ evecs.T


def build_fock_context(mol: gto.Mole, xc: str, nspin: int, grids=None,
                       ao_cache_mb: float = DEFAULT_AO_CACHE_MB) -> FockContext:
    """Precompute everything a Fock build needs that does not change in time.

    Args:
        mol: built PySCF molecule.
        xc: functional name (``"hf"`` for RT-TDHF).
        nspin: 1 (closed shell, total density) or 2 (alpha, beta).
        grids: a built ``pyscf.dft.gen_grid.Grids`` (the SCF's), required unless HF.
        ao_cache_mb: cache AO values on the grid when they fit in this many MB.
    """
    xctype = check_functional(xc)
    origin = centre_of_nuclear_charge(mol)
    with mol.with_common_origin(origin):
        dipole_ints = mol.intor_symmetric("int1e_r", comp=3)
    charges = mol.atom_charges().astype(float)
    nuclear_dipole = charges @ (mol.atom_coords(unit="Bohr") - origin)
    overlap = mol.intor_symmetric("int1e_ovlp")
    orth, orth_inv = lowdin_orthogonalizer(overlap)

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
        mol=mol, nspin=nspin, hcore=scf.hf.get_hcore(mol), overlap=overlap, orth=orth,
        orth_inv=orth_inv, dipole_ints=dipole_ints, dipole_origin=origin,
        nuclear_dipole=nuclear_dipole, energy_nuc=float(mol.energy_nuc()), xc=xc,
        xctype=xctype, omega=float(omega), c_lr=float(c_lr), c_x=float(c_x), eri=eri,
        eri_lr=eri_lr, numint=ni)
    if xctype is not None:
        if grids is None:
            raise ValueError("a DFT Fock context needs the SCF's integration grid")
        _attach_grid(ctx, grids, ao_cache_mb)
    return ctx


def _attach_grid(ctx: FockContext, grids, ao_cache_mb: float) -> None:
    """Split the grid into blocks and cache AO values on it when they fit in memory."""
    coords, weights = np.asarray(grids.coords), np.asarray(grids.weights)
    keep = weights != 0.0  # PySCF pads grids with zero-weight points
    coords, weights = coords[keep], weights[keep]
    starts = range(0, len(weights), GRID_BLOCK_SIZE)
    ctx.grid_coords = [coords[i:i + GRID_BLOCK_SIZE] for i in starts]
    ctx.grid_weights = [weights[i:i + GRID_BLOCK_SIZE] for i in starts]
    nvar = 1 if ctx.ao_deriv == 0 else 4
    size_mb = len(weights) * nvar * ctx.nao * 8 / 1e6
    ctx.grid_ao = [_eval_ao(ctx, c) for c in ctx.grid_coords] if size_mb <= ao_cache_mb else None


def _eval_ao(ctx: FockContext, coords: np.ndarray) -> np.ndarray:
    """AO values on grid points: shape (nvar, ngrid, nao), nvar = 1 (LDA) or 4."""
    ao = ctx.numint.eval_ao(ctx.mol, coords, deriv=ctx.ao_deriv)
    return ao.reshape(-1, len(coords), ctx.nao)


def _grid_blocks(ctx: FockContext):
    """Yield (ao, weights) per grid block, from the cache or evaluated on the fly."""
    for i, weights in enumerate(ctx.grid_weights):
        ao = ctx.grid_ao[i] if ctx.grid_ao is not None else _eval_ao(ctx, ctx.grid_coords[i])
        yield ao, weights


def density_on_grid(ao: np.ndarray, dms: np.ndarray, xctype: str) -> np.ndarray:
    r"""Density variables on grid points for a stack of real symmetric density matrices.

    .. math::

        \rho = \sum_{\mu\nu} D_{\mu\nu}\phi_\mu\phi_\nu,\quad
        \nabla\rho = 2\sum_{\mu\nu} D_{\mu\nu}\phi_\mu\nabla\phi_\nu,\quad
        \tau = \tfrac12\sum_{\mu\nu} D_{\mu\nu}\nabla\phi_\mu\cdot\nabla\phi_\nu

    Args:
        ao: (nvar_ao, ngrid, nao) AO values (nvar_ao = 1 for LDA, 4 otherwise).
        dms: (ndm, nao, nao) real symmetric density matrices.
        xctype: "LDA", "GGA" or "MGGA".

    Returns:
        (ndm, nvar, ngrid) with nvar = 1 (LDA: rho), 4 (GGA: rho, d/dx, d/dy, d/dz) or
        5 (MGGA: ..., tau).
    """
    nvar = _NVAR[xctype]
    out = np.empty((len(dms), nvar, ao.shape[1]))
    #: c[k,g,j] = sum_i ao[0,g,i] D[k,i,j]
    c0 = np.matmul(ao[0], dms)
    out[:, 0] = np.einsum("kgi,gi->kg", c0, ao[0])
    if nvar > 1:
        out[:, 1:4] = 2.0 * np.einsum("kgi,xgi->kxg", c0, ao[1:4])
    if xctype == "MGGA":
        out[:, 4] = 0.0
        for x in range(1, 4):
            out[:, 4] += 0.5 * np.einsum("kgi,gi->kg", np.matmul(ao[x], dms), ao[x])
    return out


def xc_matrix(ao: np.ndarray, wv: np.ndarray, xctype: str) -> np.ndarray:
    r"""XC potential matrices from weighted functional derivatives on one grid block.

    .. math::

        V_{\mu\nu} = \sum_g w_g\Big[v_\rho\phi_\mu\phi_\nu
            + \mathbf v_{\nabla\rho}\cdot(\nabla\phi_\mu\,\phi_\nu + \phi_\mu\nabla\phi_\nu)
            + \tfrac12 v_\tau\nabla\phi_\mu\cdot\nabla\phi_\nu\Big]

    Args:
        ao: (nvar_ao, ngrid, nao) AO values.
        wv: (ndm, nvar, ngrid) derivatives of the XC energy density with respect to
            (rho, grad rho, tau), already multiplied by the grid weights.

    Returns:
        (ndm, nao, nao) symmetric matrices.
    """
    if xctype == "LDA":
        #: V = ao^T (w v) ao
        return np.matmul(ao[0].T, wv[:, 0, :, None] * ao[0])
    half = wv[:, :4].copy()
    half[:, 0] *= 0.5
    aow = np.einsum("kxg,xgi->kgi", half, ao[:4])
    vmat = np.matmul(ao[0].T, aow)
    vmat = vmat + vmat.transpose(0, 2, 1)
    if xctype == "MGGA":
        for x in range(1, 4):
            vmat += 0.5 * np.matmul(ao[x].T, wv[:, 4, :, None] * ao[x])
    return vmat


def xc_potential(ctx: FockContext, dms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """XC matrices and energies for real densities.

    Args:
        dms: (nb, nspin, nao, nao) real symmetric densities (total density for nspin=1).

    Returns:
        vxc (nb, nspin, nao, nao) and exc (nb,) in Hartree.
    """
    nb, nspin, nao = dms.shape[0], dms.shape[1], dms.shape[-1]
    nvar = _NVAR[ctx.xctype]
    flat = dms.reshape(nb * nspin, nao, nao)
    vxc = np.zeros((nb * nspin, nao, nao))
    exc = np.zeros(nb)
    for ao, weights in _grid_blocks(ctx):
        ng = len(weights)
        rho = density_on_grid(ao, flat, ctx.xctype).reshape(nb, nspin, nvar, ng)
        # one libxc call for the whole batch: densities laid side by side along the grid
        rho_xc = rho.transpose(1, 2, 0, 3).reshape(nspin, nvar, nb * ng)
        rho_total = rho_xc[:, 0].sum(axis=0)
        if nspin == 1:
            rho_xc = rho_xc[0]
        if ctx.xctype == "LDA":
            rho_xc = rho_xc[..., 0, :]
        e, v = ctx.numint.eval_xc_eff(ctx.xc, rho_xc, deriv=1, xctype=ctx.xctype,
                                      spin=nspin - 1)[:2]
        exc += (np.tile(weights, nb) * rho_total * e).reshape(nb, ng).sum(axis=1)
        wv = v.reshape(nspin, nvar, nb, ng).transpose(2, 0, 1, 3).reshape(nb * nspin, nvar, ng)
        vxc += xc_matrix(ao, wv * weights, ctx.xctype)
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
