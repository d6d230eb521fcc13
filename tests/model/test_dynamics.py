"""Latent dynamics (Mamba + FiLM, MLP ablation) and the equivariant field encoder."""

import pytest
import torch
from mambapy.mamba import MambaBlock, MambaConfig

from rtml import InputError
from rtml.model import FiLM, MambaDynamics, MLPDynamics, make_dynamics, mamba_ssm_available

# float32: parallel scan vs recurrence to 1e-5; float64 to round-off
TOL = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request):
    """Run in both dtypes, with the default dtype set too (e3nn builds its coefficients in it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(request.param)
    yield request.param
    torch.set_default_dtype(old)


def _randomise_film(model, std=0.2):
    with torch.no_grad():
        for film in model.films:
            film.proj.weight.normal_(std=std)
            film.proj.bias.normal_(std=std)


def _rollout(model, z, cond):
    cache = model.init_cache(z.shape[0])
    out = []
    for t in range(z.shape[1]):
        c = cond if cond.dim() == 2 else cond[:, t]
        delta, cache = model.step(z[:, t], c, cache)
        out.append(delta)
    return torch.stack(out, dim=1)


# -- MambaDynamics ---------------------------------------------------------------------
@pytest.mark.parametrize("bundle, out_dim, time_cond", [(1, None, False), (3, 5, True)])
def test_parallel_scan_equals_recurrent_rollout(dtype, bundle, out_dim, time_cond):
    model = MambaDynamics(16, 6, n_layers=2, d_state=8, bundle=bundle, out_dim=out_dim)
    _randomise_film(model)
    b, length = 3, 37                                   # not a power of two: pscan pads
    z = torch.randn(b, length, 16)
    cond = torch.randn(b, length, 6) if time_cond else torch.randn(b, 6)
    parallel = model(z, cond)
    want = (b, length, 16) if bundle == 1 else (b, length, bundle, out_dim)
    assert parallel.shape == want and parallel.dtype == dtype
    recurrent = _rollout(model, z, cond)
    scale = parallel.abs().max().item()
    assert (parallel - recurrent).abs().max().item() < TOL[dtype] * max(scale, 1.0)
    # causality: changing the future does not change the past
    z2 = z.clone()
    z2[:, 20:] += 1.0
    assert torch.equal(model(z2, cond)[:, :20], parallel[:, :20])


def test_step_does_not_modify_the_cache():
    model = MambaDynamics(8, 2, n_layers=1, d_state=4)
    cache = model.init_cache(2)
    _, new = model.step(torch.randn(2, 8), torch.randn(2, 2), cache)
    assert all((h == 0).all() and (x == 0).all() for h, x in cache)
    assert len(new) == 1 and new[0][0].shape == (2, 16, 4) and new[0][1].shape == (2, 16, 3)


def test_parameter_names_and_shapes_match_mamba_ssm():
    d, n, conv, e = 64, 16, 4, 2
    model = MambaDynamics(d, 32, n_layers=2, d_state=n, d_conv=conv, expand=e)
    sd = model.state_dict()
    inner, rank = e * d, 4                             # dt_rank = ceil(64 / 16)
    # mamba_ssm.modules.mamba_simple.Mamba (bias=False, conv_bias=True), in a MixerModel's layers.{i}
    expected = {"in_proj.weight": (2 * inner, d), "conv1d.weight": (inner, 1, conv), "conv1d.bias": (inner,),
                "x_proj.weight": (rank + 2 * n, inner), "dt_proj.weight": (inner, rank),
                "dt_proj.bias": (inner,), "A_log": (inner, n), "D": (inner,), "out_proj.weight": (d, inner)}
    for i in range(2):
        mixer = {k.removeprefix(f"layers.{i}.mixer."): tuple(v.shape) for k, v in sd.items()
                 if k.startswith(f"layers.{i}.mixer.")}
        assert mixer == expected
        assert tuple(sd[f"layers.{i}.norm.weight"].shape) == (d,)
    # the mixer weights load into a stock mambapy block (same names as mamba_ssm.Mamba)
    block = MambaBlock(MambaConfig(d_model=d, n_layers=1, d_state=n, d_conv=conv, expand_factor=e))
    block.load_state_dict({k.removeprefix("layers.0.mixer."): v for k, v in sd.items()
                           if k.startswith("layers.0.mixer.")})
    assert sum(p.numel() for p in model.parameters()) == 78080


def test_film_starts_as_identity_and_conditions_after_training():
    film = FiLM(5, 7)
    h, c = torch.randn(3, 4, 7), torch.randn(3, 1, 5)
    assert torch.equal(film(h, c), h)
    model = MambaDynamics(16, 5, n_layers=2, d_state=4)
    z = torch.randn(2, 9, 16)
    assert torch.equal(model(z, torch.randn(2, 5)), model(z, torch.randn(2, 5)))
    _randomise_film(model)
    assert not torch.allclose(model(z, torch.randn(2, 5)), model(z, torch.randn(2, 5)))


def test_gradients_reach_every_parameter():
    model = MambaDynamics(16, 4, n_layers=2, d_state=4, bundle=2)
    z = torch.randn(2, 11, 16, requires_grad=True)
    cond = torch.randn(2, 4, requires_grad=True)
    model(z, cond).square().mean().backward()
    for name, p in model.named_parameters():     # zero-initialised FiLM weights still get gradients
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().max() > 0, name
    assert z.grad.abs().max() > 0
    assert torch.equal(cond.grad, torch.zeros_like(cond))    # FiLM is the identity at init ...
    _randomise_film(model)
    cond.grad = None
    model(z, cond).square().mean().backward()
    assert cond.grad.abs().max() > 0                         # ... and conditions once trained


def test_backend_selection(monkeypatch):
    """CPU input: 'auto' runs mambapy; the kernel path shares the parameters (checked with a
    stand-in for mamba_ssm.Mamba, since the real kernels need CUDA)."""
    auto = MambaDynamics(16, 4, n_layers=2, d_state=4)
    _randomise_film(auto)
    pure = MambaDynamics(16, 4, n_layers=2, d_state=4, backend="mambapy")
    pure.load_state_dict(auto.state_dict())
    z, cond = torch.randn(2, 10, 16), torch.randn(2, 4)
    ref = pure(z, cond)
    assert torch.equal(auto(z, cond), ref)
    with pytest.raises(InputError, match="backend"):
        MambaDynamics(16, 4, backend="cuda")
    if not mamba_ssm_available():
        with pytest.raises(RuntimeError, match="mamba_ssm"):
            MambaDynamics(16, 4, backend="mamba_ssm")(z, cond)

    class FakeKernelMamba(MambaBlock):
        """mamba_ssm.Mamba's constructor signature, mambapy's computation."""

        def __init__(self, d_model, d_state=16, d_conv=4, expand=2, dt_rank="auto", conv_bias=True,
                     bias=False, **kwargs):
            super().__init__(MambaConfig(d_model=d_model, n_layers=1, d_state=d_state, d_conv=d_conv,
                                         expand_factor=expand, dt_rank=dt_rank, conv_bias=conv_bias,
                                         bias=bias))

    monkeypatch.setattr(MambaDynamics, "kernel_class", staticmethod(lambda: FakeKernelMamba))
    monkeypatch.setattr(MambaDynamics, "kernel_accepts", staticmethod(lambda x: True))
    out = auto(z, cond)
    assert torch.allclose(out, ref, atol=1e-6, rtol=0)
    assert set(auto.state_dict()) == set(pure.state_dict())          # the kernel is not registered
    out.square().sum().backward()
    assert auto.layers[0].mixer.in_proj.weight.grad.abs().max() > 0


def test_bad_shapes_are_rejected():
    model = MambaDynamics(8, 3, n_layers=1, d_state=4)
    with pytest.raises(InputError, match="z must be"):
        model(torch.randn(2, 5, 7), torch.randn(2, 3))
    with pytest.raises(InputError, match="cond must"):
        model(torch.randn(2, 5, 8), torch.randn(2, 4, 3))
    with pytest.raises(InputError, match="positive integer"):
        MambaDynamics(8, 3, n_layers=0)


# -- MLP ablation and factory ---------------------------------------------------------------
def test_mlp_dynamics_same_interface(dtype):
    model = MLPDynamics(12, 4, hidden=32, n_layers=2, bundle=2)
    assert model.init_cache(3) is None
    z, cond = torch.randn(3, 7, 12), torch.randn(3, 4)
    out = model(z, cond)
    assert out.shape == (3, 7, 2, 12) and out.dtype == dtype
    step, cache = model.step(z[:, 4], cond, None)
    assert cache is None
    assert (step - out[:, 4]).abs().max().item() < TOL[dtype]
    assert (_rollout(model, z, cond) - out).abs().max().item() < TOL[dtype]


def test_make_dynamics():
    m = make_dynamics("mamba", 16, 4, n_layers=1, d_state=4, bundle=2)
    assert isinstance(m, MambaDynamics) and m.bundle == 2 and "MambaDynamics(z 16 + cond 4" in repr(m)
    m = make_dynamics("mlp", 16, 4, hidden=8)
    assert isinstance(m, MLPDynamics) and "MLPDynamics" in repr(m)
    with pytest.raises(InputError, match="unknown dynamics kind 'gru'"):
        make_dynamics("gru", 16, 4)
