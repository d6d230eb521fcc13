"""Physics projection of densities: Hermiticity, electron count, idempotency, penalties."""

import pytest
import torch

from rtml._errors import InputError
from rtml.model._projection import hermiticity_penalty, idempotency_penalty, project_density, trace_penalty


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _overlap(n, dtype=torch.float64):
    """A well-conditioned random SPD overlap with unit diagonal (like an AO overlap)."""
    a = torch.randn(n, n, dtype=dtype)
    s = a @ a.T / n + torch.eye(n, dtype=dtype)
    d = s.diagonal().rsqrt()
    return s * d[:, None] * d[None, :]


def _idempotent(s, nocc, occ, complex_=True):
    """occ * C C^dagger with C^dagger S C = 1 (nocc random orthonormal orbitals in the S metric)."""
    n = s.shape[-1]
    w, u = torch.linalg.eigh(s)
    s_mhalf = (u * w.rsqrt()) @ u.T
    a = torch.randn(n, n, dtype=torch.complex128) if complex_ else torch.randn(n, n, dtype=torch.float64)
    q, _ = torch.linalg.qr(a)
    c = s_mhalf.to(q.dtype) @ q[:, :nocc]
    return occ * c @ c.conj().T


def _perturb(p, eps):
    return p + eps * torch.randn(p.shape, dtype=p.dtype)  # non-Hermitian, wrong trace, not idempotent


def _herm_error(p):
    return (p - p.conj().transpose(-1, -2)).abs().max().item()


def _traces(p, s):
    return torch.diagonal(p @ s.to(p.dtype), dim1=-2, dim2=-1).sum(-1)


@pytest.fixture(scope="module")
def water():
    """PySCF RHF density of H2O/6-31G: (S, P (1, n, n) complex, N = 10)."""
    pyscf = pytest.importorskip("pyscf")
    mol = pyscf.gto.M(atom="O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", basis="6-31g",
                      verbose=0)
    mf = pyscf.scf.RHF(mol).run(conv_tol=1e-10)
    s = torch.from_numpy(mf.get_ovlp())
    p = torch.from_numpy(mf.make_rdm1()).to(torch.complex128)[None]
    return s, p, 10.0


def test_projection_of_perturbed_water_density(water):
    s, p0, n = water
    p = _perturb(p0, 1e-3)
    out = project_density(p, s, [n])
    assert out.dtype == torch.complex128 and out.shape == p.shape
    assert _herm_error(out) == 0.0
    assert abs(_traces(out, s).item() - n) < 1e-12
    before = idempotency_penalty(p, s).sqrt().item()
    after = idempotency_penalty(out, s).sqrt().item()
    assert before > 1e-4 and after < 1e-11
    # McWeeny's basin: the projection returns (nearly) the unperturbed density
    assert (out - p0).abs().max().item() < 1e-2


def test_idempotent_input_is_a_fixed_point(water):
    s, p0, n = water
    out = project_density(p0, s, torch.tensor([n]))
    assert (out - p0).abs().max().item() < 1e-12


@pytest.mark.parametrize("complex_", [True, False])
def test_trace_hermiticity_and_convergence_random(complex_):
    s = _overlap(7)
    p0 = torch.stack([_idempotent(s, 3, 2.0, complex_) for _ in range(4)])[:, None]   # (4, 1, 7, 7)
    assert (project_density(p0, s, 6.0) - p0).abs().max().item() < 1e-12
    p = _perturb(p0, 3e-3)
    for k, bound in [(1, 1e-3), (2, 1e-6), (3, 1e-11)]:
        out = project_density(p, s, torch.full((4, 1), 6.0), mcweeny_iterations=k)
        assert out.dtype == p.dtype
        assert _herm_error(out) == 0.0
        assert (_traces(out, s) - 6.0).abs().max().item() < 1e-12
        res = idempotency_penalty(out, s, reduction="none").sqrt()
        assert res.max().item() < bound, (k, res)
    assert idempotency_penalty(p, s, reduction="none").sqrt().min().item() > 1e-3


