"""A propagation job killed mid-way resumes from its checkpoint when the workflow reruns.

Snakemake runs in a subprocess (its own process group) on a config whose single LiH
propagation takes ~15 s; once the job's checkpoint holds a state file the whole process
group gets SIGKILL. The rerun (``--rerun-incomplete``) must resume the propagation from the
checkpoint, not from t = 0, and produce a complete, valid trajectory and dataset.
"""

import os
import signal
import subprocess
import time

import h5py
import pytest

from smk_helpers import (REPO, SNAKEFILE, assert_store_matches_files, h5_files,
                         snakemake_run, write_config)

STEPS = 1000
CONFIG = {
    "molecules": {"lih": {"geometries": 1, "trajectories": 1}},
    "level_of_theory": {"grid_level": 1},
    "ground_state": {"nstates": 4},
    "propagation": {"dt": 0.2, "steps": STEPS, "checkpoint_every": 50},
    "training_sets": {},
}

pytestmark = pytest.mark.timeout(600)


def test_killed_propagation_resumes(tmp_path):
    configfile = write_config(tmp_path / "config.yaml", CONFIG)
    base = ["snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(tmp_path),
            "--configfile", str(configfile), "--replace-workflow-config", "--cores", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    state = tmp_path / "results" / "trajectories" / "lih" / "g00.ckpt" / "state.npz"
    with open(tmp_path / "first-run.log", "w") as log:
        proc = subprocess.Popen(base + ["results/dataset.zarr"], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        chunk = state.parent / "chunk-000002.frames.npz"  # steps 0, 50, 100 are safe
        while not (state.exists() and chunk.exists()):
            assert proc.poll() is None, (tmp_path / "first-run.log").read_text()
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    traj_dir = tmp_path / "results" / "trajectories" / "lih" / "g00"
    assert not list(traj_dir.glob("*.h5")), "killed before the trajectory was written"
    assert state.parent.is_dir(), "the checkpoint survives the kill"
    ground_state = tmp_path / "results" / "ground_states" / "lih" / "g00.h5"
    gs_mtime = ground_state.stat().st_mtime_ns

    unlock = subprocess.run(base + ["--unlock"], cwd=REPO, capture_output=True, text=True)
    assert unlock.returncode == 0, unlock.stderr
    snakemake_run(tmp_path, ["results/dataset.zarr"], config=CONFIG, dryrun=False,
                  cores=1, rerun_incomplete=True)

    log = (tmp_path / "results" / "logs" / "propagate" / "lih" / "g00.log").read_text()
    assert "resuming from checkpoint" in log, log
    assert ground_state.stat().st_mtime_ns == gs_mtime, "the ground state was not redone"
    assert not state.parent.exists(), "checkpoint removed after success"
    files = h5_files(tmp_path)
    assert len(files) == 1
    with h5py.File(files[0], "r") as h5:
        time_au = h5["dynamics/time"][...]
        assert len(time_au) == STEPS + 1
        assert time_au[-1] == pytest.approx(0.2 * STEPS)
    from rtml.data import validate_trajectory

    report = validate_trajectory(files[0])
    assert report.ok, "\n".join(report.format_lines())
    assert_store_matches_files(tmp_path / "results" / "dataset.zarr", files)
