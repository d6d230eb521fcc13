"""``rtml train`` killed, resumed, fed bad data or a full disk, as a user meets it.

Every run is a real ``python -m rtml train`` on a tiny H2 store (4 geometries x 2 fields x 40
steps, made with the rtml commands), single-threaded, 3 short epochs (the last rolls out;
the best validation error comes at epoch 1, so "the best model" and "the last model"
differ). A resumed run must end bit-identical to an uninterrupted one; a failed run says so
in one line and leaves every file it did not finish as it was.
"""

import csv
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import zarr

from rtml.data import open_dataset, trajectory_splits

#: A fast run: a few batches per epoch, a narrow model; the last epoch rolls out.
FAST = ["--epochs", "3", "--sequence-epochs", "1", "--frame-batches", "4", "--horizons", "4,8",
        "--d-model", "8", "--threads", "1", "-q"]
OUTPUTS = {"checkpoint.pt", "model.pt", "train_metrics.csv", "tensorboard"}


def rtml_train(*args, cwd, preexec_fn=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "rtml", "train", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600,
                          preexec_fn=preexec_fn)


def metrics(model_dir) -> list[dict]:
    """``train_metrics.csv`` rows without the wall time (the only column that may differ)."""
    with open(model_dir / "train_metrics.csv", newline="") as fh:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(fh)]


def weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(a, b):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, different


def file_bytes(model_dir) -> dict:
    return {p.name: p.read_bytes() for p in sorted(model_dir.iterdir()) if p.is_file()}


