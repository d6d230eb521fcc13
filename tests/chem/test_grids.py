"""molecule_frame_grids: a Becke grid that turns (and inverts) with the molecule."""

import numpy as np
import pytest
from pyscf.dft import gen_grid
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from rtml.chem import build_mole, load_molecule, molecule_frame, molecule_frame_grids


def _turned(mol, q):
    return mol.set_geom_(mol.atom_coords(unit="Angstrom") @ q.T, unit="Angstrom", inplace=False)


def _mismatch(points_a, weights_a, points_b, weights_b) -> tuple[float, float]:
    """Largest distance (bohr) from a point of one grid to the nearest point of the other, and
    largest weight difference of those pairs relative to the largest weight. Points that
    carry nothing (PySCF's padding, Becke weights below 1e-14 of the largest) are left out."""
    keep_a, keep_b = weights_a > 1e-14 * weights_a.max(), weights_b > 1e-14 * weights_b.max()
    points_a, weights_a, points_b, weights_b = points_a[keep_a], weights_a[keep_a], points_b[keep_b], weights_b[keep_b]
    if len(points_a) != len(points_b):
        return np.inf, np.inf
    dist, idx = cKDTree(points_b).query(points_a)
    return float(dist.max()), float(np.abs(weights_a - weights_b[idx]).max() / weights_b.max())


def _lab_grid(mol, level):
    grids = gen_grid.Grids(mol)
    grids.level = level
    return grids.build()


@pytest.mark.parametrize("name", ["h2o", "nh3", "c2h4"])
def test_the_grid_of_a_turned_molecule_is_the_turned_grid(name):
    """Points and weights of the turned (and the inverted-and-turned) molecule's grid are the
    turned points and the same weights, to rounding; PySCF's laboratory grid is not."""
    mol = build_mole(load_molecule(name))
    base = molecule_frame_grids(mol, 1)
    lab = _lab_grid(mol, 1)
    for i, q in enumerate(Rotation.random(2, random_state=7).as_matrix()):
        q = q if i == 0 else -q                                  # one proper, one improper
        moved = _turned(mol, q)
        got = molecule_frame_grids(moved, 1)
        dist, weight = _mismatch(got.coords, got.weights, base.coords @ q.T, base.weights)
        assert dist < 1e-8 and weight < 1e-9          # outer shells lie ~20 bohr out
        lab_moved = _lab_grid(moved, 1)
        assert _mismatch(lab_moved.coords, lab_moved.weights, lab.coords @ q.T, lab.weights)[0] > 1e-2


def test_frame_is_covariant_and_linear_molecules_are_recognised():
    """The frame of a turned molecule is the turned frame (up to the sign changes that map
    Lebedev sets onto themselves); a diatomic is linear; one atom has no frame."""
    mol = build_mole(load_molecule("h2o"))
    frame, linear = molecule_frame(mol.atom_coords(), mol.atom_charges())
    assert not linear and np.allclose(frame.T @ frame, np.eye(3), atol=1e-14)
    q = Rotation.random(random_state=3).as_matrix()
    turned, _ = molecule_frame(mol.atom_coords() @ q.T, mol.atom_charges())
    assert np.allclose(turned, q @ frame, atol=1e-12)
    inverted, _ = molecule_frame(-mol.atom_coords(), mol.atom_charges())
    assert np.allclose(np.abs(inverted.T @ frame), np.eye(3), atol=1e-12)
    lih = build_mole(load_molecule("lih"))
    axis_frame, linear = molecule_frame(lih.atom_coords(), lih.atom_charges())
    bond = lih.atom_coords()[1] - lih.atom_coords()[0]
    assert linear and abs(abs(axis_frame[:, 0] @ bond) - np.linalg.norm(bond)) < 1e-12
    assert molecule_frame(np.zeros((1, 3)), np.array([1.0])) == (None, False)


def test_a_linear_molecule_integrates_what_an_axial_average_would():
    """LiH's grid is PySCF's averaged over turns about the bond: the quadrature of a product of
    four AOs times an axially symmetric weight does not depend on how the molecule is turned."""
    mol = build_mole(load_molecule("lih"))

    def quartic(m):
        grids = molecule_frame_grids(m, 1)
        ao = m.eval_gto("GTOval_sph", grids.coords)
        axis = m.atom_coords()[1] - m.atom_coords()[0]
        rel = grids.coords - m.atom_coords()[0]
        radial = np.linalg.norm(np.cross(rel, axis / np.linalg.norm(axis)), axis=1)
        weight = grids.weights * np.exp(-radial)                   # axially symmetric
        return np.einsum("g,gi,gj,gk,gl->ijkl", weight, ao, ao, ao, ao, optimize=True)

    from rtml.model import BasisLayout
    layout = BasisLayout.from_mole(mol)
    ref = quartic(mol)
    q = Rotation.random(random_state=5).as_matrix()
    d = layout.ao_rotation(q)
    got = quartic(_turned(mol, q))
    want = np.einsum("ia,jb,kc,ld,abcd->ijkl", d, d, d, d, ref, optimize=True)
    assert np.abs(got - want).max() < 1e-12 * np.abs(ref).max()
