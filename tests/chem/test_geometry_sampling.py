"""sample_geometries: determinism, exact distortions, normal-mode properties.

Hessians are HF/STO-3G (cheap); the ladder's equilibrium geometries are not stationary
at that level, which does not matter for these properties.
"""

import numpy as np
import pytest

from rtml import InputError
from rtml.units import ANGSTROM_BOHR
from rtml.chem import (
    bond_angle_deg,
    build_mole,
    canonical_basis,
    converged_scf,
    distinct_angles,
    distinct_bonds,
    finite_difference_hessian,
    load_molecule,
    normal_modes,
    sample_geometries,
)

CHEAP = dict(hessian_xc="hf", hessian_basis="sto-3g")


@pytest.fixture(scope="module")
def h2o():
    return load_molecule("h2o")


@pytest.fixture(scope="module")
def h2o_modes(h2o):
    return normal_modes(h2o, xc="hf", basis="sto-3g")


@pytest.fixture(scope="module")
def h2o_all(h2o):
    """Every candidate plus a few random samples (16 candidates for H2O)."""
    return sample_geometries(h2o, 20, seed=0, **CHEAP)


def _by_id(samples):
    return {s.id: s for s in samples}


def _masses(spec):
    return build_mole(spec, basis="sto-3g").atom_mass_list(isotope_avg=True)


def _dist(pos, i, j):
    return np.linalg.norm(pos[i] - pos[j])


def test_candidate_ids(h2o_all):
    ids = [s.id for s in h2o_all]
    assert ids[0] == "eq"
    assert ids[1:17] == [
        "stretch-b0-m20", "stretch-b0-m10", "stretch-b0-p10", "stretch-b0-p20",
        "bend-a0-m10", "bend-a0-m5", "bend-a0-p5", "bend-a0-p10",
        "mode6-p1", "mode6-m1", "mode6-p2", "mode6-m2",
        "mode7-p1", "mode7-m1", "mode7-p2", "mode7-m2",
    ]  # fmt: skip
    assert ids[17:] == ["random-s0-0", "random-s0-1", "random-s0-2"]
    assert len(set(ids)) == len(ids)


def test_eq_is_first_and_exact(h2o):
    (eq,) = sample_geometries(h2o, 1)
    assert (eq.id, eq.kind) == ("eq", "equilibrium")
    assert np.array_equal(eq.positions_angstrom, h2o.positions_angstrom)


def test_deterministic_selection(h2o):
    kw = dict(kinds=("stretch", "bend"))
    a = sample_geometries(h2o, 4, seed=0, **kw)
    b = sample_geometries(h2o, 4, seed=0, **kw)
    assert [s.id for s in a] == [s.id for s in b]
    for sa, sb in zip(a, b):
        assert np.array_equal(sa.positions_angstrom, sb.positions_angstrom)
    c = sample_geometries(h2o, 4, seed=1, **kw)
    assert [s.id for s in c] != [s.id for s in a]
    assert c[0].id == "eq" and len(c) == 4
    # a larger request from the same seed contains the smaller one
    bigger = {s.id for s in sample_geometries(h2o, 7, seed=0, **kw)}
    assert {s.id for s in a} <= bigger
    # kinds order does not matter
    swapped = sample_geometries(h2o, 4, seed=0, kinds=("bend", "stretch"))
    assert [s.id for s in swapped] == [s.id for s in a]


def test_deterministic_with_modes_and_random(h2o, h2o_all):
    again = sample_geometries(h2o, 20, seed=0, **CHEAP)
    assert [s.id for s in again] == [s.id for s in h2o_all]
    for s1, s2 in zip(again, h2o_all):
        assert np.allclose(s1.positions_angstrom, s2.positions_angstrom, atol=1e-10)
    other = sample_geometries(h2o, 20, seed=3, **CHEAP)
    assert [s.id for s in other][-1] == "random-s3-2"
    assert not np.allclose(other[-1].positions_angstrom, h2o_all[-1].positions_angstrom)


