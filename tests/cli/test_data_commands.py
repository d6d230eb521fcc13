"""``rtml validate`` and ``rtml dataset assemble`` as a user meets them: a static trajectory,
a corrupt file, and output into a pipe that closes early."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import h5py
import numpy as np
import pytest


def rtml(*args, cwd, **kwargs):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "rtml", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env, **kwargs)


@pytest.fixture(scope="module")
def h2_files(tmp_path_factory):
    """H2/STO-3G kicks along z (responds) and x (only s functions on H: no response at all),
    20 steps of the real engine."""
    work = tmp_path_factory.mktemp("h2")
    proc = rtml("propagate", "h2", "--basis", "sto-3g", "--field", "kick:1e-3:z",
                "--field", "kick:1e-3:x", "--dt", "0.2", "--steps", "20", "--grid-level", "1",
                "-q", "--output-dir", "traj", cwd=work)
    assert proc.returncode == 0, proc.stderr
    return work / "traj" / "t00-kick_0.001_z.h5", work / "traj" / "t01-kick_0.001_x.h5"


def test_validate_flags_a_static_trajectory(h2_files, tmp_path):
    moving, static = h2_files
    proc = rtml("validate", str(moving), str(static), cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].endswith("OK (13 checks passed)")
    assert any(line.startswith("  PASS  response") for line in lines)
    assert f"{static}: FAILED (1 of 13 checks failed: response)" in lines
    assert any(line.startswith("  FAIL  response") and "static" in line for line in lines)


def test_assemble_refuses_a_static_trajectory_unless_allowed(h2_files, tmp_path):
    moving, static = h2_files
    proc = rtml("dataset", "assemble", str(moving), str(static), "-o", "s.zarr", "-q",
                cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"rtml: error: {static}: fails check 'response'")
    assert "--allow-static" in proc.stderr
    assert list(tmp_path.iterdir()) == []
    proc = rtml("dataset", "assemble", str(moving), str(static), "-o", "s.zarr", "-q",
                "--allow-static", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "2 trajectories added" in proc.stdout


def test_assemble_names_a_corrupt_file_and_writes_nothing(h2_files, tmp_path):
    moving, _ = h2_files
    bad = tmp_path / "nan.h5"
    shutil.copy(moving, bad)
    with h5py.File(bad, "r+") as f:
        f["dynamics/density_real"][4, 0, 0, 1] = np.nan
    proc = rtml("dataset", "assemble", str(moving), str(bad), "-o", "s.zarr", "-q",
                cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"rtml: error: {bad}: fails validation (finite")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.h5"]


def test_validate_into_a_closed_pipe_ends_quietly(h2_files, tmp_path):
    """``rtml validate ... | head -1``: no BrokenPipeError, status 141 (128 + SIGPIPE)."""
    moving, _ = h2_files
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "rtml", "validate", *[str(moving)] * 300],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    first = proc.stdout.readline()
    proc.stdout.close()  # what head does after its first line
    err = proc.stderr.read()
    assert proc.wait(timeout=300) == 141
    assert first.endswith("OK (13 checks passed)\n")
    assert err == ""
