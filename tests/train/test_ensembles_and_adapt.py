"""Ensembles (``rtml train --members``), few-shot fine-tuning (``rtml adapt``, ``--shots``) and
shipped pretrained models (``rtml models``, ``--engine model`` without ``--model``), on the
tiny H2 store of ``conftest.py``, as a user runs them."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from rtml import InputError
from rtml.cli import main
from rtml.data import open_store_groups, read_trajectory, trajectory_data
from rtml.model import (DEFAULT_PRETRAINED, ENSEMBLE_FILE, load_model, midpoint_fields,
                        model_sha256, resolve_model_dir, rollout_members)
from rtml.train import few_shot_selection

FAST = ["--epochs", "2", "--sequence-epochs", "1", "--frame-batches", "4", "--horizons", "4,8",
        "--d-model", "8", "--threads", "1", "-q"]


def rtml(*args, cwd=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "rtml", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def state(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def ensemble(h2_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "ens"
    proc = rtml("train", h2_store, *FAST, "--members", "2", "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_members_share_the_split_and_differ_in_their_weights(ensemble):
    listed = json.loads((ensemble / ENSEMBLE_FILE).read_text())["members"]
    assert listed == ["member-0", "member-1"]
    s0, s1 = (state(ensemble / m / "model.pt") for m in listed)
    assert s0["split"] == s1["split"] and s0["dataset_sha256"] == s1["dataset_sha256"]
    assert (s0["train_config"]["init_seed"], s1["train_config"]["init_seed"]) == (0, 1)
    assert any(not torch.equal(s0["state_dict"][k], s1["state_dict"][k]) for k in s0["state_dict"])


def test_rerunning_the_ensemble_keeps_finished_members(ensemble, h2_store):
    before = {p: p.read_bytes() for p in sorted(ensemble.rglob("*.pt"))}
    proc = rtml("train", h2_store, *FAST, "--members", "2", "-o", ensemble)
    assert proc.returncode == 0, proc.stderr
    assert {p: p.read_bytes() for p in sorted(ensemble.rglob("*.pt"))} == before


def test_the_ensemble_steps_with_the_members_mean_response(ensemble, h2_store):
    propagator, st = load_model(ensemble)
    assert len(propagator.members) == 2 and len(st["members"]) == 2
    one, _ = load_model(ensemble / "member-0")
    ds = open_store_groups(h2_store)["h2"]
    traj = trajectory_data(ds, 0, "h2")
    system = one.system(traj)
    rho0 = system.to_orthonormal_density(torch.as_tensor(traj.rho[:1]).to(torch.complex128))
    field = torch.as_tensor(midpoint_fields(traj))[None]
    with torch.no_grad():
        alone = rollout_members([one.model], rho0, field, system, 0.2)
        twice = rollout_members([one.model, one.model], rho0, field, system, 0.2)
        mixed = rollout_members(propagator.members, rho0, field, system, 0.2)
    # the mean of two identical responses is the response: the same rollout to rounding
    assert torch.allclose(twice, alone, atol=1e-12, rtol=0)
    # a unitary step of the mean: trace and occupations of the ensemble rollout are exact
    occ = torch.linalg.eigvalsh(0.5 * (mixed + mixed.conj().transpose(-1, -2)))
    assert (occ > -1e-10).all() and (occ < 2 + 1e-10).all()
    assert torch.allclose(mixed.diagonal(dim1=-2, dim2=-1).sum(-1).real,
                          torch.full(mixed.shape[:-2], 2.0, dtype=torch.float64), atol=1e-10)
    other, _ = load_model(ensemble / "member-1")
    with torch.no_grad():
        second = rollout_members([other.model], rho0, field, system, 0.2)
    # and it is neither member alone: (the learned part being small) half-way between them
    apart = float((alone - second).abs().max())
    assert apart > 1e-10
    assert float((mixed - 0.5 * (alone + second)).abs().max()) < 0.1 * apart


def test_the_ensemble_propagates_as_an_engine_and_records_its_hash(ensemble, tmp_path):
    out = tmp_path / "t.h5"
    proc = rtml("propagate", "h2", "--field", "kick:2e-3:z", "--dt", "0.2", "--steps", "20",
                "--grid-level", "1", "--engine", "model", "--model", ensemble, "-q", "-o", out)
    assert proc.returncode == 0, proc.stderr
    traj = read_trajectory(out)
    assert traj.provenance["model_sha256"] == model_sha256(ensemble)
    assert model_sha256(ensemble) != model_sha256(ensemble / "member-0")


def test_members_of_different_splits_are_refused(ensemble, h2_store, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(ensemble, mixed)
    proc = rtml("train", h2_store, *FAST, "--seed", "3", "-o", mixed / "member-1", "--restart")
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(InputError, match="member .*member-1.* differs .* in its split"):
        load_model(mixed)


def test_few_shot_selection_is_seeded_nested_and_in_store_order():
    items = list(range(10))
    five = few_shot_selection(items, 5, 7, "s")
    assert five == sorted(five) and len(set(five)) == 5
    assert set(five) <= set(few_shot_selection(items, 8, 7, "s"))
    assert five != few_shot_selection(items, 5, 8, "s")
    with pytest.raises(InputError, match="only 10 training trajectories"):
        few_shot_selection(items, 11, 0, "s")


def test_adapt_fine_tunes_from_the_pretrained_weights_and_never_validates_worse(
        ensemble, h2_store, tmp_path):
    pretrained = ensemble / "member-0"
    out = tmp_path / "adapted"
    proc = rtml("adapt", pretrained, h2_store, "--shots", "2", "--epochs", "2", "--threads", "1",
                "-q", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "training on 2 trajectories" in proc.stderr
    val0 = float(proc.stderr.split("pretrained model: val e ")[1].split()[0])
    st = state(out / "model.pt")
    assert st["train_config"]["shots"] == 2
    assert st["train_config"]["init_model_sha256"] == model_sha256(pretrained)
    assert st["config"] == state(pretrained / "model.pt")["config"]
    assert st["val_rollout_error"] <= val0


@pytest.mark.parametrize("args, message", [
    (["--shots", "0"], "--shots must be >= 1"),
    (["--shots", "99"], "--shots 99: .* has only 4 training trajectories"),
])
def test_adapt_refuses_bad_shots_in_one_line(ensemble, h2_store, tmp_path, args, message,
                                             error_line):
    out = tmp_path / "adapted"
    line = error_line(rtml("adapt", ensemble / "member-0", h2_store, *args, "-q", "-o", out))
    assert re.search(message, line), line
    assert not out.exists()


def test_the_ridge_baseline_fits_on_the_same_shots(h2_store, tmp_path):
    out = tmp_path / "ridge"
    proc = rtml("train", h2_store, "--model", "linear", "--shots", "1", "-q", "-o", out)
    assert proc.returncode == 0, proc.stderr
    rows = (out / "train_metrics.csv").read_text().splitlines()
    n_train = rows[1].split(",")[rows[0].split(",").index("n_train")]
    assert n_train == "1"


def test_a_shipped_model_is_listed_and_used_by_default(ensemble, tmp_path, monkeypatch, capsys):
    root = tmp_path / "pretrained"
    shipped = root / DEFAULT_PRETRAINED
    shutil.copytree(ensemble, shipped)
    (shipped / "card.json").write_text(json.dumps({
        "description": "test ensemble", "data": {"summary": "tiny H2 store"},
        "hashes": {"model_sha256": model_sha256(shipped), "members": {"member-0": "a", "member-1": "b"}},
        "summary": ["held-out geometries: measured here"]}))
    monkeypatch.setenv("RTML_PRETRAINED", str(root))
    assert resolve_model_dir(None) == shipped
    assert resolve_model_dir(DEFAULT_PRETRAINED) == shipped
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert f"{DEFAULT_PRETRAINED} (default of rtml propagate --engine model)" in listing
    assert "members  2" in listing and "held-out geometries: measured here" in listing
    out = tmp_path / "t.h5"
    assert main(["propagate", "h2", "--field", "kick:2e-3:z", "--dt", "0.2", "--steps", "10",
                 "--grid-level", "1", "--engine", "model", "-q", "-o", str(out)]) == 0
    assert read_trajectory(out).provenance["model_sha256"] == model_sha256(shipped)
    with pytest.raises(InputError, match="neither a model directory nor a shipped"):
        resolve_model_dir("no-such-model")


def test_evaluating_an_ensemble_writes_its_spread_calibration(ensemble, h2_store, tmp_path):
    """``rtml evaluate`` on an ensemble bins its spread against its error on the test split
    (one step from each true frame, and the spread accumulated along a free rollout)."""
    proc = rtml("evaluate", h2_store, "--model", ensemble, "-o", tmp_path / "eval")
    assert proc.returncode == 0, proc.stderr
    calibration = json.loads((tmp_path / "eval" / "calibration.json").read_text())
    assert (tmp_path / "eval" / "calibration.png").stat().st_size > 0
    for kind in ("one_step", "rollout"):
        table = calibration[kind]["h2"]
        assert len(table) == 5 and sum(row["n"] for row in table) == calibration["pairs"]["h2"]
        spreads = [row["mean_spread"] for row in table]
        assert spreads == sorted(spreads) and spreads[0] >= 0 and spreads[-1] > 0
        assert all(row["mean_error"] > 0 for row in table)
        assert isinstance(calibration["monotonic"][kind]["h2"], bool)
    assert "spread calibration (one_step)" in proc.stderr