def test_open_shell_h2_plus():
    """n_spin = 2 with N = (1, 0): alpha keeps one electron, the empty beta channel becomes 0."""
    s = _overlap(4)
    pa = _idempotent(s, 1, 1.0)
    p0 = torch.stack([pa, torch.zeros_like(pa)])                       # (2, 4, 4)
    assert (project_density(p0, s, (1.0, 0.0)) - p0).abs().max().item() < 1e-12
    p = _perturb(p0, 1e-3)
    out = project_density(p, s, (1.0, 0.0))
    assert _herm_error(out) == 0.0
    tr = _traces(out, s)
    assert abs(tr[0].item() - 1.0) < 1e-12 and tr[1].abs().item() == 0.0
    assert (out[1] == 0).all()
    assert idempotency_penalty(out, s).item() < 1e-22
    assert trace_penalty(out, s, (1.0, 0.0)).item() < 1e-24


def test_float32_input_is_projected_in_float64_and_cast_back():
    s = _overlap(5)
    p0 = _idempotent(s, 2, 2.0)[None]
    p = _perturb(p0, 1e-3).to(torch.complex64)
    out = project_density(p, s.float(), [4.0])
    assert out.dtype == torch.complex64 and _herm_error(out) == 0.0
    assert abs(_traces(out.to(torch.complex128), s).real.item() - 4.0) < 1e-5


def test_gradcheck():
    s = _overlap(3)
    p0 = _idempotent(s, 1, 2.0)[None]
    p = _perturb(p0, 1e-2).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: project_density(x, s, [2.0], mcweeny_iterations=2), (p,))
    loss = (hermiticity_penalty(p) + trace_penalty(p, s, [2.0]) + idempotency_penalty(p, s))
    (g,) = torch.autograd.grad(loss, p)
    assert torch.isfinite(g.abs()).all() and g.abs().max() > 0


def test_penalties_formulas():
    s = _overlap(5)
    p0 = _idempotent(s, 2, 2.0)[None]
    assert hermiticity_penalty(p0).item() < 1e-28
    assert trace_penalty(p0, s, [4.0]).item() < 1e-24
    assert idempotency_penalty(p0, s).item() < 1e-24
    a = torch.randn(1, 5, 5, dtype=torch.complex128)
    anti = 0.5 * (a - a.conj().transpose(-1, -2))
    assert torch.allclose(hermiticity_penalty(p0 + anti), (anti.abs() ** 2).sum())
    assert torch.allclose(trace_penalty(1.1 * p0, s, [4.0]), torch.tensor(0.4 ** 2, dtype=torch.float64))
    # Löwdin-basis definition ||Q^2 - Q||_F^2 with Q = S^1/2 P S^1/2 / 2
    p = _perturb(p0, 0.1)
    w, u = torch.linalg.eigh(s)
    sh = ((u * w.sqrt()) @ u.T).to(p.dtype)
    q = sh @ p @ sh / 2
    ref = ((q @ q - q).abs() ** 2).sum()
    assert torch.allclose(idempotency_penalty(p, s), ref)
    batch = torch.stack([p, p0])
    assert idempotency_penalty(batch, s, reduction="none").shape == (2,)
    assert torch.allclose(idempotency_penalty(batch, s, reduction="sum"), ref)


def test_bad_input_is_rejected():
    s = _overlap(3)
    p = torch.zeros(3, 3, 3, dtype=torch.complex128)
    with pytest.raises(InputError, match="n_spin = 1 or 2"):
        project_density(p, s, [1.0, 1.0, 1.0])
    with pytest.raises(InputError, match="n_per_spin"):
        project_density(p[:2], s, [1.0])
    with pytest.raises(InputError, match="S must be"):
        project_density(p[:1], torch.eye(4), [1.0])
    with pytest.raises(InputError, match="reduction"):
        hermiticity_penalty(p[:1], reduction="max")