def test_stretch_is_exact(h2o, h2o_all):
    eq = h2o.positions_angstrom
    for tag, factor in [("p10", 1.1), ("m20", 0.8)]:
        pos = _by_id(h2o_all)[f"stretch-b0-{tag}"].positions_angstrom
        assert _dist(pos, 0, 1) == pytest.approx(factor * _dist(eq, 0, 1), rel=1e-12)
        assert _dist(pos, 0, 2) == pytest.approx(_dist(eq, 0, 2), rel=1e-12)  # other O-H kept


@pytest.mark.parametrize("name", ["h2", "lih", "c2h4", "c6h6"])
def test_stretch_other_molecules(name):
    spec = load_molecule(name)
    groups = distinct_bonds(spec.symbols, spec.positions_angstrom)
    # exactly all candidates (more would add random samples, which need a PBE0 Hessian)
    samples = _by_id(sample_geometries(spec, 1 + 4 * len(groups), kinds=("stretch",)))
    for g, group in enumerate(groups):
        i, j = group[0]
        pos = samples[f"stretch-b{g}-p10"].positions_angstrom
        ratio = _dist(pos, i, j) / _dist(spec.positions_angstrom, i, j)
        assert ratio == pytest.approx(1.1, rel=1e-12)
        if spec.natm == 2:  # diatomics: symmetric stretch, midpoint kept
            assert np.allclose(pos.mean(0), spec.positions_angstrom.mean(0), atol=1e-12)


def test_bond_and_angle_classes():
    c2h4 = load_molecule("c2h4")
    bonds = distinct_bonds(c2h4.symbols, c2h4.positions_angstrom)
    assert sorted(len(g) for g in bonds) == [1, 4]  # C=C, 4 C-H
    angles = distinct_angles(c2h4.symbols, c2h4.positions_angstrom)
    assert sorted(len(g) for g in angles) == [2, 4]  # H-C-H, 4 H-C=C
    c6h6 = load_molecule("c6h6")
    assert sorted(len(g) for g in distinct_bonds(c6h6.symbols, c6h6.positions_angstrom)) == [6, 6]
    assert distinct_bonds(["H", "H"], [[0, 0, 0], [0, 0, 1.1]]) == [[(0, 1)]]  # long H2+


def test_bend_is_exact(h2o, h2o_all):
    eq = h2o.positions_angstrom
    theta = bond_angle_deg(eq, 1, 0, 2)
    for tag, delta in [("p5", 5.0), ("m10", -10.0)]:
        pos = _by_id(h2o_all)[f"bend-a0-{tag}"].positions_angstrom
        assert bond_angle_deg(pos, 1, 0, 2) == pytest.approx(theta + delta, abs=1e-9)
        for h in (1, 2):  # bond lengths kept
            assert _dist(pos, 0, h) == pytest.approx(_dist(eq, 0, h), rel=1e-12)


def test_bend_other_molecules():
    spec = load_molecule("c2h4")
    groups = distinct_angles(spec.symbols, spec.positions_angstrom)
    samples = _by_id(sample_geometries(spec, 1 + 4 * len(groups), kinds=("bend",)))
    for g, group in enumerate(groups):
        i, c, k = group[0]
        theta = bond_angle_deg(spec.positions_angstrom, i, c, k)
        pos = samples[f"bend-a{g}-p5"].positions_angstrom
        assert bond_angle_deg(pos, i, c, k) == pytest.approx(theta + 5.0, abs=1e-9)


