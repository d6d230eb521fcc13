r"""Tightly converged ground states and LR-TDDFT excitations with PySCF.

The SCF (:func:`rtml.chem.converged_scf`: RKS/RHF for closed shells, UKS/UHF for open
shells) is converged to an orbital gradient of 1e-10 and then checked with the propagation
engine's own Fock build (:func:`rtml.tddft._fock.fock_and_energy`): the commutator
:math:`\max|FPS - SPF|` must be small, so the ground state is a stationary point of the very
equations that are propagated (a field-free run then stays put).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from pyscf import tdscf

from rtml._errors import ConvergenceError, InputError
from rtml.chem import converged_scf, is_hartree_fock
from rtml.tddft._fock import FockContext, build_fock_context, fock_and_energy

log = logging.getLogger("rtml.tddft")

#: Davidson tolerances of the LR-TDDFT states, tried in turn: PySCF's change of each energy
#: per iteration (Ha); the residual norm must also fall below its square root. C6H6
#: (PBE0/6-31G, 10 states) stagnates at residuals of ~1e-4 (the XC kernel's grid noise), so
#: 1e-9 fails there after any number of iterations while 1e-6 holds (energies agree to
#: 1e-4 eV either way); the smaller molecules meet 1e-9.
DAVIDSON_TOLERANCES = (1e-9, 1e-6)

#: Largest accepted max|FPS - SPF| of the ground state with the engine's Fock matrix.
COMMUTATOR_TOL = 1e-8


@dataclass
class GroundState:
    """A converged ground state and the Fock context built on its grid.

    Attributes
    ----------
    mf : PySCF SCF object (converged)
    context : FockContext
    density : (nspin, nao, nao) real AO density (total density when nspin=1), built from
        the converged ``mo_coeff``/``mo_occ`` (idempotent: P'P' = P' per spin, P' = S^1/2 P
        S^1/2, halved for nspin=1)
    energy : float, Hartree
    dipole : (3,) float, e*bohr about the centre of nuclear charge
    commutator_norm : float
        max |FPS - SPF| of ``density`` with the engine's Fock matrix.
    fock : (nspin, nao, nao) real or None
        F[P0] of ``density`` built by the engine's own Fock build
        (:func:`rtml.tddft._fock.fock_and_energy`, Hartree, no field term): the reference
        the propagated frames' Fock matrices are compared with (None: compute it with
        :func:`ground_state_fock`).
    """

    mf: object
    context: FockContext
    density: np.ndarray
    energy: float
    dipole: np.ndarray
    commutator_norm: float
    fock: np.ndarray | None = None

    @property
    def nspin(self) -> int:
        return self.density.shape[0]


def commutator_norm(fock: np.ndarray, dm: np.ndarray, overlap: np.ndarray) -> float:
    """max |F P S - S P F| over spins: zero for a stationary (self-consistent) density."""
    fps = fock @ dm @ overlap
    return float(np.abs(fps - fps.conj().swapaxes(-1, -2)).max())


def electronic_dipole(dm: np.ndarray, ctx: FockContext) -> np.ndarray:
    r"""Total dipole :math:`-\sum_\sigma\mathrm{Re\,Tr}(P_\sigma\mathbf D) + \sum_A Z_A(\mathbf R_A-\mathbf O)`.

    Args:
        dm: (..., nspin, nao, nao) AO densities.
    Returns:
        (..., 3) dipoles in e*bohr.
    """
    return -np.einsum("xij,...sji->...x", ctx.dipole_ints, dm).real + ctx.nuclear_dipole


def run_ground_state(mol, xc: str, grid_level: int = 3, verbose: int = 0,
                     commutator_tol: float = COMMUTATOR_TOL, max_cycle: int = 200,
                     dm0=None) -> GroundState:
    """Converge the SCF tightly and check it against the engine's own Fock build.

    PySCF's DIIS runs to an orbital gradient of ``rtml.chem.SCF_CONV_TOL_GRAD``; if it fails,
    the second-order (Newton) solver continues from where it stopped. The engine's Fock build
    reproduces PySCF's ``get_fock`` to ~1e-14, so the converged density must also satisfy
    ``max|FPS - SPF| < commutator_tol`` with it, which makes the ground state stationary
    under propagation.

    Raises:
        ConvergenceError: if the SCF does not converge or the commutator check fails.
    """
    mf = converged_scf(mol, xc, grid_level, verbose, max_cycle, dm0=dm0)
    nspin = 2 if mol.spin != 0 else 1
    ctx = build_fock_context(mol, xc, nspin, getattr(mf, "grids", None))
    dm = np.asarray(mf.make_rdm1()).reshape(nspin, mol.nao, mol.nao)
    fock, energy = fock_and_energy(ctx, dm[None].astype(complex))
    residual = commutator_norm(fock[0].real, dm, ctx.overlap)
    if residual > commutator_tol:
        raise ConvergenceError(f"SCF converged only to max|FPS-SPF| = {residual:.1e} "
                               f"(needs < {commutator_tol:g} for a stationary ground state)")
    return GroundState(mf=mf, context=ctx, density=dm, energy=float(energy[0]),
                       dipole=electronic_dipole(dm, ctx), commutator_norm=residual,
                       fock=np.ascontiguousarray(fock[0].real))


def ground_state_fock(ground_state: GroundState) -> np.ndarray:
    """F0 = F[P0] (nspin, nao, nao), real, with the engine's Fock build (the same build the
    dynamics uses; a real density has no imaginary exchange part). Computed once and kept
    on the ground state."""
    if ground_state.fock is None:
        fock, _ = fock_and_energy(ground_state.context,
                                  ground_state.density[None].astype(complex))
        ground_state.fock = np.ascontiguousarray(fock[0].real)
    return ground_state.fock


@dataclass
class Excitations:
    """Full (not Tamm-Dancoff) LR-TDDFT/TDHF excitations of a ground state.

    Attributes
    ----------
    energies : (nstates,) Hartree, ascending
    oscillator_strengths : (nstates,)
    transition_dipoles : (nstates, 3) e*bohr (length gauge)
    """

    energies: np.ndarray
    oscillator_strengths: np.ndarray
    transition_dipoles: np.ndarray


def excitation_energies(ground_state: GroundState, nstates: int = 10,
                        tolerances: tuple[float, ...] = DAVIDSON_TOLERANCES) -> Excitations:
    """Linear-response excitations (Casida equations, full TDDFT; TDHF for HF).

    Uses PySCF ``tdscf.TDDFT``/``TDHF`` on the converged SCF object, with the dipole origin
    of the propagation (centre of nuclear charge); for closed shells singlets only, the
    states a dipole kick can excite. Converged to the first of ``tolerances`` (default
    :data:`DAVIDSON_TOLERANCES`) that the Davidson solver reaches.

    Raises:
        ConvergenceError: not even the last tolerance was reached.
    """
    if nstates < 1:
        raise InputError(f"nstates must be >= 1, got {nstates}")
    mf = ground_state.mf
    nocc_nvir = [(int(np.sum(o > 0)), int(np.sum(o == 0))) for o in np.reshape(mf.mo_occ, (-1, mf.mo_occ.shape[-1]))]
    max_states = sum(a * b for a, b in nocc_nvir)
    nstates = min(nstates, max_states)
    td = tdscf.TDHF(mf) if is_hartree_fock(ground_state.context.xc) else tdscf.TDDFT(mf)
    td.nstates = nstates
    td.verbose = 0
    with mf.mol.with_common_origin(ground_state.context.dipole_origin):
        for tol in tolerances:
            td.conv_tol = tol
            td.kernel()
            if all(np.atleast_1d(td.converged)):
                break
            log.info("LR-TDDFT: %d of %d states not converged to %g Ha", nstates -
                     int(np.sum(td.converged)), nstates, tol)
        else:
            raise ConvergenceError(f"LR-TDDFT (Davidson) did not converge to "
                                   f"{tolerances[-1]:g} Ha for {nstates} states; ask "
                                   "for fewer states (--nstates)")
        dipoles = np.asarray(td.transition_dipole())
        strengths = np.asarray(td.oscillator_strength(gauge="length"))
    order = np.argsort(td.e)
    return Excitations(energies=np.asarray(td.e)[order], oscillator_strengths=strengths[order],
                       transition_dipoles=dipoles[order])
