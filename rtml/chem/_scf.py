r"""PySCF mean-field objects for a molecule at a level of theory, converged tightly.

Closed shells use RKS (RHF for ``xc="hf"``), open shells UKS (UHF). Every SCF in rtml (ground
states of the engines, the normal-mode Hessian, the geometry optimisation) starts from
:func:`make_scf`, so they all agree on functional checks, grid level and thresholds.
"""

from __future__ import annotations

from pyscf import dft, scf

from rtml._errors import ConvergenceError, InputError

__all__ = ["SCF_CONV_TOL", "SCF_CONV_TOL_GRAD", "is_hartree_fock", "check_functional", "make_scf",
           "converged_scf"]

#: Default SCF convergence: energy (Ha) and orbital-gradient thresholds.
SCF_CONV_TOL = 1e-12
SCF_CONV_TOL_GRAD = 1e-10


def is_hartree_fock(xc: str) -> bool:
    """True for ``hf`` (and ``rhf``/``uhf``/``hartree-fock``): exact exchange, no XC."""
    return xc.strip().lower() in ("hf", "rhf", "uhf", "hartree-fock")


def check_functional(xc: str) -> str | None:
    """Return the XC type (LDA/GGA/MGGA) of a PySCF functional name, None for HF.

    Raises :class:`InputError` for names libxc/PySCF do not know and for functionals rtml
    cannot propagate (non-local VV10 correlation).
    """
    if is_hartree_fock(xc):
        return None
    ni = dft.numint.NumInt()
    try:
        xctype = ni._xc_type(xc)
        ni.rsh_and_hybrid_coeff(xc)
    except (KeyError, ValueError, NotImplementedError, RuntimeError) as err:
        # PySCF/libxc reject an unknown or unsupported name with any of these; one line for it
        raise InputError(f"unknown exchange-correlation functional '{xc}' ({err})") from None
    if xctype not in ("LDA", "GGA", "MGGA", "HF"):
        raise InputError(f"functional '{xc}' of type {xctype} is not supported by rtml "
                         "(non-local correlation cannot be propagated)")
    return None if xctype == "HF" else xctype


def make_scf(mol, xc: str, grid_level: int = 3, verbose: int = 0):
    """PySCF mean-field object: RKS/RHF for closed shells, UKS/UHF for open shells.

    Thresholds :data:`SCF_CONV_TOL`/:data:`SCF_CONV_TOL_GRAD`, at most 200 cycles, DFT grid
    ``grid_level`` (0-9); not run.
    """
    check_functional(xc)
    open_shell = mol.spin != 0
    if is_hartree_fock(xc):
        mf = scf.UHF(mol) if open_shell else scf.RHF(mol)
    else:
        mf = dft.UKS(mol, xc=xc) if open_shell else dft.RKS(mol, xc=xc)
        mf.grids.level = grid_level
    mf.conv_tol = SCF_CONV_TOL
    mf.conv_tol_grad = SCF_CONV_TOL_GRAD
    mf.max_cycle = 200
    mf.verbose = verbose
    return mf


def converged_scf(mol, xc: str, grid_level: int = 3, verbose: int = 0, max_cycle: int = 200,
                  dm0=None, callback=None):
    """Run :func:`make_scf` to convergence (DIIS, then Newton from where DIIS stopped).

    ``dm0`` is an optional initial density ((nao, nao) closed shell, (2, nao, nao) open
    shell), e.g. a saved ground state, which makes a rerun converge in a few cycles.
    ``callback`` is PySCF's per-cycle ``callback(envs)`` (e.g. to record ``norm_gorb``).

    Raises:
        ConvergenceError: if neither solver converges in ``max_cycle`` iterations.
    """
    mf = make_scf(mol, xc, grid_level, verbose)
    mf.max_cycle = max_cycle
    mf.callback = callback
    mf.kernel(dm0=dm0)
    if not mf.converged:
        mf = mf.newton()
        mf.max_cycle = max_cycle
        mf.kernel(mf.mo_coeff, mf.mo_occ)
    if not mf.converged:
        raise ConvergenceError(f"SCF did not converge in {max_cycle} cycles ({xc}/{mol.basis}, "
                               f"charge {mol.charge}, multiplicity {mol.spin + 1})")
    return mf
