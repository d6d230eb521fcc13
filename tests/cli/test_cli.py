"""The ``rtml`` command line as a user meets it: outputs, errors, validation, resume."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch

from rtml.cli import main
from rtml.data import read_ground_state, read_trajectory
from rtml.model import ModelConfig, RTMLModel
from rtml.tddft import PROPAGATORS

FAST = ["--dt", "0.2", "--grid-level", "1"]


def rtml(*args, cwd, check=True, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "rtml", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_ladder_table_lists_basis_sizes(tmp_path):
    out = rtml("ladder", cwd=tmp_path).stdout.splitlines()
    rows = {line.split()[0]: line.split() for line in out[1:]}
    assert list(rows) == ["h2p", "h2", "lih", "h2o", "nh3", "ch4", "c2h4", "c6h6"]
    assert [int(rows[name][6]) for name in rows] == [4, 4, 11, 13, 15, 17, 26, 66]


def test_propagate_one_field_writes_a_valid_file(tmp_path):
    proc = rtml("propagate", "h2", "--field", "kick:1e-3:z", *FAST, "--steps", "40",
                "--save-every", "2", "-o", "h2.h5", cwd=tmp_path)
    assert proc.stdout.strip() == "h2.h5"
    assert "propagate h2: 40/40 steps (100%)" in proc.stderr  # plain progress lines in logs
    traj = read_trajectory(tmp_path / "h2.h5")
    assert traj.n_steps == 21 and traj.time[-1] == pytest.approx(8.0)
    assert traj.field_spec["spec"] == "kick:0.001:z"
    assert traj.provenance["inputs_sha256"] and traj.provenance["pyscf_version"]
    assert rtml("validate", "h2.h5", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2.h5"]  # no checkpoint left


def test_validate_fails_on_a_corrupted_file(tmp_path):
    rtml("propagate", "h2", "--field", "kick:1e-3:z", *FAST, "--steps", "10", "-o", "h2.h5",
         cwd=tmp_path)
    with h5py.File(tmp_path / "h2.h5", "r+") as f:
        f["dynamics/density_real"][5, 0, 0, 1] += 1e-3
    proc = rtml("validate", "h2.h5", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert "FAIL  hermiticity" in proc.stdout


def test_several_fields_go_to_a_directory(tmp_path):
    rtml("propagate", "lih", "--field", "kick:1e-3:x", "--field", "gaussian:0.01:0.2:5:2:z",
         "--field", "resonant:0.005:S1:10:z", *FAST, "--steps", "20", "-o", "lih", cwd=tmp_path)
    files = sorted((tmp_path / "lih").glob("*.h5"))
    assert [f.name for f in files] == ["t00-kick_0.001_x.h5", "t01-gaussian_0.01_0.2_5.0_2.0_z.h5",
                                       "t02-resonant_0.005_S1_10.0_z.h5"]
    resonant = read_trajectory(files[2])
    assert resonant.field_spec["omega_source"] == "S1" and resonant.field_spec["omega"] > 0.05
    assert resonant.energy[-1] > resonant.energy[0]  # the drive pumps energy in
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lih"]


def test_spectrum_prints_peaks_and_plots(tmp_path):
    rtml("propagate", "h2", "--field", "kick:1e-4:z", *FAST, "--steps", "1500", "--save-every", "2",
         "-q", "-o", "kick.h5", cwd=tmp_path)
    proc = rtml("spectrum", "kick.h5", "--plot", "spectrum.png", "--json", cwd=tmp_path)
    peaks = json.loads(proc.stdout)["peaks_ev"]
    # H2 PBE0/6-31G: the bright sigma_g -> sigma_u state near 14 eV
    assert any(12.0 < p < 16.0 for p in peaks)
    assert (tmp_path / "spectrum.png").stat().st_size > 10_000


@pytest.mark.parametrize("args,message", [
    (["nosuchmolecule", "--field", "kick:1e-3:z", "--dt", "0.2"], "unknown molecule 'nosuchmolecule'"),
    (["h2", "--field", "kick:1e-3", "--dt", "0.2"], "expected kick:E0:POL"),
    (["h2", "--field", "laser:1:z", "--dt", "0.2"], "unknown type 'laser'"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "0"], "dt must be a positive number"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "-0.1"], "dt must be a positive number"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "nan"], "dt must be a positive number"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "0.2", "--geometry", "missing.xyz"], "no such file"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "0.2", "--geometry", "garbage.xyz"], "cannot read geometry"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "0.2", "--geometry", "water.xyz"], "same order required"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "0.2", "--xc", "nonsense-xc"], "unknown exchange-correlation"),
    (["h2", "--field", "kick:1e-3:z", "--dt", "0.2", "--propagator", "rk4"], "unknown propagator"),
    (["h2o", "--field", "kick:1e-3:z", "--dt", "0.2", "--scf-max-cycle", "1"], "SCF did not converge"),
])
def test_bad_input_is_one_line_and_leaves_no_output(tmp_path, args, message):
    (tmp_path / "garbage.xyz").write_text("this is\nnot a geometry\n")
    (tmp_path / "water.xyz").write_text("3\n\nO 0 0 0\nH 0 0.76 0.58\nH 0 -0.76 0.58\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = rtml("propagate", *args, "--steps", "5", "-o", "out.h5", cwd=tmp_path, check=False)
    assert proc.returncode == 2
    error_lines = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1 and error_lines[0].startswith("rtml: error:"), proc.stderr
    assert message in error_lines[0]
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_nan_during_propagation_is_reported_and_leaves_no_output(tmp_path, monkeypatch, capsys):
    real_step = PROPAGATORS["magnus2"]

    def poisoned_step(p, fock_start, fock_end, field_term, t, dt, fock_past=None):
        """The default propagator, blowing up from t = 1 au (after the checkpoints of steps
        2 and 4 are written)."""
        p_next = real_step(p, fock_start, fock_end, field_term, t, dt, fock_past=fock_past)
        return p_next * np.nan if t >= 1.0 - 1e-9 else p_next

    monkeypatch.setitem(PROPAGATORS, "magnus2", poisoned_step)
    monkeypatch.chdir(tmp_path)
    status = main(["propagate", "h2", "--field", "kick:1e-3:z", *FAST, "--steps", "20",
                   "--checkpoint-every", "2", "-q", "-o", "out.h5"])
    err = capsys.readouterr().err
    assert status == 2
    assert "rtml: error: NaN" in err
    assert list(tmp_path.iterdir()) == []


def test_killed_run_resumes_to_an_identical_file(tmp_path):
    args = ["propagate", "lih", "--field", "kick:1e-3:z", "--field", "gaussian:0.02:0.2:10:3:x",
            *FAST, "--steps", "600", "--checkpoint-every", "50", "-q"]
    reference_dir, killed_dir = tmp_path / "reference", tmp_path / "killed"
    reference_dir.mkdir()
    killed_dir.mkdir()
    rtml(*args, "-o", "out", cwd=reference_dir)

    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "rtml", *args, "-o", "out"], cwd=killed_dir,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed_dir / "out.ckpt"
    deadline = time.time() + 300
    while not (checkpoint / "chunk-000003.frames.npz").exists():  # steps 0, 50, 100, 150 saved
        assert proc.poll() is None, "run finished before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed_dir / "out").exists()

    resumed = rtml(*args, "-o", "out", cwd=killed_dir)
    assert "resuming from checkpoint" in resumed.stderr
    assert not checkpoint.exists()
    for name in ("t00-kick_0.001_z.h5", "t01-gaussian_0.02_0.2_10.0_3.0_x.h5"):
        a = read_trajectory(reference_dir / "out" / name)
        b = read_trajectory(killed_dir / "out" / name)
        assert a.n_steps == b.n_steps == 601
        for key in ("density", "dipole", "energy", "field", "time"):
            assert np.abs(getattr(a, key) - getattr(b, key)).max() <= 1e-12, key


def test_existing_output_needs_force(tmp_path):
    rtml("propagate", "h2", "--field", "none", *FAST, "--steps", "2", "-o", "h2.h5", cwd=tmp_path)
    proc = rtml("propagate", "h2", "--field", "none", *FAST, "--steps", "2", "-o", "h2.h5",
                cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "exists" in proc.stderr
    rtml("propagate", "h2", "--field", "kick:1e-3:x", *FAST, "--steps", "2", "-o", "h2.h5",
         "--force", cwd=tmp_path)
    assert read_trajectory(tmp_path / "h2.h5").field_spec["spec"] == "kick:0.001:x"


def test_workflow_stages_sample_ground_state_and_reuse(tmp_path):
    """sample-geometries -> ground-state -> propagate --ground-state gives the same
    trajectory as a propagation that recomputes the ground state itself."""
    listing = rtml("sample-geometries", "lih", "--n", "3", "--hessian-xc", "hf",
                   "--hessian-basis", "sto-3g", "--output-dir", "geoms", cwd=tmp_path).stdout
    assert [line.split("\t")[0] for line in listing.splitlines()] == [
        "geoms/g00.xyz", "geoms/g01.xyz", "geoms/g02.xyz"]
    assert listing.splitlines()[0].split("\t")[1] == "eq"
    rtml("ground-state", "lih", "--geometry", "geoms/g01.xyz", "--grid-level", "1", "-o", "gs.h5",
         cwd=tmp_path)
    gs = read_ground_state(tmp_path / "gs.h5")
    assert len(gs.excitation_energies) == 10 and np.all(np.diff(gs.excitation_energies) >= 0)
    fields = ["--field", "resonant:0.005:B1:10:auto", "--field", "kick:1e-3:z"]
    common = ["lih", "--geometry", "geoms/g01.xyz", *fields, *FAST, "--steps", "30", "-q"]
    rtml("propagate", *common, "--ground-state", "gs.h5", "--output-dir", "reused", cwd=tmp_path)
    rtml("propagate", *common, "--output-dir", "fresh", cwd=tmp_path)
    for name in ("t00-resonant_0.005_B1_10.0_auto.h5", "t01-kick_0.001_z.h5"):
        a, b = read_trajectory(tmp_path / "reused" / name), read_trajectory(tmp_path / "fresh" / name)
        assert np.abs(a.density - b.density).max() < 1e-8
        assert a.extra_attrs["geometry_id"] == "stretch-b0-p10"
    resonant = read_trajectory(tmp_path / "reused" / "t00-resonant_0.005_B1_10.0_auto.h5")
    brightest = np.argmax(gs.oscillator_strengths)
    assert resonant.field_spec["omega"] == pytest.approx(gs.excitation_energies[brightest])
    # a ground state of another geometry is refused
    proc = rtml("propagate", "lih", "--geometry", "geoms/g02.xyz", *fields, *FAST, "--steps", "3",
                "--ground-state", "gs.h5", "--output-dir", "wrong", cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "does not match" in proc.stderr


def _saved_model(path):
    """An rtml model directory as ``rtml train`` writes it (untrained weights, gates on)."""
    torch.manual_seed(0)
    model = RTMLModel(ModelConfig()).double()
    with torch.no_grad():
        model.dynamics.head.weight.normal_(0.0, 0.1)
        model.input_scale.fill_(1e-3)
        model.output_scale.fill_(1e-4)
    path.mkdir()
    torch.save(model.state_dict_for_checkpoint(), path / "model.pt")
    return path


def test_model_engine_writes_the_engines_schema_and_file_names(tmp_path):
    """``--engine model`` starts from the SCF ground state, applies the kick as the engine
    does, and writes the same schema and file names, with the model's hash in the
    provenance; the file passes validation (trace, Hermiticity, idempotency)."""
    model_dir = _saved_model(tmp_path / "net")
    fields = ["--field", "kick:1e-3:z", "--field", "gaussian:0.01:0.3:4:2:x"]
    rtml("propagate", "lih", *fields, *FAST, "--steps", "30", "--save-every", "3",
         "--output-dir", "engine", cwd=tmp_path)
    proc = rtml("propagate", "lih", *fields, *FAST, "--steps", "30", "--save-every", "3",
                "--engine", "model", "--model", str(model_dir), "--output-dir", "model", cwd=tmp_path)
    names = sorted(p.name for p in (tmp_path / "engine").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "model").iterdir())
    for name in names:
        ref, got = read_trajectory(tmp_path / "engine" / name), read_trajectory(tmp_path / "model" / name)
        assert got.density.shape == ref.density.shape and np.allclose(got.time, ref.time)
        np.testing.assert_allclose(got.density[0], ref.density[0], atol=1e-9)  # same kicked start
        np.testing.assert_allclose(got.field, ref.field, atol=1e-14)
        assert got.fock is None and got.ground_state_density is not None
        assert got.extra_attrs["engine"] == "model" and got.propagator == "model-magnus2-pc"
        sha = hashlib.sha256((model_dir / "model.pt").read_bytes()).hexdigest()
        assert got.provenance["model_sha256"] == sha
        assert float(np.abs(got.density[-1] - got.density[0]).max()) > 1e-5     # it moves
    assert rtml("validate", *[str(tmp_path / "model" / n) for n in names], cwd=tmp_path).returncode == 0
    assert "model rollout: 30 steps x 2 fields" in proc.stderr


def test_hybrid_engine_records_what_made_each_frame(tmp_path):
    """``--engine hybrid`` writes the engine's file names and schema plus, per frame, what
    produced it and, per file, every anchor with its reason; the files pass validation."""
    model_dir = _saved_model(tmp_path / "net")
    fields = ["--field", "kick:1e-3:z", "--field", "gaussian:0.01:0.3:4:2:x"]
    proc = rtml("propagate", "lih", *fields, *FAST, "--steps", "30", "--save-every", "3",
                "--engine", "hybrid", "--model", str(model_dir), "--calibration-steps", "4",
                "--error-tol", "10", "--output-dir", "hybrid", cwd=tmp_path)
    names = sorted(p.name for p in (tmp_path / "hybrid").iterdir())
    assert names == ["t00-kick_0.001_z.h5", "t01-gaussian_0.01_0.3_4.0_2.0_x.h5"]
    for name in names:
        got = read_trajectory(tmp_path / "hybrid" / name)
        assert got.extra_attrs["engine"] == "hybrid" and got.fock is None
        assert got.frame_source.shape == (11,) and got.frame_source[0] == 0
        assert got.frame_source[1:].any()                     # the model made frames
        anchors = got.extra_attrs["hybrid_anchors"]
        assert anchors[0]["reason"] == "start" and anchors[0]["engine_steps"] == 4
        sha = hashlib.sha256((model_dir / "model.pt").read_bytes()).hexdigest()
        assert got.provenance["model_sha256"] == sha
    assert rtml("validate", *[str(tmp_path / "hybrid" / n) for n in names], cwd=tmp_path).returncode == 0
    assert "hybrid: " in proc.stderr and "anchors" in proc.stderr
    assert not (tmp_path / "hybrid.ckpt").exists()    # each field's checkpoint, gone once written


@pytest.mark.parametrize("args,message", [
    (["--engine", "model"], "no pretrained model 'ladder-medium' is shipped with this rtml "
                            "(shipped: none)"),
    (["--model", "somewhere"], "--model is only used with --engine model"),
    (["--engine", "model", "--model", "nowhere"],
     "--model 'nowhere' is neither a model directory nor a shipped pretrained model"),
    (["--engine", "model", "--model", "."], "no trained model at"),
    (["--engine", "hybrid", "--error-tol", "0"], "hybrid error-tol must be a positive number"),
    (["--engine", "hybrid", "--anchor-steps", "0"], "hybrid anchor-steps must be a positive integer"),
])
def test_model_engine_bad_input_is_one_line(tmp_path, monkeypatch, args, message):
    # without --model the shipped model is used: here a directory that ships none
    monkeypatch.setenv("RTML_PRETRAINED", str(tmp_path / "no-models"))
    proc = rtml("propagate", "h2", "--field", "kick:1e-3:z", *FAST, "--steps", "5", *args,
                "-o", "out.h5", cwd=tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and message in proc.stderr
    assert not (tmp_path / "out.h5").exists()
