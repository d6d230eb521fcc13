"""Evaluation metrics on synthetic trajectories with known answers (no RT-TDDFT needed)."""

import json
import warnings

import numpy as np
import pytest

from rtml.evaluate import (TSV_COLUMNS, aggregate, dipole_nrmse, error_curve_quantiles, is_static,
                           physics_compliance, relative_error_curve, rollout_errors_at,
                           scaled_l2, spectrum_nrmse, tsv_columns, valid_horizon,
                           write_metrics)
from rtml.model import PersistenceModel


def _hermitian(rng, n):
    a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    return a + a.conj().T


def oscillating(T=301, omega=0.05, amp=1e-3, n=4, seed=0):
    """P(t) = P0 + amp sin(omega t) D with ||D||_F = 1: max ||P(t) - P(0)|| = amp max|sin|."""
    rng = np.random.default_rng(seed)
    p0 = np.diag([2.0, 2.0, 0.0, 0.0])[:n, :n].astype(complex)
    d = _hermitian(rng, n)
    d /= np.linalg.norm(d)
    t = np.arange(T)
    return (p0 + amp * np.sin(omega * t)[:, None, None] * d)[:, None], t, omega


def test_persistence_error_curve_matches_the_analytic_one():
    rho, t, omega = oscillating()
    rollout = PersistenceModel().rollout("m", rho[0], np.zeros((len(rho), 3)))
    curve = relative_error_curve(rollout, rho)
    expected = np.abs(np.sin(omega * t)) / np.abs(np.sin(omega * t)).max()
    np.testing.assert_allclose(curve, expected, rtol=1e-9, atol=1e-12)
    # first step with |sin(0.05 k)| > 0.1: k = 3 (sin 0.15 = 0.149; sin 0.1 = 0.0998)
    assert valid_horizon(curve) == 3
    assert valid_horizon(np.zeros(50)) == 50  # never exceeded: the full length
    at = rollout_errors_at(curve, horizons=(100,))
    assert set(at) == {"rollout_error_at_100", "rollout_error_at_300"}
    assert at["rollout_error_at_100"] == pytest.approx(expected[100])
    assert set(rollout_errors_at(curve[:51], (100,))) == {"rollout_error_at_50"}  # true horizon
    l2 = scaled_l2(curve)
    assert set(l2) == {"scaled_l2_8", "scaled_l2_16", "scaled_l2_32", "scaled_l2_64", "scaled_l2_100"}
    assert l2["scaled_l2_8"] == pytest.approx(expected[1:9].mean())
    assert l2["scaled_l2_100"] == pytest.approx(expected[1:101].mean())
    short = scaled_l2(curve[:40])
    assert short["scaled_l2_32"] == pytest.approx(expected[1:33].mean())
    assert np.isnan(short["scaled_l2_64"]) and np.isnan(short["scaled_l2_100"])
    # a perfect model has zero error everywhere and the full horizon
    perfect = relative_error_curve(rho, rho)
    assert np.all(perfect == 0) and valid_horizon(perfect) == len(rho)


def test_static_reference_is_flagged_not_divided_by_round_off():
    rho, _, _ = oscillating(T=50)
    static = np.repeat(rho[:1], 50, axis=0)
    static[1:] += 1e-15 * np.random.default_rng(1).normal(size=static[1:].shape)  # round-off motion
    assert is_static(static) and not is_static(rho)
    moved = static + 1e-6  # any prediction error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        curve = relative_error_curve(moved, static)
        assert np.isnan(curve).all() and np.isnan(valid_horizon(curve))
        assert all(np.isnan(v) for v in rollout_errors_at(curve).values())
        assert all(np.isnan(v) for v in scaled_l2(curve).values())
    moving = relative_error_curve(PersistenceModel().rollout("m", rho[0], np.zeros((50, 3))), rho)
    results = [{"static_reference": True, "valid_horizon": valid_horizon(curve),
                **rollout_errors_at(curve, (10,)), "one_step_mse": 0.0},
               {"static_reference": False, "valid_horizon": valid_horizon(moving),
                **rollout_errors_at(moving, (10,)), "one_step_mse": 1.0}]
    row = aggregate(results)
    assert row["static_reference"] == 1 and row["n_test"] == 2
    assert row["median_valid_horizon"] == valid_horizon(moving)
    assert row["rollout_error_at_10"] == pytest.approx(moving[10])
    assert row["rollout_error_at_49"] == pytest.approx(moving[49])
    assert row["one_step_mse"] == 0.5
    assert error_curve_quantiles([curve, moving], (50,))[0] == pytest.approx(moving)


def test_noise_level_reference_is_static_and_left_out_of_the_error_band():
    """A reference that moves only by numerical noise (1e-9 per element, below rtml
    validate's 1e-8 response bound, yet above 1e-10 ||P(0)||_F) is static: its e(t) is
    undefined instead of a model's round-off over noise, and the plotted band (quartiles
    over trajectories) is that of the moving ones alone, finite everywhere."""
    rho, _, _ = oscillating(T=60)
    noise, _, _ = oscillating(T=60, amp=1e-9, seed=2)
    assert is_static(noise) and not is_static(rho)
    off_by_round_off = noise + 1e-12
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flat = relative_error_curve(off_by_round_off, noise)
    assert np.isnan(flat).all() and np.isnan(valid_horizon(flat))
    persistence = PersistenceModel()
    curves = [relative_error_curve(persistence.rollout("m", r[0], np.zeros((60, 3))), r)
              for r in (rho, 0.5 * rho + 0.5 * rho[0])]
    band = error_curve_quantiles([flat, *curves])
    assert band.shape == (3, 60) and np.isfinite(band).all()
    np.testing.assert_allclose(band, error_curve_quantiles(curves))
    assert error_curve_quantiles([flat]).shape == (3, 0)  # all static: nothing to draw


