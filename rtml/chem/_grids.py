r"""Integration grids that turn with the molecule.

PySCF's Becke grids place each atom's radial × Lebedev points in the laboratory's
orientation, so a quadrature over them is not exactly rotation covariant: turning the
molecule turns the integrand but not the points. That is harmless for an SCF energy, but the
XC kernel's low-density tail (large :math:`f_{xc}`, few points) makes LiH's kernel response on
PySCF's level-1 grid differ by 14 % (median of 5 random turns, Frobenius norm) between a
molecule and its turned copy (H2O: 1e-4).

:func:`molecule_frame_grids` orients every atom's point set in a frame built from the atoms
themselves, so the grid of a turned (or inverted) molecule is the turned grid. The frame is
that of the first two atoms, in input order, that are off the centre of nuclear charge and
not collinear with it:

.. math::

    \mathbf e_1 = \frac{\mathbf a}{|\mathbf a|},\quad
    \mathbf e_3 = \frac{\mathbf a\times\mathbf b}{|\mathbf a\times\mathbf b|},\quad
    \mathbf e_2 = \mathbf e_3\times\mathbf e_1,\qquad
    \mathbf a = \mathbf r_i - \mathbf c,\ \mathbf b = \mathbf r_j - \mathbf c,

and an offset :math:`\mathbf u` of PySCF's atomic grid becomes :math:`E\mathbf u` with
:math:`E = [\mathbf e_1\,\mathbf e_2\,\mathbf e_3]`. Under a rotation :math:`Q` the frame
becomes :math:`QE`; under inversion it becomes :math:`E\,\mathrm{diag}(-1,-1,1)`, a sign change
that maps every Lebedev set onto itself (Lebedev sets have the full octahedral symmetry), as is
the inversion of an atom-centred set. Becke's partition depends on distances only, so the
points and weights are covariant exactly.

A linear molecule has no second direction. Its grid is the average of ``n_turns`` copies
turned about the axis by :math:`\tfrac{\pi}{2}\,k/n_{\rm turns}`: an integrand made of four
basis functions of angular momentum ≤ ℓ and an axially symmetric density varies with the
turn angle α only through :math:`e^{i m \alpha}`, :math:`|m| \le 4\ell`, and the octahedral symmetry
leaves only multiples of 4, which ``n_turns = ℓ + 1`` copies average exactly. A single atom
keeps PySCF's grid.
"""

from __future__ import annotations

import numpy as np
from pyscf.dft import gen_grid
from scipy.spatial.transform import Rotation

#: a direction is "off the centre" / two directions are "not collinear" beyond these (bohr, sine)
_OFF_CENTRE_BOHR = 1e-6
_NOT_COLLINEAR = 1e-6

__all__ = ["molecule_frame", "molecule_frame_grids"]


def molecule_frame(coords_bohr: np.ndarray, charges: np.ndarray) -> tuple[np.ndarray | None, bool]:
    r"""The molecule's own frame :math:`E` (columns e1, e2, e3) and whether it is linear.

    Returns ``(E, False)`` for a molecule with two non-collinear atom directions, ``(E, True)``
    for a linear one (e1 along the axis, e2 and e3 an arbitrary completion), and
    ``(None, False)`` for a single atom.
    """
    coords = np.asarray(coords_bohr, dtype=float)
    charges = np.asarray(charges, dtype=float)
    centre = charges @ coords / charges.sum()
    offsets = coords - centre
    norms = np.linalg.norm(offsets, axis=1)
    off = np.flatnonzero(norms > _OFF_CENTRE_BOHR)
    if off.size == 0:
        return None, False
    e1 = offsets[off[0]] / norms[off[0]]
    for j in off[1:]:
        normal = np.cross(e1, offsets[j] / norms[j])
        if np.linalg.norm(normal) > _NOT_COLLINEAR:
            e3 = normal / np.linalg.norm(normal)
            return np.stack([e1, np.cross(e3, e1), e3], axis=1), False
    # linear: complete e1 with the laboratory axis least parallel to it
    helper = np.eye(3)[np.argmin(np.abs(e1))]
    e2 = helper - (helper @ e1) * e1
    e2 /= np.linalg.norm(e2)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1), True


class _OrientedGrids(gen_grid.Grids):
    """PySCF's grids with each atom's offsets turned by every frame of ``frames`` (3x3
    matrices, columns the frame's axes), the copies' weights shared equally."""

    _keys = gen_grid.Grids._keys | {"frames"}        # PySCF's sanity check knows the attribute

    def __init__(self, mol, frames):
        super().__init__(mol)
        self.frames = frames

    def gen_atomic_grids(self, mol, *args, **kwargs):
        table = super().gen_atomic_grids(mol, *args, **kwargs)
        n = len(self.frames)
        return {symb: (np.concatenate([offsets @ e.T for e in self.frames]),
                       np.concatenate([weights / n] * n))
                for symb, (offsets, weights) in table.items()}


def molecule_frame_grids(mol, level: int):
    """PySCF's Becke grid of ``level`` for ``mol``, with every atom's points oriented in the
    molecule's own frame (:func:`molecule_frame`), so that it turns with the molecule.

    Returns a built ``pyscf.dft.gen_grid.Grids``; same radial and angular sizes as PySCF's
    (``n_turns`` times the points for a linear molecule).
    """
    frame, linear = molecule_frame(mol.atom_coords(), mol.atom_charges())
    if frame is None:
        frames = [np.eye(3)]
    elif linear:
        n_turns = int(max(mol.bas_angular(b) for b in range(mol.nbas))) + 1
        angles = 0.5 * np.pi * np.arange(n_turns) / n_turns
        frames = list(Rotation.from_rotvec(angles[:, None] * frame[:, 0]).as_matrix() @ frame)
    else:
        frames = [frame]
    grids = _OrientedGrids(mol, frames)
    grids.level = int(level)
    return grids.build()
