"""The assembled rtml model: persistence at initialisation, parallel == recurrent, physics."""

import numpy as np
import pytest
import torch

from rtml.model import (BasisLayout, ModelConfig, MoleculeBatch, RTMLModel, n_per_spin_tensor)


def _lih_batch(batch=2, length=9, seed=0):
    from pyscf import scf

    from rtml.chem import build_mole, load_molecule
    from rtml.tddft import basis_metadata

    spec = load_molecule("lih")
    mol = build_mole(spec, basis="6-31g")
    mf = scf.RHF(mol).run(conv_tol=1e-10, verbose=0)
    dm = mf.make_rdm1()
    atom, l, m = basis_metadata(mol)
    layout = BasisLayout.from_metadata(atom, l, m, mol.atom_charges())
    rng = np.random.default_rng(seed)
    # a density that moves: small Hermitian rotations of the ground state
    s = mf.get_ovlp()
    frames = []
    for t in range(length):
        a = 1e-3 * np.sin(0.3 * t) * rng.normal(size=dm.shape)
        frames.append(dm + (a + a.T) / 2 + 1j * 1e-3 * np.cos(0.2 * t) * (a - a.T) / 2)
    rho = torch.tensor(np.array(frames))[None, :, None].expand(batch, -1, -1, -1, -1).clone()
    field = torch.tensor(1e-3 * rng.normal(size=(batch, length, 3)))
    mb = MoleculeBatch(layout, torch.tensor(spec.positions_angstrom, dtype=torch.float32)[None].expand(batch, -1, -1),
                       torch.tensor(mol.atom_charges()), torch.tensor(s)[None].expand(batch, -1, -1),
                       n_per_spin_tensor(4, 1, 1, batch))
    return rho, field, mb


@pytest.fixture(scope="module")
def lih():
    return _lih_batch()


def test_untrained_model_is_persistence(lih):
    torch.manual_seed(0)
    rho, field, mb = lih
    model = RTMLModel(ModelConfig())
    raw, projected = model(rho, field, mb)
    assert torch.allclose(raw[:, :, 0], rho[:, :-1], atol=1e-14)


def test_parallel_training_pass_equals_recurrent_steps(lih):
    """Teacher-forced parallel scan == carrying the recurrent state step by step (1e-5)."""
    torch.manual_seed(1)
    rho, field, mb = lih
    model = RTMLModel(ModelConfig())
    for p in [*model.dynamics.head.parameters(), *model.skip.parameters()]:  # make it move
        torch.nn.init.normal_(p, std=0.1)
    with torch.no_grad():
        z = model.encode(rho[:, :-1], mb)
        z_ref = model.reference_latent(rho[:, 0], mb)
        parallel = model.predict_latents(z, field, mb, z_ref)[:, :, 0]     # (B, L, S, T, d)
        node_feats, cond = model._token_features(mb)
        ftok = model._field_tokens(field, node_feats, mb.layout)
        b, length, n_spin, n_tok, d = z.shape
        cond = cond[:, None].expand(-1, n_spin, -1, -1).reshape(b * n_spin * n_tok, -1)
        cache = model.dynamics.init_cache(b * n_spin * n_tok)
        steps = []
        for k in range(length):
            feats, x = model._inputs(z[:, k:k + 1], z[:, max(k - 1, 0):max(k - 1, 0) + 1], z_ref,
                                     ftok[:, k:k + 1], ftok[:, k + 1:k + 2])
            delta, cache = model.dynamics.step(x[:, 0], cond, cache)
            delta = delta + model._skip(feats)[:, 0]
            steps.append(model.delta_scale * delta.reshape(b, n_spin, n_tok, d))
        recurrent = torch.stack(steps, dim=1)
    scale = parallel.abs().max()
    assert scale > 0
    assert (parallel - recurrent).abs().max() <= 1e-5 * max(1.0, float(scale))


def test_rollout_output_is_physical(lih):
    torch.manual_seed(2)
    rho, field, mb = lih
    model = RTMLModel(ModelConfig())
    for p in model.dynamics.head.parameters():
        torch.nn.init.normal_(p, std=0.1)
    out = model.rollout(rho[:, 0], field, mb)
    assert out.shape == (2, 9, 1, 11, 11)
    herm = (out - out.conj().transpose(-1, -2)).abs().max()
    trace = torch.einsum("btsij,bji->bts", out, mb.overlap.to(out.dtype)).real
    assert herm < 1e-12
    assert (trace - 4.0).abs().max() < 1e-10