def test_modes_use_lowest_frequencies_and_turning_points(h2o, h2o_modes, h2o_all):
    m = h2o_modes
    assert list(m.index) == [6, 7, 8]
    assert np.all(np.diff(m.frequencies_cm) > 0)
    samples = _by_id(h2o_all)
    sqrt_m = np.sqrt(m.masses_au)[:, None]
    for k in (0, 1):  # the two lowest of three modes
        for v, sign, tag in [(1, 1, "p1"), (2, -1, "m2")]:
            pos = samples[f"mode{m.index[k]}-{tag}"].positions_angstrom
            dq_mw = (pos - h2o.positions_angstrom) * ANGSTROM_BOHR * sqrt_m  # bohr sqrt(me)
            q = np.sum(dq_mw * m.modes_mw[k])
            assert q == pytest.approx(sign * np.sqrt((2 * v + 1) / m.omega_au[k]), rel=1e-5)
            assert np.allclose(dq_mw, q * m.modes_mw[k], atol=1e-4 * abs(q))  # pure mode k
    assert not any(s.startswith("mode8") for s in samples)


def test_mode_displacements_keep_centre_of_mass_and_orientation(h2o, h2o_all):
    masses = _masses(h2o)
    for s in h2o_all:
        if s.kind in ("normal_mode", "random"):
            disp = s.positions_angstrom - h2o.positions_angstrom
            assert np.allclose(masses @ disp, 0.0, atol=1e-10)  # no translation
            torque = np.einsum("a,ai->i", masses, np.cross(h2o.positions_angstrom, disp))
            assert np.allclose(torque, 0.0, atol=1e-8)  # Eckart: no rigid rotation


def test_degenerate_modes_methane():
    ch4 = load_molecule("ch4")
    samples = sample_geometries(ch4, 15, kinds=("normal_mode",), **CHEAP)
    modes = normal_modes(ch4, xc="hf", basis="sto-3g")
    assert [s.id.split("-")[0] for s in samples[1:13:4]] == ["mode6", "mode7", "mode8"]
    assert [s.id for s in samples[13:]] == ["random-s0-0", "random-s0-1"]
    assert np.ptp(modes.frequencies_cm[:3]) < 1.0  # triply degenerate lowest block
    masses = _masses(ch4)
    for s in samples[1:]:
        assert np.allclose(masses @ (s.positions_angstrom - ch4.positions_angstrom), 0, atol=1e-10)


def test_canonical_basis_is_rotation_invariant():
    rng = np.random.default_rng(1)
    v = np.linalg.qr(rng.normal(size=(9, 3)))[0].T  # 3 orthonormal vectors in R^9
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    assert np.allclose(canonical_basis(v), canonical_basis(rot @ v), atol=1e-12)
    b = canonical_basis(v)
    assert np.allclose(b @ b.T, np.eye(3), atol=1e-12)


def test_diatomics_have_one_mode_and_h2p_uses_fd_hessian():
    h2p = load_molecule("h2p")
    samples = sample_geometries(h2p, 12, seed=0, **CHEAP)
    ids = [s.id for s in samples]
    assert ids[:9] == [
        "eq", "stretch-b0-m20", "stretch-b0-m10", "stretch-b0-p10", "stretch-b0-p20",
        "mode5-p1", "mode5-m1", "mode5-p2", "mode5-m2",
    ]  # fmt: skip
    assert ids[9:] == ["random-s0-0", "random-s0-1", "random-s0-2"]
    for s in samples[5:]:
        d = s.positions_angstrom - h2p.positions_angstrom
        assert np.allclose(d[0], -d[1], atol=1e-12)  # homonuclear: COM kept
        assert np.allclose(d[:, :2], 0, atol=1e-10)  # along the bond only


def test_fd_hessian_matches_analytic(h2o):
    mf = converged_scf(build_mole(h2o, basis="sto-3g"), "hf")
    assert np.allclose(finite_difference_hessian(mf), mf.Hessian().kernel(), atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_samples=0), "n_samples must be a positive integer"),
        (dict(n_samples=3, kinds=("twist",)), "unknown sample kind 'twist'"),
        (dict(n_samples=3, seed=-1), "seed must be a non-negative integer"),
    ],
)
def test_bad_arguments(h2o, kwargs, match):
    with pytest.raises(InputError, match=match):
        sample_geometries(h2o, **kwargs)
