"""Basis layout, AO-order convention, exact CG codec and the learned density encoder/decoder.

PySCF runs are tiny RHF calculations on committed ladder geometries (H2, LiH, H2O; H2O with
6-31G* for d shells), cached per module.
"""

import numpy as np
import pytest
import torch
from pyscf import scf

from rtml.chem import LADDER, basis_metadata, build_mole, load_molecule
from rtml.model import (
    BasisLayout,
    DensityDecoder,
    DensityEncoder,
    decompose_density,
    density_irreps,
    float64_default,
    produced_irreps,
    pyscf_to_e3nn,
    recompose_density,
    wigner_D_from_matrix,
)

LATENT = "16x0e+8x1o+8x1e+4x2e"
NBF_631G = {"h2p": 4, "h2": 4, "lih": 11, "h2o": 13, "nh3": 15, "ch4": 17, "c2h4": 26, "c6h6": 66}


def _rhf(name, basis="6-31G", positions_angstrom=None):
    spec = load_molecule(name)
    mol = build_mole(spec, basis=basis, positions_angstrom=positions_angstrom)
    mf = scf.RHF(mol)
    mf.conv_tol, mf.conv_tol_grad = 1e-12, 1e-8
    mf.kernel()
    assert mf.converged
    return mol, mf.make_rdm1()


@pytest.fixture(scope="module")
def densities():
    """name -> (layout, complex Hermitian P with a small imaginary part, positions Å)."""
    rng = np.random.default_rng(7)
    out = {}
    for name, basis in (("h2", "6-31G"), ("lih", "6-31G"), ("h2o", "6-31G"), ("h2o*", "6-31G*")):
        mol, dm = _rhf(name.rstrip("*"), basis)
        a = 0.05 * rng.normal(size=dm.shape)
        out[name] = (BasisLayout.from_mole(mol), dm + 1j * (a - a.T),
                     load_molecule(name.rstrip("*")).positions_angstrom)
    return out


@pytest.fixture(scope="module")
def codec64():
    """Encoder and decoder built once in float64; tests copy them with ``as_dtype``."""
    with float64_default():
        return DensityEncoder(LATENT), DensityDecoder(LATENT)


# ---------------------------------------------------------------------------- layout
def test_layout_matches_dataset_metadata_for_the_ladder():
    for name in LADDER:
        spec = load_molecule(name)
        mol = build_mole(spec)
        atom, ang, mag = basis_metadata(mol)   # what the dataset stores
        layout = BasisLayout.from_metadata(atom, ang, mag, spec.atomic_numbers)
        assert layout.nbf == NBF_631G[name]
        assert layout.shells == BasisLayout.from_mole(mol).shells
        assert layout.n_edges == spec.natm * (spec.natm - 1) // 2
    h2o = BasisLayout.from_mole(build_mole(load_molecule("h2o")))
    assert [(s.atom, s.l, s.rank, s.z) for s in h2o.shells] == [
        (0, 0, 0, 8), (0, 0, 1, 8), (0, 0, 2, 8), (0, 1, 0, 8), (0, 1, 1, 8),
        (1, 0, 0, 1), (1, 0, 1, 1), (2, 0, 0, 1), (2, 0, 1, 1)]
    assert h2o.shells[3].slice == slice(3, 6) and h2o.shells[4].slice == slice(6, 9)
    assert len(h2o.node_pairs) == 15 + 3 + 3 and len(h2o.edge_pairs) == 10 + 10 + 4


def test_layout_rejects_bad_metadata():
    z = [8]
    with pytest.raises(ValueError, match=r"expected m = \(1, -1, 0\)"):
        BasisLayout.from_metadata([0, 0, 0], [1, 1, 1], [-1, 0, 1], z)   # e3nn-like, not PySCF
    with pytest.raises(ValueError, match="l=3"):
        BasisLayout.from_metadata([0] * 7, [3] * 7, list(range(-3, 4)), z)
    with pytest.raises(ValueError, match="basis_atom_index"):
        BasisLayout.from_metadata([0, 1], [0, 0], [0, 0], z)
    with pytest.raises(ValueError, match="do not form"):
        BasisLayout.from_metadata([0, 0], [1, 1], [1, -1], z)           # truncated p shell


