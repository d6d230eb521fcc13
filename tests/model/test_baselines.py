"""Baseline models: Hermitian coordinates, persistence, the ridge map in the Löwdin basis.

The ridge map is checked on synthetic trajectories whose Löwdin-basis dynamics is exactly
linear: a unitary step about a stationary ground state plus a linear field drive,

    dP'_{k+1} = U dP'_k U^+ + E_k . M1 + E_{k+1} . M2,   P = S^{-1/2} (D + dP') S^{-1/2},

with [H0, D] = 0 so that D (the ground state) is stationary, and a different overlap S for
every geometry (the same map in the Löwdin basis).
"""

from typing import NamedTuple

import numpy as np
import pytest
import scipy.linalg
import torch

from rtml import InputError
from rtml.model import (LinearPropagator, PersistenceModel, hermitian_to_real, load_baseline,
                        real_to_hermitian)
from rtml.model import lowdin_matrix, lowdin_vector, reference_density


class Traj(NamedTuple):
    """The fields of TrajectoryData the baselines read (plus the optional ground state)."""

    molecule: str
    rho: np.ndarray
    field: np.ndarray
    overlap: np.ndarray
    positions_angstrom: np.ndarray
    rho_ground: np.ndarray | None = None
    geometry_id: str | None = None


def _random_hermitian(rng, shape):
    a = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    return a + a.conj().swapaxes(-1, -2)


class Synthetic:
    """An exactly linear (unitary + linear drive) system of n orbitals, closed shell."""

    def __init__(self, n=4, n_occ=2, dt=0.3, seed=0, growth=1.0):
        rng = np.random.default_rng(seed)
        self.rng, self.n = rng, n
        q, _ = np.linalg.qr(rng.normal(size=(n, n)))
        self.d_ground = q @ np.diag([2.0] * n_occ + [0.0] * (n - n_occ)) @ q.T
        h0 = q @ np.diag(np.sort(rng.uniform(-1, 1, n))) @ q.T
        self.u = scipy.linalg.expm(-1j * h0 * dt)
        self.m = 0.05 * _random_hermitian(rng, (2, 3, n, n))
        self.growth = growth

    def geometry(self, k):
        a = 0.1 * self.rng.normal(size=(self.n, self.n))
        s = np.eye(self.n) + a @ a.T
        lam, vec = np.linalg.eigh(s)
        return s, (vec / np.sqrt(lam)) @ vec.T, self.rng.normal(size=(2, 3)) + k

    def trajectory(self, geom, T=60, kick=1e-2, field=1e-2, name="g0", ground=True, exact_kick=False):
        """Starts from a kicked ground state; ``exact_kick``: the unitary kick e^{ikR} D e^{-ikR}
        (else its first-order part plus a small random Hermitian part, to excite every mode)."""
        s, s_inv_half, pos = geom
        r = self.rng.normal(size=(self.n, self.n))
        r = r + r.T
        if exact_kick:
            u = scipy.linalg.expm(1j * kick * r)
            dp = u @ self.d_ground @ u.conj().T - self.d_ground
        else:
            dp = 1j * kick * (r @ self.d_ground - self.d_ground @ r)  # Hermitian, imaginary
            dp = dp + 1e-3 * kick * _random_hermitian(self.rng, (self.n, self.n))
        fields = field * self.rng.normal(size=(T, 3))
        out = [dp]
        for k in range(T - 1):
            drive = np.einsum("x,xij->ij", fields[k], self.m[0]) + np.einsum("x,xij->ij", fields[k + 1], self.m[1])
            out.append(self.growth * self.u @ out[-1] @ self.u.conj().T + drive)
        rho = np.array([s_inv_half @ (self.d_ground + p) @ s_inv_half for p in out])[:, None]
        ground_ao = (s_inv_half @ self.d_ground @ s_inv_half)[None].astype(complex)
        return Traj("m", rho, fields, s, pos, ground_ao if ground else None, name)


def test_hermitian_real_coordinates_round_trip():
    rng = np.random.default_rng(0)
    p = _random_hermitian(rng, (5, 2, 6, 6))
    x = hermitian_to_real(p)
    assert x.shape == (5, 2 * 36)
    np.testing.assert_array_equal(real_to_hermitian(x, 2, 6), p)
    q = real_to_hermitian(rng.normal(size=(3, 36)), 1, 6)
    np.testing.assert_array_equal(q, q.conj().swapaxes(-1, -2))


def test_lowdin_coordinates_preserve_the_frobenius_norm_and_round_trip():
    syn = Synthetic()
    s, s_inv_half, _ = syn.geometry(0)
    s_half = np.linalg.inv(s_inv_half)
    rng = np.random.default_rng(3)
    p_ref = _random_hermitian(rng, (2, 4, 4))
    rho = p_ref + _random_hermitian(rng, (7, 2, 4, 4))
    x = lowdin_vector(rho, p_ref, s_half)
    assert x.shape == (7, 2 * 16)
    frob = np.sqrt((np.abs(s_half @ (rho - p_ref) @ s_half) ** 2).sum(axis=(-3, -2, -1)))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), frob, rtol=1e-12)
    np.testing.assert_allclose(lowdin_matrix(x, p_ref, s_inv_half), rho, atol=1e-12)


