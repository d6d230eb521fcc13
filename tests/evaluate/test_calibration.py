"""Spread-calibration tables (:mod:`rtml.evaluate._calibration`): equal-count bins and the
monotonicity test the hybrid engine's use of the spread relies on."""

import numpy as np

from rtml.evaluate import calibration_table, is_monotonic


def test_bins_hold_equal_counts_in_spread_order():
    rng = np.random.default_rng(0)
    spread = rng.lognormal(size=1000)
    error = 0.5 * spread * rng.lognormal(sigma=0.3, size=1000)    # error follows the spread
    table = calibration_table(spread, error, n_bins=5)
    assert [row["n"] for row in table] == [200] * 5
    assert all(a["spread_hi"] <= b["spread_lo"] for a, b in zip(table, table[1:]))
    assert is_monotonic(table)


def test_an_uninformative_spread_is_not_monotonic():
    rng = np.random.default_rng(1)
    spread = rng.lognormal(size=1000)
    error = rng.permutation(np.linspace(1.0, 2.0, 1000))              # unrelated to the spread
    assert not is_monotonic(calibration_table(spread, error, n_bins=5))
    assert not is_monotonic(calibration_table(spread, error, n_bins=1))   # one bin proves nothing
