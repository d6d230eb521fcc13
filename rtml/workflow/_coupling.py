r"""Which field polarisations a molecule responds to, decided from one-electron integrals.

A field :math:`E(t)\,\mathbf e` enters the time-dependent Fock matrix in the orthonormal
(Löwdin) basis as (:mod:`rtml.fields`)

.. math::

    F'(t) = F'[P'(t)] + E(t)\,X_{\mathbf e}, \qquad
    X_{\mathbf e} = S^{-1/2}\,(\mathbf e\cdot\mathbf D)\,S^{-1/2}, \qquad
    i\,\frac{dP'}{dt} = [F'(t), P'(t)],

with :math:`D^k_{\mu\nu} = \langle\mu|r_k - O_k|\nu\rangle`. If :math:`X_{\mathbf e} = c\,1`
the field adds :math:`E(t)\,c\,1`, which commutes with every density: the equation of motion,
and so every trajectory, is the field-free one, at any strength and for any field shape
(kick, pulse or drive). That is exactly the case of a field perpendicular to a linear
molecule whose basis has only s functions (H2 and H2+ in 6-31G): every AO product is
centred on the axis, so :math:`\langle\mu|x - O_x|\nu\rangle = (\bar x_{\mu\nu} - O_x)
S_{\mu\nu}` with one :math:`\bar x` for all pairs.

The plan therefore keeps a polarisation **e** only when :math:`X_{\mathbf e}` differs from a
multiple of 1 by more than :data:`COUPLING_ATOL` (:func:`dipole_coupling`). The test needs
only the overlap and the dipole integrals at the equilibrium geometry (no SCF), so Snakemake
can afford it each time it builds its DAG (measured: 0.1 s for the whole ladder, C6H6
included; cached per molecule and basis). The sampled geometries of a diatomic only stretch
it along its axis, so what holds at equilibrium holds for all of them.

Its limit: a non-scalar :math:`X_{\mathbf e}` couples *some* pair of states, not necessarily
the ground state to an excited one. A field forbidden only by the ground state's symmetry
(no occupied-virtual matrix element along **e**) passes this test; none of the ladder's
molecules in 6-31G has such a direction (each Cartesian direction carries an allowed
transition), and the workflow test of the quick config checks the trajectories themselves.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from pyscf import lib

from rtml.chem import build_mole, centre_of_nuclear_charge, dipole_integrals, load_molecule
from rtml.fields import parse_polarization

__all__ = ["COUPLING_ATOL", "dipole_coupling", "coupled_polarizations", "uncoupled_note"]

#: Least :func:`dipole_coupling` (bohr) of a polarisation that couples. Uncoupled directions
#: give exactly 0 or ~1e-16 (rounding); coupled ones 0.7-4.7 bohr for the ladder in 6-31G.
COUPLING_ATOL = 1e-8


def dipole_coupling(overlap: np.ndarray, dipole_ints: np.ndarray, direction) -> float:
    r"""Size of the part of the dipole operator along ``direction`` that can move a density.

    :math:`X_{\mathbf e} = c\,1` holds exactly when :math:`\mathbf e\cdot\mathbf D = c\,S`
    (multiply by :math:`S^{1/2}` on both sides), so the test needs no :math:`S^{-1/2}`:

    .. math::

        r(\mathbf e) = \max_{\mu\nu}\left|\mathbf e\cdot\mathbf D - c\,S\right|_{\mu\nu},
        \qquad c = \frac{\langle S, \mathbf e\cdot\mathbf D\rangle_F}{\langle S, S\rangle_F}

    (c the least-squares multiple; elementwise work only, which keeps DAG building fast on
    a busy host where BLAS threads are expensive).

    Args:
        overlap: (nao, nao) S.
        dipole_ints: (3, nao, nao) :math:`\langle\mu|r_k - O_k|\nu\rangle`, bohr.
        direction: (3,) unit vector **e**.

    Returns:
        r in bohr: zero (to rounding) when the field cannot change any density.
    """
    #: d = sum_k e_k D^k
    d = np.einsum("k,kij->ij", np.asarray(direction, dtype=float), dipole_ints)
    c = float((overlap * d).sum() / (overlap * overlap).sum())
    return float(np.abs(d - c * overlap).max())


@lru_cache(maxsize=None)
def _matrices(molecule: str, basis: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Overlap (nao, nao) and dipole integrals (3, nao, nao) of a molecule (a ladder name or
    a geometry file) at its equilibrium geometry."""
    mol = build_mole(load_molecule(molecule), basis=basis)
    # one thread: these integrals take milliseconds, and starting OpenMP threads on a busy
    # submit host costs ten times more
    with lib.with_omp_threads(1):
        return (mol.intor_symmetric("int1e_ovlp"),
                dipole_integrals(mol, centre_of_nuclear_charge(mol)))


def coupled_polarizations(molecule: str, polarizations, basis: str | None = None) -> list[str]:
    """The ``polarizations`` (config strings: ``x``, ``y``, ``z`` or ``ex,ey,ez``) whose
    field moves ``molecule``'s density, in their order (see the module docstring).

    Args:
        molecule: a ladder molecule name or a geometry file (its equilibrium geometry is used).
        polarizations: polarisation strings, as in the config's ``fields.polarizations``.
        basis: basis set (default: the molecule's own).

    Raises:
        InputError: unknown molecule or basis, malformed polarisation.
    """
    overlap, dipole_ints = _matrices(molecule, basis)
    return [pol for pol in polarizations
            if dipole_coupling(overlap, dipole_ints, parse_polarization(pol)) > COUPLING_ATOL]


def uncoupled_note(molecule: str, polarizations, basis: str | None = None) -> str:
    """``'; polarisations x, y do not couple to h2 in 6-31G'`` for the error messages, or
    ``''`` when all couple."""
    live = coupled_polarizations(molecule, polarizations, basis)
    dead = [p for p in polarizations if p not in live]
    if not dead:
        return ""
    which = basis or load_molecule(molecule).basis
    return (f"; polarisation{'s' if len(dead) > 1 else ''} {', '.join(map(str, dead))} "
            f"do{'' if len(dead) > 1 else 'es'} not couple to {molecule} in {which}")

