"""``rtml train`` and ``rtml evaluate`` on a small real RT-TDDFT dataset (LiH, 4 geometries)."""

import json

import numpy as np
import pytest
import torch

from rtml.chem import load_molecule
from rtml.data import assemble_store, open_dataset, trajectory_splits, write_trajectory
from rtml.evaluate import dipole_from_density, dipole_operator, evaluate
from rtml.fields import parse_field
from rtml.tddft import PropagationSettings, SimulationInputs, simulate
from rtml.train import TrainConfig, load_training_data, train_baseline, train_rtml

pytestmark = pytest.mark.physics


@pytest.fixture(scope="module")
def lih_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("lih")
    spec = load_molecule("lih")
    paths = []
    for k, stretch in enumerate((1.0, 0.95, 1.05, 1.1)):
        positions = spec.positions_angstrom * stretch
        inputs = SimulationInputs(molecule=spec, settings=PropagationSettings(dt=0.2, n_steps=150),
                                  fields=[parse_field("kick:2e-3:z"), parse_field("gaussian:0.01:0.13:8:3:x")],
                                  positions_angstrom=positions, grid_level=1, geometry_id=f"s{k}")
        for i, traj in enumerate(simulate(inputs)):
            paths.append(write_trajectory(root / f"g{k}-{i}.h5", traj))
    store = root / "lih.zarr"
    assemble_store(paths, store)
    return store


def test_dipole_operator_reproduces_stored_dipoles(lih_store):
    ds = open_dataset(lih_store, "lih")
    for row in (0, 5):
        ints, nuc = dipole_operator(ds, row)
        np.testing.assert_allclose(dipole_from_density(ds.rho[row].values, ints, nuc),
                                   ds.dipole[row].values, atol=1e-10)


def test_linear_baseline_beats_persistence_on_held_out_geometries(lih_store, tmp_path):
    """The ridge baseline, fitted on training geometries only, beats persistence on the test
    geometry: one-step error, rollout error and valid horizon; the files name true horizons."""
    model_dir = train_baseline(lih_store, "linear", tmp_path / "model", seed=0)
    assert (model_dir / "model.pt").is_file()
    rows = (model_dir / "train_metrics.csv").read_text().splitlines()
    assert rows[0].startswith("molecule,n_train") and rows[1].startswith("lih,")
    assert "ridge" in rows[0].split(",") and "spectral_radius" in rows[0].split(",")
    summary = evaluate(lih_store, model_dir, tmp_path / "eval")
    linear, persistence = summary["trained_linear"]["lih"], summary["persistence"]["lih"]
    assert linear["held_out"] == "geometry" and linear["test_split"] == "test"
    assert linear["one_step_mse"] < 0.5 * persistence["one_step_mse"]
    last = len(open_dataset(lih_store, "lih").time) - 1
    for key in ("rollout_error_at_100", f"rollout_error_at_{last}", "median_valid_horizon",
                "scaled_l2_8", "scaled_l2_100", "dipole_nrmse"):
        assert np.isfinite(linear[key]) and np.isfinite(persistence[key]), key
    assert linear["scaled_l2_100"] < persistence["scaled_l2_100"]
    assert linear["median_valid_horizon"] >= persistence["median_valid_horizon"]
    assert linear["static_reference"] == persistence["static_reference"] == 0
    assert persistence["trace_error"] < 1e-10 and persistence["min_eigenvalue"] > -1e-10
    assert persistence["occupation_violation"] < 1e-8 and persistence["max_eigenvalue"] <= 2 + 1e-8
    # linear-response TDDFT (the exact step, ΔG linear in ΔP, no network): physical by
    # construction and, on these weak fields, far ahead of both
    lr = summary["lr-tddft"]["lih"]
    assert lr["trace_error"] < 1e-10 and lr["occupation_violation"] < 1e-10
    assert lr["median_valid_horizon"] >= linear["median_valid_horizon"]
    assert lr["scaled_l2_100"] < 0.1 * min(linear["scaled_l2_100"], persistence["scaled_l2_100"])
    assert summary["linear"]["lih"]["one_step_mse"] == pytest.approx(linear["one_step_mse"])
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"trained_linear", "persistence", "linear", "lr-tddft"}
    assert metrics["settings"]["evaluated_split"] == "test"
    table = [r.split("\t") for r in (tmp_path / "eval" / "metrics.tsv").read_text().splitlines()]
    assert table[0][:8] == ["model", "molecule", "held_out", "n_test", "static_reference",
                            "one_step_mse", "rollout_error_at_100", f"rollout_error_at_{last}"]
    assert "median_valid_horizon" in table[0] and "spectrum_nrmse_20ev" in table[0]
    assert all(row[2] == "geometry" for row in table[1:])
    assert len(table) == 5                            # header + trained, persistence, ridge, lr-tddft
    for plot in ("dipole.png", "error_vs_horizon.png", "spectrum.png"):
        assert (tmp_path / "eval" / plot).stat().st_size > 10_000


