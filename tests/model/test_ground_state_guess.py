"""The learned ground-state guess: equivariant, an exact density, and a fail-safe start for
the SCF (an untrained head gives PySCF's minao guess, purified)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtml.chem import build_mole, converged_scf, load_molecule
from rtml.model import (BasisLayout, GroundStateGuess, float64_default, guess_density,
                        minao_density, purify_density)
from rtml.tddft import lowdin_orthogonalizer


def _guess(seed: int = 0) -> GroundStateGuess:
    torch.manual_seed(seed)
    with float64_default():
        model = GroundStateGuess()
    model.output_scale.fill_(0.05)
    return model.eval()


@pytest.mark.parametrize("name", ["h2o", "nh3"])
def test_guess_rotates_with_the_molecule(name, assert_equivariant):
    """Rotate (and invert) and translate the molecule: the predicted correction ΔP' and the
    full guess rotate with the Wigner-D matrices of the AO shells."""
    model = _guess()
    mol = build_mole(load_molecule(name))
    layout = BasisLayout.from_mole(mol)
    pos = torch.as_tensor(mol.atom_coords(unit="Angstrom"))

    def rotate_matrix(r, x):
        d = torch.as_tensor(layout.ao_rotation(r.numpy())).to(x.dtype)
        return d @ x @ d.T

    with torch.no_grad():
        worst = assert_equivariant(lambda p: model(layout, p[None])[0], [pos],
                                   ["cartesian_points"], [rotate_matrix], atol=1e-10)
    assert worst < 1e-10

    def full_guess(p):
        return torch.as_tensor(guess_density(model, mol.set_geom_(p.numpy(), unit="Angstrom",
                                                                  inplace=False)))

    assert assert_equivariant(full_guess, [pos], ["cartesian_points"], [rotate_matrix],
                              atol=1e-8) < 1e-8


def test_purified_density_is_exact_and_keeps_the_dominant_orbitals():
    """Symmetric, idempotent per spin, trace N_σ; an exact density is returned unchanged."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(9, 9))
    spins = purify_density(a + a.T, 3, 2)
    for p, n in zip(spins, (3, 2)):
        np.testing.assert_allclose(p, p.T, atol=1e-14)
        np.testing.assert_allclose(p @ p, p, atol=1e-12)
        assert np.trace(p) == pytest.approx(n, abs=1e-12)
    q, _ = np.linalg.qr(rng.normal(size=(9, 9)))
    exact = 2 * q[:, :4] @ q[:, :4].T
    np.testing.assert_allclose(purify_density(exact, 4, 4).sum(0), exact, atol=1e-12)


def test_untrained_head_starts_from_purified_minao_and_reaches_the_same_ground_state():
    """With a zero correction the guess is the purified minao density; SCF from the learned
    guess (any weights) converges to the default guess's energy: the guess only starts it."""
    mol = build_mole(load_molecule("h2o"))
    model = _guess()
    model.output_scale.fill_(0.0)
    s_inv_half, s_half = lowdin_orthogonalizer(mol.intor("int1e_ovlp"))
    minao = purify_density(s_half @ minao_density(mol) @ s_half, *mol.nelec).sum(0)
    np.testing.assert_allclose(guess_density(model, mol), s_inv_half @ minao @ s_inv_half,
                               atol=1e-12)
    default = converged_scf(mol, "pbe0", grid_level=1)
    learned = converged_scf(mol, "pbe0", grid_level=1, dm0=guess_density(_guess(1), mol))
    assert learned.e_tot == pytest.approx(default.e_tot, abs=1e-9)


def test_open_shell_guess_has_one_density_per_spin():
    """H2+ (UKS): α holds the electron, β is empty."""
    mol = build_mole(load_molecule("h2p"))
    dm = guess_density(_guess(), mol)
    s = mol.intor("int1e_ovlp")
    assert dm.shape == (2, mol.nao, mol.nao)
    assert np.trace(dm[0] @ s) == pytest.approx(1.0, abs=1e-12)
    assert np.abs(dm[1]).max() < 1e-14
