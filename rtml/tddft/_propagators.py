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

__all__ = ["exp_hermitian", "step_magnus2", "step_etrs", "step_magnus4", "PROPAGATORS"]


def exp_hermitian(h: np.ndarray, tau: float) -> np.ndarray:
    r"""Unitary :math:`\exp(-i\,h\,\tau)` of (stacked) Hermitian matrices, by eigendecomposition.

    .. math:: e^{-ih\tau} = V\,\mathrm{diag}(e^{-i\epsilon\tau})\,V^\dagger,\qquad h = V\,\mathrm{diag}(\epsilon)V^\dagger
    """
    evals, evecs = np.linalg.eigh(h)
    return (evecs * np.exp(-1j * tau * evals)[..., None, :]) @ evecs.conj().swapaxes(-1, -2)


def _conjugate(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """U P U^dagger."""
    return u @ p @ u.conj().swapaxes(-1, -2)


def step_magnus2(p, fock_start, fock_end, field_term, t, dt, fock_past=None):
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
        fock_past: ignored (the signature is shared with :func:`step_magnus4`).
    """
    h_mid = 0.5 * (fock_start + fock_end) + field_term(t + 0.5 * dt)
    return _conjugate(exp_hermitian(h_mid, dt), p)


def step_etrs(p, fock_start, fock_end, field_term, t, dt, fock_past=None):
    r"""Enforced time-reversal symmetry (ETRS) step (Castro, Marques, Rubio 2004).

    .. math::

        P'(t+\Delta t) = U P'(t) U^\dagger,\qquad
        U = e^{-i\frac{\Delta t}{2}H'(t+\Delta t)}\,e^{-i\frac{\Delta t}{2}H'(t)}

    Second order and time reversible by construction.
    """
    u = exp_hermitian(fock_end + field_term(t + dt), 0.5 * dt) @ exp_hermitian(
        fock_start + field_term(t), 0.5 * dt)
    return _conjugate(u, p)


#: Gauss-Legendre nodes on [0, 1] (fractions of the step) of the 4th-order Magnus step.
GAUSS_NODES = (0.5 - np.sqrt(3.0) / 6.0, 0.5 + np.sqrt(3.0) / 6.0)


def lagrange_weights(nodes: np.ndarray, s: float) -> np.ndarray:
    r"""Weights :math:`\ell_j(s) = \prod_{m\ne j}(s - s_m)/(s_j - s_m)` of polynomial interpolation."""
    nodes = np.asarray(nodes, dtype=float)
    weights = np.ones(len(nodes))
    for j, sj in enumerate(nodes):
        for m, sm in enumerate(nodes):
            if m != j:
                weights[j] *= (s - sm) / (sj - sm)
    return weights


def interpolate_fock(fock_points: np.ndarray, nodes: np.ndarray, s: float) -> np.ndarray:
    """Polynomial interpolation of Fock matrices sampled at ``nodes`` (units of dt) at ``s``.

    Args:
        fock_points: (npoint, ...) matrices at the nodes.
    """
    return np.tensordot(lagrange_weights(nodes, s), fock_points, axes=1)


def step_magnus4(p, fock_start, fock_end, field_term, t, dt, fock_past=None):
    r"""Fourth-order Magnus step with two Gauss-Legendre points (Blanes, Casas, Oteo, Ros 2009).

    .. math::

        P'(t+\Delta t) = e^{-i\Delta t\,\bar H}P'(t)e^{i\Delta t\,\bar H},\qquad
        \bar H = \tfrac12(H_1 + H_2) + \tfrac{i\sqrt3}{12}\Delta t\,[H_1, H_2]

    with :math:`H_k = F'(t + c_k\Delta t) + \mathbf E(t + c_k\Delta t)\cdot\mathbf D'`,
    :math:`c_{1,2} = \tfrac12\mp\tfrac{\sqrt3}{6}`. This is the exponent
    :math:`\Omega = -\tfrac{i\Delta t}2(H_1+H_2) + \tfrac{\sqrt3}{12}\Delta t^2[H_1,H_2]`
    written as :math:`-i\Delta t\bar H` (:math:`i[H_1,H_2]` is Hermitian). The field is
    taken exactly at the Gauss points; the electronic Fock matrix there is the cubic
    through :math:`F'(t-2\Delta t), F'(t-\Delta t), F'(t), F'(t+\Delta t)` (fewer points,
    lower degree, at the first steps), whose :math:`O(\Delta t^4)` error keeps the step
    fourth order. The end point :math:`F'(t+\Delta t)` is made self-consistent by the engine.

    Args:
        p: (nb, nspin, n, n) P'(t).
        fock_start, fock_end: (nb, nspin, n, n) electronic F' at t and t+dt.
        field_term: callable t -> (nb, 1, n, n) field coupling E(t)·D'.
        fock_past: optional (k, nb, nspin, n, n) F' at t-k*dt ... t-dt (oldest first).
    """
    points = [fock_start, fock_end]
    nodes = [0.0, 1.0]
    if fock_past is not None and len(fock_past):
        past = fock_past[-2:]
        points = list(past) + points
        nodes = list(np.arange(-len(past), 0, dtype=float)) + nodes
    points = np.asarray(points)
    h1, h2 = (interpolate_fock(points, nodes, c) + field_term(t + c * dt) for c in GAUSS_NODES)
    h_bar = 0.5 * (h1 + h2) + (1j * np.sqrt(3.0) / 12.0 * dt) * (h1 @ h2 - h2 @ h1)
    return _conjugate(exp_hermitian(h_bar, dt), p)


#: Propagators by name (the CLI's ``--propagator``).
PROPAGATORS = {"magnus2": step_magnus2, "etrs": step_etrs, "magnus4": step_magnus4}