def test_held_out_molecule_is_evaluated_zero_shot(lih_store, tmp_path):
    """A molecule kept out of training is scored on all its trajectories, marked zero-shot;
    the per-molecule linear baseline has no fit for it and is left out, not faked."""
    model_dir = train_baseline(lih_store, "persistence", tmp_path / "model",
                               held_out_molecules=("lih",))
    summary = evaluate(lih_store, model_dir, tmp_path / "eval")
    row = summary["trained_persistence"]["lih"]
    assert row["held_out"] == "molecule" and row["n_test"] == 8
    assert "lih" not in summary["linear"]
    table = (tmp_path / "eval" / "metrics.tsv").read_text().splitlines()
    assert {r.split("\t")[2] for r in table[1:]} == {"molecule"}


def test_splits_are_by_geometry_and_deterministic(lih_store):
    groups = {"lih": open_dataset(lih_store, "lih")}
    a = trajectory_splits(groups, seed=3)
    assert a == trajectory_splits(groups, seed=3)
    geometry = groups["lih"].geometry_id.values
    for split, rows in a["lih"].items():
        others = [r for s, rs in a["lih"].items() if s != split for r in rs]
        assert not set(geometry[rows]) & set(geometry[others])
    held = trajectory_splits(groups, held_out_molecules=("lih",))
    assert held["lih"]["train"] == [] and len(held["lih"]["test"]) == 8


def test_rtml_training_learns_the_dynamics_and_beats_the_baselines_on_held_out_geometries(lih_store, tmp_path):
    """A short rtml training on the tiny LiH set (two training geometries): the ΔG loss falls,
    validation comes from training geometries only, and on the held-out geometry the model's
    rollouts beat persistence and the ridge fit; its rollouts stay exactly physical."""
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=6, sequence_epochs=1, frame_batches=40, rollout_horizons=(16, 64),
                      seed=0)
    train, val = load_training_data(lih_store, cfg)
    test_rows = trajectory_splits({"lih": open_dataset(lih_store, "lih")}, cfg.fractions, cfg.seed)["lih"]["test"]
    test_geometries = set(open_dataset(lih_store, "lih").geometry_id.values[test_rows])
    assert test_geometries and val
    assert not {t.geometry_id for t in train + val} & test_geometries       # never reads test
    model_dir = train_rtml(lih_store, tmp_path / "rtml", cfg, progress=False)
    rows = [line.split(",") for line in (model_dir / "train_metrics.csv").read_text().splitlines()]
    loss = [float(r[rows[0].index("fock_loss")]) for r in rows[1:]]
    assert len(loss) == 6 and loss[-1] < 0.4 * loss[0]
    assert float(rows[-1][rows[0].index("rollout_loss")]) > 0            # the last epoch rolls out
    summary = evaluate(lih_store, model_dir, tmp_path / "eval", baselines=("persistence", "linear"))
    rtml, persistence, ridge = (summary[k]["lih"] for k in ("rtml", "persistence", "linear"))
    assert rtml["held_out"] == "geometry"
    assert rtml["median_valid_horizon"] >= ridge["median_valid_horizon"]
    assert rtml["scaled_l2_100"] < 0.5 * persistence["scaled_l2_100"]
    assert rtml["scaled_l2_100"] < ridge["scaled_l2_100"]
    # unitary steps: trace, Hermiticity and occupations exact, no projection needed
    assert rtml["trace_error"] < 1e-10 and rtml["hermiticity_error"] < 1e-12
    assert rtml["min_eigenvalue"] > -1e-10 and rtml["occupation_violation"] < 1e-10