def test_ridge_map_recovers_exactly_linear_unitary_dynamics_across_geometries():
    syn = Synthetic(seed=1)
    geoms = [syn.geometry(k) for k in range(4)]
    train = [syn.trajectory(g, name=f"g{k}") for k, g in enumerate(geoms[:3]) for _ in range(2)]
    val = [syn.trajectory(geoms[3], name="g3")]
    model = LinearPropagator()
    fit = model.fit("m", train, val)
    assert fit.ridge <= 1e-8 and not fit.stabilised and len(fit.cv_scores) == 9
    # the state block is the (orthogonal) unitary conjugation in Frobenius-preserving coordinates
    ax = fit.A[:, :fit.d]
    np.testing.assert_allclose(ax @ ax.T, np.eye(fit.d), atol=1e-6)
    # a new geometry: teacher forcing and a free rollout reproduce the reference
    test = syn.trajectory(syn.geometry(9), T=300, name="g9")
    scale = np.abs(test.rho - test.rho[0]).max()
    np.testing.assert_allclose(model.one_step(test), test.rho[1:], atol=1e-6 * scale)
    rollout = model.rollout_trajectory(test)
    assert rollout.shape == test.rho.shape
    np.testing.assert_array_equal(rollout[0], test.rho[0])
    np.testing.assert_allclose(rollout, test.rho, atol=1e-5 * scale)


def test_ground_state_at_zero_field_is_an_exact_fixed_point():
    syn = Synthetic(seed=2)
    geoms = [syn.geometry(k) for k in range(3)]
    model = LinearPropagator()
    model.fit("m", [syn.trajectory(g, name=f"g{k}") for k, g in enumerate(geoms)])
    s, s_inv_half, pos = syn.geometry(7)
    ground = (s_inv_half @ syn.d_ground @ s_inv_half)[None].astype(complex)
    static = Traj("m", np.repeat(ground[None], 500, axis=0), np.zeros((500, 3)), s, pos, ground)
    np.testing.assert_allclose(model.rollout_trajectory(static), static.rho, rtol=0, atol=1e-12)
    np.testing.assert_allclose(model.one_step(static), static.rho[1:], rtol=0, atol=1e-12)
    # also without a stored ground state: P0 falls back to Re P(t_0), here the ground state
    fallback = static._replace(rho_ground=None)
    np.testing.assert_allclose(model.rollout_trajectory(fallback), static.rho, rtol=0, atol=1e-12)


def test_fallback_reference_is_the_real_part_of_the_first_frame():
    """A kick changes Re P only at second order: Re P(t_0) is the ground state to O(kappa^2),
    and a map fitted without ground states predicts as well as one fitted with them."""
    syn = Synthetic(seed=4)
    geoms = [syn.geometry(k) for k in range(3)]
    trajs = [syn.trajectory(g, name=f"g{k}", kick=1e-3, exact_kick=True) for k, g in enumerate(geoms)
             for _ in range(2)]
    p0 = reference_density(trajs[0]._replace(rho_ground=None))
    np.testing.assert_allclose(p0, trajs[0].rho[0].real, atol=0)
    first_order = np.abs(trajs[0].rho[0] - trajs[0].rho_ground).max()
    assert np.abs(p0 - trajs[0].rho_ground).max() < 1e-2 * first_order
    with_ground, without = LinearPropagator(), LinearPropagator()
    with_ground.fit("m", trajs)
    without.fit("m", [t._replace(rho_ground=None) for t in trajs])
    test = syn.trajectory(syn.geometry(5), T=200, name="g5", kick=1e-3, exact_kick=True, ground=False)
    scale = np.abs(test.rho - test.rho[0]).max()
    for model in (with_ground, without):
        assert np.abs(model.rollout_trajectory(test) - test.rho).max() < 1e-2 * scale


def test_unstable_fits_are_scaled_to_unit_spectral_radius_and_rollouts_stay_bounded():
    syn = Synthetic(seed=5, growth=1.03)  # data from a slowly growing map
    geoms = [syn.geometry(k) for k in range(3)]
    model = LinearPropagator()
    fit = model.fit("m", [syn.trajectory(g, name=f"g{k}") for k, g in enumerate(geoms)])
    assert fit.stabilised and fit.spectral_radius == pytest.approx(1.03, rel=1e-3)
    assert np.abs(np.linalg.eigvals(fit.A[:, :fit.d])).max() <= 1 + 1e-12
    s, s_inv_half, pos = syn.geometry(6)
    ground = (s_inv_half @ syn.d_ground @ s_inv_half)[None].astype(complex)
    start = syn.trajectory((s, s_inv_half, pos), T=2, name="g6").rho[0]
    long = Traj("m", np.repeat(start[None], 5000, axis=0), np.zeros((5000, 3)), s, pos, ground)
    rollout = model.rollout_trajectory(long)
    dev = np.abs(rollout - ground).max(axis=(1, 2, 3))
    assert np.all(np.isfinite(rollout)) and dev.max() < 5 * dev[0]


def test_state_dict_round_trip_through_torch_save(tmp_path):
    syn = Synthetic(seed=6)
    model = LinearPropagator()
    model.fit("m", [syn.trajectory(syn.geometry(k), name=f"g{k}") for k in range(2)])
    torch.save(model.state_dict(), tmp_path / "model.pt")
    restored = load_baseline(torch.load(tmp_path / "model.pt", weights_only=True))
    assert isinstance(restored, LinearPropagator)
    fit, back = model.fits["m"], restored.fits["m"]
    np.testing.assert_array_equal(back.A, fit.A)
    assert (back.ridge, back.field_scale, back.cv_scores) == (fit.ridge, fit.field_scale, fit.cv_scores)
    test = syn.trajectory(syn.geometry(3), name="g3")
    np.testing.assert_array_equal(restored.rollout_trajectory(test), model.rollout_trajectory(test))
    with pytest.raises(InputError, match="not fitted for molecule 'other'"):
        model.one_step(test._replace(molecule="other"))


def test_persistence_repeats_the_initial_density():
    rng = np.random.default_rng(2)
    p0 = _random_hermitian(rng, (1, 4, 4))
    out = PersistenceModel().rollout("m", p0, np.zeros((10, 3)))
    assert out.shape == (10, 1, 4, 4) and np.all(out == p0)
