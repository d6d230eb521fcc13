"""GeometryEncoder: E(3) equivariance, invariance of the pooled embedding, permutations."""

import pytest
import torch

from rtml.chem import load_molecule
from rtml.model import float64_default
from rtml.model import GeometryEncoder, RadialBasis
from rtml.units import ANGSTROM_BOHR

IRREPS_OUT = "32x0e+16x1o+8x2e"


@pytest.fixture(scope="module")
def encoder64():
    """Built once in float64; tests copy it with ``as_dtype``."""
    with float64_default():
        return GeometryEncoder(IRREPS_OUT, n_elements=10)


@pytest.fixture(scope="module")
def methane():
    spec = load_molecule("ch4")
    pos = torch.as_tensor(spec.positions_angstrom, dtype=torch.float64)
    return pos, torch.as_tensor(spec.atomic_numbers)


def _batch(methane, dtype, b=2):
    pos, z = methane
    pos = pos.expand(b, -1, -1) + 0.1 * torch.randn(b, *pos.shape, dtype=torch.float64)
    return pos.to(dtype), z.expand(b, -1)


def test_repr_irreps_and_shapes(encoder64, methane, as_dtype):
    enc = as_dtype(encoder64, torch.float32)
    assert repr(enc).startswith("GeometryEncoder(10x0e -> 32x0e+16x1o+8x2e")
    assert str(enc.irreps_in) == "10x0e" and str(enc.irreps_out) == IRREPS_OUT
    assert str(enc.irreps_sh) == "1x0e+1x1o+1x2e"
    pos, z = _batch(methane, torch.float32, b=3)
    out = enc(pos, z)
    assert out.node.shape == (3, 5, enc.irreps_out.dim)
    assert out.invariant.shape == (3, 64)
    assert out.edge_radial.shape == (3, 5, 5, 8) and out.distance_bohr.shape == (3, 5, 5)
    assert out.node.dtype == torch.float32
    assert torch.all(out.edge_radial[:, range(5), range(5)] == 0)
    # 1-D atomic numbers broadcast over the batch
    torch.testing.assert_close(enc(pos, z[0]).node, out.node)


def test_equivariance_and_translation_invariance(encoder64, methane, dtype, tol, as_dtype,
                                                 assert_equivariant):
    """node -> D(R) node, invariant / radial / distances unchanged, under O(3) x translations."""
    enc = as_dtype(encoder64, dtype)
    pos, z = _batch(methane, dtype)
    assert_equivariant(lambda p: tuple(enc(p, z)), [pos], ["cartesian_points"],
                       [enc.irreps_out, None, None, None], atol=tol)


def test_permutation_equivariance(encoder64, methane, dtype, tol, as_dtype):
    enc = as_dtype(encoder64, dtype)
    pos, z = _batch(methane, dtype)
    perm = torch.tensor([3, 0, 4, 2, 1])
    out, out_p = enc(pos, z), enc(pos[:, perm], z[:, perm])
    close = dict(atol=tol, rtol=0)
    torch.testing.assert_close(out_p.node, out.node[:, perm], **close)
    torch.testing.assert_close(out_p.invariant, out.invariant, **close)
    torch.testing.assert_close(out_p.edge_radial, out.edge_radial[:, perm][:, :, perm], **close)


def test_distances_in_bohr_and_cutoff(encoder64, as_dtype):
    """Positions are Ångström; atoms beyond r_cut_bohr do not see each other."""
    enc = as_dtype(encoder64, torch.float64)
    z = torch.tensor([[1, 8]])
    far = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 6.0]]], dtype=torch.float64)  # 11.3 bohr
    out = enc(far, z)
    assert out.distance_bohr[0, 0, 1].item() == pytest.approx(6.0 * ANGSTROM_BOHR)
    alone_h = enc(far[:, :1], z[:, :1]).node
    alone_o = enc(far[:, 1:], z[:, 1:]).node
    torch.testing.assert_close(out.node, torch.cat([alone_h, alone_o], dim=1), atol=1e-14, rtol=0)
    near = far * 0.2
    assert (enc(near, z).node - out.node).abs().max() > 1e-3


def test_radial_basis_cutoff_is_smooth():
    rb = RadialBasis(n_radial=4, r_cut_bohr=5.0).double()
    r = torch.tensor([4.999999, 5.0, 7.0], dtype=torch.float64)
    e = rb(r)
    assert e[0].abs().max() < 1e-10 and torch.all(e[1:] == 0)


def test_invalid_arguments_raise():
    with pytest.raises(ValueError, match="5e"):
        GeometryEncoder("8x0e+2x5e", lmax=1, n_layers=1)
    with pytest.raises(ValueError, match="not a valid irreps"):
        GeometryEncoder("sixteen scalars")
    with pytest.raises(ValueError, match="n_layers"):
        GeometryEncoder(n_layers=0)


def test_invalid_inputs_raise(encoder64):
    with pytest.raises(ValueError, match="atomic numbers"):
        encoder64(torch.zeros(1, 2, 3, dtype=torch.float64), torch.tensor([[1, 11]]))
    with pytest.raises(ValueError, match="positions_angstrom"):
        encoder64(torch.zeros(2, 3, dtype=torch.float64), torch.tensor([1, 1]))
