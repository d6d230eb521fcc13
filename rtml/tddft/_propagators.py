r"""Time-step formulas for the Liouville-von Neumann equation in an orthonormal basis.

.. math::

    i\,\frac{dP'}{dt} = [H'(t), P'],\qquad H'(t) = F'[P'(t)] + \mathbf E(t)\cdot\mathbf D'

where primes denote the Löwdin basis (:math:`P' = S^{1/2}PS^{1/2}`,
:math:`F' = S^{-1/2}FS^{-1/2}`). Each step function maps :math:`P'(t)` to
:math:`P'(t+\Delta t) = U P'(t) U^\dagger` with a unitary U built from the electronic Fock
matrices at the two ends of the step, so trace, Hermiticity and idempotency are preserved to
machine precision. The end-point Fock matrix depends on :math:`P'(t+\Delta t)` itself; the
engine iterates it to self-consistency (predictor-corrector, see ``_engine.py``).

All arrays carry leading batch axes: P', F' are (nb, nspin, n, n) and the field term
(nb, 1, n, n) broadcasts over spins.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exp_hermitian", "step_magnus2", "step_etrs", "PROPAGATORS"]


def exp_hermitian(h: np.ndarray, tau: float) -> np.ndarray:
    r"""Unitary :math:`\exp(-i\,h\,\tau)` of (stacked) Hermitian matrices, by eigendecomposition.

    .. math:: e^{-ih\tau} = V\,\mathrm{diag}(e^{-i\epsilon\tau})\,V^\dagger,\qquad h = V\,\mathrm{diag}(\epsilon)V^\dagger
    """
    evals, evecs = np.linalg.eigh(h)
    return (evecs * np.exp(-1j * tau * evals)[..., None, :]) @ evecs.conj().swapaxes(-1, -2)


def _conjugate(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """U P U^dagger."""
    return u @ p @ u.conj().swapaxes(-1, -2)


def step_magnus2(p, fock_start, fock_end, field_term, t, dt):
    r"""Second-order Magnus (exponential midpoint) step.

    .. math::

        P'(t+\Delta t) = e^{-i\Omega}P'(t)e^{i\Omega},\qquad
        \Omega = \Delta t\Big[\tfrac12\big(F'(t) + F'(t+\Delta t)\big)
                 + \mathbf E(t+\tfrac{\Delta t}2)\cdot\mathbf D'\Big]

    The electronic midpoint Fock matrix is the trapezoidal average (second order, time
    reversible); the field, known analytically, is taken exactly at the midpoint.

    Args:
        p: (nb, nspin, n, n) P'(t).
        fock_start, fock_end: (nb, nspin, n, n) electronic F' at t and t+dt.
        field_term: callable t -> (nb, 1, n, n) field coupling E(t)·D'.
    """
    h_mid = 0.5 * (fock_start + fock_end) + field_term(t + 0.5 * dt)
    return _conjugate(exp_hermitian(h_mid, dt), p)


def step_etrs(p, fock_start, fock_end, field_term, t, dt):
    r"""Enforced time-reversal symmetry (ETRS) step (Castro, Marques, Rubio 2004).

    .. math::

        P'(t+\Delta t) = U P'(t) U^\dagger,\qquad
        U = e^{-i\frac{\Delta t}{2}H'(t+\Delta t)}\,e^{-i\frac{\Delta t}{2}H'(t)}

    Second order and time reversible by construction.
    """
    u = exp_hermitian(fock_end + field_term(t + dt), 0.5 * dt) @ exp_hermitian(
        fock_start + field_term(t), 0.5 * dt)
    return _conjugate(u, p)


#: Propagators by name (the CLI's ``--propagator``).
PROPAGATORS = {"magnus2": step_magnus2, "etrs": step_etrs}