def test_aggregate_uses_medians_for_horizons_and_errors_at_k():
    results = [{"static_reference": False, "valid_horizon": h, "rollout_error_at_5": e}
               for h, e in ((1.0, 0.5), (5.0, 0.01), (100.0, 0.02))]
    row = aggregate(results)
    assert row["median_valid_horizon"] == 5.0 and row["mean_valid_horizon"] == pytest.approx(106 / 3)
    assert row["rollout_error_at_5"] == 0.02 and row["rollout_error_at_5_mean"] == pytest.approx(0.53 / 3)
    assert np.isnan(row["dipole_nrmse"]) and np.isnan(row["trace_error"])


def test_median_error_curve_handles_ragged_lengths():
    curves = [np.array([0.0, 1.0, 2.0]), np.array([0.0, 3.0, 4.0, 5.0]), np.array([0.0, 2.0])]
    np.testing.assert_allclose(error_curve_quantiles(curves, (50,))[0], [0.0, 2.0, 3.0, 5.0])


def test_dipole_nrmse_is_rmse_of_induced_dipoles_over_the_reference_range():
    t = np.linspace(0, 50, 201)
    ref = np.stack([0.3 + 0.02 * np.sin(0.3 * t), np.full_like(t, -1.0), 0.01 * np.sin(0.3 * t)], axis=1)
    assert dipole_nrmse(ref, ref) == 0.0
    offset = ref + 5.0  # a constant offset is not an induced-dipole error
    assert dipole_nrmse(offset, ref) == pytest.approx(0.0, abs=1e-12)
    no_response = np.repeat(ref[:1], len(t), axis=0)
    induced = ref - ref[0]
    expected = np.sqrt(np.mean(induced ** 2)) / (induced.max() - induced.min())
    assert dipole_nrmse(no_response, ref) == pytest.approx(expected)
    assert 0.1 < expected < 1.0
    assert np.isnan(dipole_nrmse(ref, no_response))  # the reference does not move


def test_spectrum_nrmse_counts_only_energies_below_20_ev():
    omega_ev = np.linspace(0.1, 40.0, 400)
    ref = np.exp(-((omega_ev - 10.0) / 0.5) ** 2)
    assert spectrum_nrmse(omega_ev, ref, ref) == 0.0
    above = ref + np.where(omega_ev > 20.0, 1.0, 0.0)
    assert spectrum_nrmse(omega_ev, above, ref) == 0.0
    half = 0.5 * ref
    mask = omega_ev <= 20.0
    assert spectrum_nrmse(omega_ev, half, ref) == pytest.approx(np.sqrt(np.mean((0.5 * ref[mask]) ** 2)))


def test_physics_compliance_reports_occupation_bounds_per_spin_kind():
    rng = np.random.default_rng(4)
    a = 0.1 * rng.normal(size=(4, 4))
    s = np.eye(4) + a @ a.T
    lam, vec = np.linalg.eigh(s)
    s_inv_half = (vec / np.sqrt(lam)) @ vec.T
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))

    def density(occ):
        return (s_inv_half @ q @ np.diag(occ) @ q.T @ s_inv_half).astype(complex)

    closed = physics_compliance(density([2, 2, 0, 0])[None, None], s, [4.0])
    assert closed["min_eigenvalue"] == pytest.approx(0, abs=1e-12)
    assert closed["max_eigenvalue"] == pytest.approx(2)
    assert closed["occupation_violation"] < 1e-12 and closed["trace_error"] < 1e-12
    over = physics_compliance(density([2.5, 1.5, 0, 0])[None, None], s, [4.0])
    assert over["occupation_violation"] == pytest.approx(0.5)
    uks = np.stack([density([1, 1, 0, 0]), density([1.2, 0, 0, -0.1])])[None]
    spin = physics_compliance(uks, s, [2.0, 1.0])
    assert spin["occupation_violation"] == pytest.approx(0.2)
    assert spin["min_eigenvalue"] == pytest.approx(-0.1)
    assert spin["trace_error"] == pytest.approx(0.1)


def test_metrics_files_name_the_true_horizons(tmp_path):
    summary = {"persistence": {"a": {"held_out": "geometry", "n_test": 2, "static_reference": 0,
                                     "one_step_mse": 1e-6, "rollout_error_at_100": 0.5,
                                     "rollout_error_at_150": 0.7, "median_valid_horizon": 3.0},
                               "b": {"held_out": "geometry", "n_test": 1, "static_reference": 1,
                                     "one_step_mse": 2e-6, "rollout_error_at_40": float("nan"),
                                     "median_valid_horizon": float("nan")}}}
    columns = tsv_columns(summary)
    assert columns[:9] == ["model", "molecule", "held_out", "n_test", "static_reference",
                           "one_step_mse", "rollout_error_at_40", "rollout_error_at_100",
                           "rollout_error_at_150"]
    assert columns[9:] == list(TSV_COLUMNS[7:])
    write_metrics(summary, tmp_path, {})
    table = [line.split("\t") for line in (tmp_path / "metrics.tsv").read_text().splitlines()]
    assert table[0] == columns and len(table) == 3
    assert table[2][columns.index("rollout_error_at_40")] == "nan"
    assert table[1][columns.index("rollout_error_at_40")] == "nan"  # a horizon b has, a lacks
    assert json.loads((tmp_path / "metrics.json").read_text())["models"]["persistence"]["a"][
        "rollout_error_at_150"] == 0.7
