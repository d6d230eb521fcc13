"""``rtml train-guess`` and ``--guess``: the learned SCF start is fitted on a store's ground
states with the dynamics model's split, and a run started from it reaches the same ground
state."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rtml.cli import main
from rtml.data import open_store_groups, read_ground_state, trajectory_splits


def rtml(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "rtml", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def h2_guess(h2_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("guess") / "guess"
    assert main(["train-guess", str(h2_store), "--epochs", "80", "--lr", "3e-3", "--threads", "1",
                 "-o", str(out)]) == 0
    return out


def test_guess_learns_the_training_ground_states_on_the_dynamics_split(h2_store, h2_guess):
    """Its training geometries are those of rtml train (same split); on them the learned
    guess is at least 3x closer to P0 than minao; the test split is reported, not used."""
    metrics = json.loads((h2_guess / "guess_metrics.json").read_text())
    groups = open_store_groups(h2_store)
    rows = trajectory_splits(groups)["h2"]
    ids = groups["h2"].geometry_id.values
    for split in ("train", "val", "test"):
        want = {f"h2/{ids[r]}" for r in rows[split]}
        got = {k for k, v in metrics["geometries"].items() if v["split"] == split}
        assert got == want
    train = metrics["median_relative_error"]["train"]
    assert train["guess"] < train["minao"] / 3
    assert 1 <= metrics["training"]["best_epoch"] <= 80


def test_ground_state_from_the_guess_is_the_default_ground_state(h2_guess, tmp_path, caplog):
    """rtml ground-state --guess logs where its SCF started and saves the same density."""
    caplog.set_level("INFO", logger="rtml")
    args = ["ground-state", "h2", "--grid-level", "1", "--nstates", "2"]
    assert main([*args, "--guess", str(h2_guess), "-o", str(tmp_path / "g.h5")]) == 0
    assert "from the learned guess" in caplog.text
    assert main([*args, "-o", str(tmp_path / "m.h5")]) == 0
    learned, default = read_ground_state(tmp_path / "g.h5"), read_ground_state(tmp_path / "m.h5")
    assert learned.energy == pytest.approx(default.energy, abs=1e-9)
    np.testing.assert_allclose(learned.density, default.density, atol=1e-6)


@pytest.mark.parametrize("case", ["no-store", "no-guess", "nwchem", "d-shells"])
def test_bad_guess_inputs_are_one_line(case, h2_guess, tmp_path, error_line):
    if case == "d-shells":   # the guess decodes s and p shells only
        line = error_line(rtml("ground-state", "h2o", "--basis", "6-31g*", "--guess", h2_guess,
                               "-o", tmp_path / "gs.h5"))
        assert "guess" in line and "l=2" in line and not (tmp_path / "gs.h5").exists()
        return
    if case == "no-store":
        line = error_line(rtml("train-guess", tmp_path / "missing.zarr", "-o", tmp_path / "g"))
        assert "missing.zarr" in line and not (tmp_path / "g").exists()
        return
    guess = tmp_path if case == "no-guess" else h2_guess
    engine = "nwchem" if case == "nwchem" else "pyscf"
    line = error_line(rtml("propagate", "h2", "--field", "kick:1e-3:z", "--dt", "0.2",
                           "--steps", "4", "--engine", engine, "--guess", guess,
                           "-o", tmp_path / "out.h5"))
    assert "--guess" in line
    assert not (tmp_path / "out.h5").exists()