@pytest.fixture(scope="module")
def straight(h2_store, tmp_path_factory):
    """An uninterrupted 3-epoch run."""
    out = tmp_path_factory.mktemp("straight") / "model"
    proc = rtml_train(h2_store, *FAST, "-o", out, cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    val = [float(row["val_rollout_error"]) for row in metrics(out)]
    assert len(val) == 3 and int(np.argmin(val)) != 2, "the best model must not be the last"
    return out


@pytest.fixture(scope="module")
def killed(h2_store, tmp_path_factory):
    """The same run killed with SIGKILL during its third epoch (two epochs finished)."""
    out = tmp_path_factory.mktemp("killed") / "model"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "rtml", "train", str(h2_store), *FAST,
                             "-o", str(out)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (out / "train_metrics.csv").is_file() or len(metrics(out)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, "no second epoch"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert len(metrics(out)) == 2, "killed during the third epoch"
    return out


def copy_of(model_dir, tmp_path):
    """A copy of a run's directory, for one way of rerunning it."""
    out = tmp_path / "model"
    shutil.copytree(model_dir, out)
    return out


def test_resume_after_a_kill_is_bit_identical(h2_store, straight, killed, tmp_path):
    out = copy_of(killed, tmp_path)
    proc = rtml_train(h2_store, *FAST, "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert metrics(out) == metrics(straight)
    assert_same_weights(out / "model.pt", straight / "model.pt")
    assert_same_weights(out / "checkpoint.pt", straight / "checkpoint.pt")
    assert {p.name for p in out.iterdir()} == OUTPUTS  # no temporaries left


def test_a_metrics_row_ahead_of_the_checkpoint_is_not_duplicated(h2_store, straight, killed,
                                                                 tmp_path):
    """A kill after epoch 2's metrics row but before its checkpoint: the rerun redoes the
    epoch, and the table holds each epoch once."""
    out = copy_of(killed, tmp_path)
    row_of_epoch_2 = (straight / "train_metrics.csv").read_text().splitlines(keepends=True)[3]
    with open(out / "train_metrics.csv", "a", newline="") as fh:
        fh.write(row_of_epoch_2)
    assert rtml_train(h2_store, *FAST, "-o", out, cwd=tmp_path).returncode == 0
    assert [row["epoch"] for row in metrics(out)] == ["0", "1", "2"]
    assert metrics(out) == metrics(straight)


def test_outputs_deleted_by_a_workflow_manager_are_rebuilt(h2_store, straight, killed, tmp_path):
    """Snakemake deletes the declared outputs (model.pt, train_metrics.csv) of a killed job
    before rerunning it; rtml resumes from its checkpoint and rebuilds both: every epoch's
    metrics, and the best model, not the last one."""
    out = copy_of(killed, tmp_path)
    (out / "model.pt").unlink()
    (out / "train_metrics.csv").unlink()
    assert rtml_train(h2_store, *FAST, "-o", out, cwd=tmp_path).returncode == 0
    assert metrics(out) == metrics(straight)
    assert_same_weights(out / "model.pt", straight / "model.pt")
    best = torch.load(out / "model.pt", weights_only=False)["val_rollout_error"]
    assert best == min(float(row["val_rollout_error"]) for row in metrics(out))


def test_a_damaged_checkpoint_starts_over(h2_store, straight, killed, tmp_path):
    out = copy_of(killed, tmp_path)
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[:len(data) // 2])  # truncated
    proc = rtml_train(h2_store, *FAST, "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "is unreadable" in proc.stderr and "Traceback" not in proc.stderr
    assert metrics(out) == metrics(straight)
    assert_same_weights(out / "model.pt", straight / "model.pt")


@pytest.mark.parametrize("split", ["train", "val"])
def test_nan_in_the_store_is_refused_and_the_model_kept(h2_store, straight, tmp_path, split,
                                                         error_line):
    """A store damaged after assembly (NaN in one density element of one trajectory) is
    refused before training, naming the trajectory; the previous model directory stays."""
    store = tmp_path / "damaged.zarr"
    shutil.copytree(h2_store, store)
    row = trajectory_splits({"h2": open_dataset(store, "h2")})["h2"][split][0]
    rho = zarr.open_group(str(store), mode="r+", zarr_format=3)["h2"]["rho"]
    frames = rho[row]
    frames[5, 0, 0, 1] = np.nan
    rho[row] = frames
    out = copy_of(straight, tmp_path)
    before = file_bytes(out)
    line = error_line(rtml_train(store, *FAST, "--restart", "-o", out, cwd=tmp_path))
    traj_id = str(open_dataset(store, "h2").traj_id.values[row])
    assert f"trajectory '{traj_id}'" in line and "non-finite values in rho" in line
    assert file_bytes(out) == before


def test_a_full_disk_leaves_the_previous_files(h2_store, straight, tmp_path, error_line):
    """Writes fail past a file-size limit that lets model.pt through but not a checkpoint
    (the same write errors as a full disk): one line, and the finished run's files intact."""
    out = copy_of(straight, tmp_path)
    before = file_bytes(out)
    limit = int(1.5 * (out / "model.pt").stat().st_size)
    assert (out / "checkpoint.pt").stat().st_size > limit

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    other_settings = [*FAST, "--epochs", "4"]  # the run starts over
    line = error_line(rtml_train(h2_store, *other_settings, "-o", out, cwd=tmp_path,
                                 preexec_fn=limit_file_size))
    assert f"cannot write '{out / 'checkpoint.pt'}'" in line
    assert file_bytes(out) == before
    assert {p.name for p in out.iterdir()} == OUTPUTS


@pytest.mark.parametrize("args,message", [
    (["missing.zarr", *FAST], "dataset store 'missing.zarr' does not exist"),
    (["STORE", *FAST, "--epochs", "0"], "--epochs must be >= 1"),
    (["STORE", "--epochs", "0", "--model", "linear"], "--epochs must be >= 1"),
    (["STORE", *FAST, "--frame-batches", "0", "--sequence-epochs", "0"], "no training step"),
    (["STORE", *FAST, "--lr", "1e12"], "training diverged: non-finite"),
], ids=["missing-store", "epochs-0", "epochs-0-baseline", "no-steps", "diverges"])
def test_a_refused_run_leaves_no_directory(h2_store, tmp_path, args, message, error_line):
    args = [str(h2_store) if a == "STORE" else a for a in args]
    line = error_line(rtml_train(*args, "-o", tmp_path / "new" / "model", cwd=tmp_path))
    assert message in line
    assert not (tmp_path / "new").exists()