def test_change_of_basis_matrices():
    """U_0 = U_1 = 1 (PySCF p order is e3nn's x, y, z); U_2 is orthogonal but no permutation."""
    np.testing.assert_array_equal(pyscf_to_e3nn(1), np.eye(3))
    u2 = pyscf_to_e3nn(2)
    np.testing.assert_allclose(u2 @ u2.T, np.eye(5), atol=1e-15)
    assert np.any(np.isclose(np.abs(u2), 0.5))            # dz2 and dx2-y2 mix
    with pytest.raises(ValueError, match="l=3"):
        pyscf_to_e3nn(3)


@pytest.mark.parametrize("det", [1, -1], ids=["proper", "improper"])
def test_ao_order_convention_against_pyscf(det, random_rotations):
    r"""States the convention: P(R r) = R_ao P(r) R_ao^T, R_ao = (+)_s U_l^T D^l(R) U_l.

    Integrals are exact (1e-12); the RHF density at the rotated geometry agrees to SCF
    accuracy. 6-31G* puts a d shell on O, so the l=2 change of basis is tested as well.
    """
    rotation = random_rotations(2)[0 if det == 1 else 1].numpy()
    spec = load_molecule("h2o")
    mol, dm = _rhf("h2o", "6-31G*")
    rotated = spec.positions_angstrom @ rotation.T
    mol_r, dm_r = _rhf("h2o", "6-31G*", rotated)
    layout = BasisLayout.from_mole(mol)
    r_ao = layout.ao_rotation(rotation)
    np.testing.assert_allclose(r_ao @ r_ao.T, np.eye(layout.nbf), atol=1e-13)
    for integral in ("int1e_ovlp", "int1e_kin", "int1e_nuc"):
        np.testing.assert_allclose(r_ao @ mol.intor(integral) @ r_ao.T, mol_r.intor(integral),
                                   atol=1e-12, err_msg=integral)
    np.testing.assert_allclose(r_ao @ dm @ r_ao.T, dm_r, atol=1e-6)
    # the same with a naive d ordering (identity for l=2) fails: the convention matters
    naive = layout.ao_rotation(rotation)
    for sh in layout.shells:
        if sh.l == 2:
            u = pyscf_to_e3nn(2)
            naive[sh.slice, sh.slice] = u @ naive[sh.slice, sh.slice] @ u.T
    assert np.abs(naive @ mol.intor("int1e_ovlp") @ naive.T - mol_r.intor("int1e_ovlp")).max() > 1e-2


# ---------------------------------------------------------------------------- exact codec
def test_cg_irreps_of_shell_pairs():
    """s-s -> 0e, s-p -> 1o, s-d -> 2e, p-p -> 0e+1e+2e, p-d -> 1o+2o+3o, d-d -> 0e..4e."""
    one_atom = BasisLayout.from_metadata([0] * 9, [0, 1, 1, 1, 2, 2, 2, 2, 2],
                                         [0, 1, -1, 0, -2, -1, 0, 1, 2], [6])
    node, edge = density_irreps(one_atom)
    assert str(node) == ("2x0e+2x1o+2x2e+2x0e+2x1e+2x2e+2x1o+2x2o+2x3o"
                         "+2x0e+2x1e+2x2e+2x3e+2x4e")
    assert edge.dim == 0
    assert str(produced_irreps(1)) == "1x0e+1x1o+1x1e+1x2e"


@pytest.mark.parametrize("name", ["h2", "lih", "h2o", "h2o*"])
def test_cg_round_trip_is_exact(densities, name):
    layout, dm, _ = densities[name]
    x = decompose_density(dm, layout)
    assert x.node.shape == (x.node_irreps.dim,) and x.edge.shape == (x.edge_irreps.dim,)
    back = recompose_density(x, layout)
    assert back.dtype == torch.complex128
    np.testing.assert_allclose(back.numpy(), dm, atol=1e-12, rtol=0)
    # batched, and the inverse direction: decompose(recompose(c)) == c on random features
    batch = torch.randn(3, 2, x.node_irreps.dim, dtype=torch.float64)
    edge = torch.randn(3, 2, x.edge_irreps.dim, dtype=torch.float64)
    p = recompose_density(x._replace(node=batch, edge=edge), layout)
    torch.testing.assert_close(p, p.conj().transpose(-1, -2), atol=0, rtol=0)
    y = decompose_density(p, layout)
    # same-shell blocks keep only the Hermitian components (Re: even L, Im: odd L)
    torch.testing.assert_close(recompose_density(y, layout), p, atol=1e-12, rtol=0)
    torch.testing.assert_close(y.edge, edge, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", ["lih", "h2o*"])
def test_cg_decomposition_is_equivariant(densities, name, random_rotations):
    layout, dm, _ = densities[name]
    p = torch.as_tensor(dm)
    x = decompose_density(p, layout)
    for rotation in random_rotations(2):
        r_ao = layout.ao_rotation(rotation).to(p.dtype)
        y = decompose_density(r_ao @ p @ r_ao.T, layout)
        torch.testing.assert_close(y.node, x.node @ wigner_D_from_matrix(x.node_irreps, rotation).T,
                                   atol=1e-12, rtol=0)
        torch.testing.assert_close(y.edge, x.edge @ wigner_D_from_matrix(x.edge_irreps, rotation).T,
                                   atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------- learned codec
def _rotate_density(layout):
    def rotate(rotation, p):
        r_ao = layout.ao_rotation(rotation).to(p.dtype)
        return r_ao @ p @ r_ao.T
    return rotate


def _batch(densities, name, dtype, b=2):
    """(B, n_spin=2, n, n) densities: the RHF one and a random Hermitian one; positions."""
    layout, dm, pos = densities[name]
    n = layout.nbf
    a = torch.randn(n, n, dtype=torch.complex128)
    dm = torch.as_tensor(dm)
    p = torch.stack([dm, 0.5 * dm + (a + a.conj().T) / 4])
    p = p.expand(b, 2, n, n).to({torch.float64: torch.complex128,
                                  torch.float32: torch.complex64}[dtype])
    pos = torch.as_tensor(pos).expand(b, -1, -1) + 0.05 * torch.randn(b, *pos.shape, dtype=torch.float64)
    return layout, p, pos.to(dtype)


@pytest.mark.parametrize("name", ["h2", "h2o"])
def test_encoder_equivariance(densities, codec64, name, dtype, tol, as_dtype, assert_equivariant):
    enc = as_dtype(codec64[0], dtype)
    layout, p, pos = _batch(densities, name, dtype)
    latent = enc(p, layout, pos)
    assert latent.node.shape == (2, 2, layout.n_atoms, enc.irreps_out.dim)
    assert latent.edge.shape == (2, 2, layout.n_edges, enc.irreps_out.dim)
    assert latent.node.dtype == dtype
    assert_equivariant(lambda q, x: tuple(enc(q, layout, x)), [p, pos],
                       [_rotate_density(layout), "cartesian_points"],
                       [enc.irreps_out, enc.irreps_out], atol=tol)


def test_encoder_equivariance_with_pyscf_rotated_geometry(densities, codec64, random_rotations):
    """End to end: the RHF density recomputed at the rotated geometry (SCF accuracy)."""
    enc = codec64[0]
    layout, _, pos = densities["h2o"]
    rotation = random_rotations(2)[1]
    pos_r = pos @ rotation.numpy().T
    _, dm = _rhf("h2o", "6-31G")
    _, dm_r = _rhf("h2o", "6-31G", pos_r)
    lat = enc(torch.as_tensor(dm)[None, None], layout, torch.as_tensor(pos)[None])
    lat_r = enc(torch.as_tensor(dm_r)[None, None], layout, torch.as_tensor(pos_r)[None])
    d = wigner_D_from_matrix(enc.irreps_out, rotation)
    torch.testing.assert_close(lat_r.node, lat.node @ d.T, atol=1e-6, rtol=0)
    torch.testing.assert_close(lat_r.edge, lat.edge @ d.T, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["lih", "h2o"])
def test_decoder_equivariance_and_hermiticity(densities, codec64, name, dtype, tol, as_dtype,
                                              assert_equivariant):
    enc, dec = (as_dtype(m, dtype) for m in codec64)
    layout, p, pos = _batch(densities, name, dtype)
    node, edge = enc(p, layout, pos)
    out = dec((node, edge), layout, pos)
    assert out.shape == p.shape and out.dtype == p.dtype
    torch.testing.assert_close(out, out.conj().transpose(-1, -2), atol=0, rtol=0)
    assert_equivariant(lambda h, e, x: dec((h, e), layout, x), [node, edge, pos],
                       [dec.irreps_in, dec.irreps_in, "cartesian_points"],
                       [_rotate_density(layout)], atol=tol)


def test_spin_is_a_batch_axis(densities, codec64):
    enc, dec = codec64
    layout, p, pos = _batch(densities, "h2o", torch.float64)
    both = enc(p, layout, pos)
    for s in range(2):
        one = enc(p[:, s:s + 1], layout, pos)
        torch.testing.assert_close(one.node[:, 0], both.node[:, s], atol=1e-14, rtol=0)
        torch.testing.assert_close(one.edge[:, 0], both.edge[:, s], atol=1e-14, rtol=0)
        torch.testing.assert_close(dec(one, layout, pos)[:, 0], dec(both, layout, pos)[:, s],
                                   atol=1e-14, rtol=0)


def test_parameters_do_not_depend_on_the_molecule(densities, codec64):
    """One encoder/decoder serves nbf 4 (H2) and nbf 66 (C6H6) with the same parameters."""
    enc, dec = codec64
    counts = [sum(p.numel() for p in m.parameters()) for m in (enc, dec)]
    keys = [list(m.state_dict()) for m in (enc, dec)]
    spec = load_molecule("c6h6")
    benzene = BasisLayout.from_mole(build_mole(spec))
    for layout, pos in ((densities["h2"][0], densities["h2"][2]), (benzene, spec.positions_angstrom)):
        n = layout.nbf
        a = torch.randn(1, 1, n, n, dtype=torch.complex128)
        pos = torch.as_tensor(pos)[None]
        out = dec(enc(a + a.conj().transpose(-1, -2), layout, pos), layout, pos)
        assert out.shape == (1, 1, n, n)
    assert [sum(p.numel() for p in m.parameters()) for m in (enc, dec)] == counts
    assert [list(m.state_dict()) for m in (enc, dec)] == keys
    assert counts == [sum(p.numel() for p in DensityEncoder(LATENT).parameters())] * 2


def test_repr_and_irreps_validation():
    enc = DensityEncoder(LATENT)
    assert repr(enc).startswith("DensityEncoder(2x0e+2x1o+2x1e+2x2e -> 16x0e+8x1o+8x1e+4x2e")
    assert repr(DensityDecoder(LATENT)).startswith("DensityDecoder(16x0e+8x1o+8x1e+4x2e -> ")
    with pytest.raises(ValueError, match=r"irreps_latent='16x0e\+8x1o\+8x1e' lacks 2e"):
        DensityEncoder("16x0e+8x1o+8x1e")
    with pytest.raises(ValueError, match="lacks 2o, 3o, 3e, 4e"):
        DensityDecoder(LATENT, lmax_basis=2)
    with pytest.raises(ValueError, match="repeats 0e"):
        DensityEncoder("8x0e+8x1o+8x0e+8x1e+4x2e")
    with pytest.raises(ValueError, match="not a valid irreps"):
        DensityEncoder("lots of scalars")


def test_layout_beyond_the_codec_raises(densities, codec64):
    enc = codec64[0]
    layout, dm, pos = densities["h2o*"]                                  # has a d shell
    with pytest.raises(ValueError, match="lmax_basis=1"):
        enc(torch.as_tensor(dm)[None, None], layout, torch.as_tensor(pos)[None])
    layout, dm, pos = densities["h2o"]
    with pytest.raises(ValueError, match="positions_angstrom"):
        enc(torch.as_tensor(dm)[None, None], layout, torch.as_tensor(pos))
    with pytest.raises(ValueError, match="density must have shape"):
        enc(torch.as_tensor(dm)[None], layout, torch.as_tensor(pos)[None])


def test_d_shells_with_lmax_basis_2(densities, assert_equivariant):
    latent = "8x0e+4x1o+4x1e+4x2o+4x2e+2x3o+2x3e+2x4e"
    with float64_default():
        enc, dec = DensityEncoder(latent, lmax_basis=2), DensityDecoder(latent, lmax_basis=2)
    layout, p, pos = _batch(densities, "h2o*", torch.float64, b=1)
    assert_equivariant(lambda q, x: dec(enc(q, layout, x), layout, x), [p, pos],
                       [_rotate_density(layout), "cartesian_points"],
                       [_rotate_density(layout)], atol=1e-10)


def test_gradients_reach_parameters_and_density(densities, codec64, as_dtype):
    enc, dec = (as_dtype(m, torch.float32) for m in codec64)
    layout, p, pos = _batch(densities, "h2o", torch.float32)
    p = p.clone().requires_grad_(True)
    loss = (dec(enc(p, layout, pos), layout, pos) - p.detach()).abs().pow(2).sum()
    loss.backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()
    for module in (enc, dec):
        for name, param in module.named_parameters():
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
