"""``rtml propagate`` against kills, damaged checkpoints and hostile inputs (issue 14).

A run is killed while it writes its output by a wrapper that replaces the trajectory writer
with one that leaves half a temporary file and SIGKILLs its own process: the kill lands at
the same point every time. Outputs are compared bit for bit (single-threaded runs are
deterministic).
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rtml.data import read_trajectory

FAST = ["--dt", "0.2", "--grid-level", "1", "--basis", "sto-3g"]
RUN = ["propagate", "h2", "--field", "kick:1e-3:z", *FAST, "--steps", "20",
       "--checkpoint-every", "5", "-q"]
KILL_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path
import rtml.data

def killed_while_writing(path, traj):
    path = Path(path)
    path.with_name(f".{path.name}.tmp-{os.getpid()}").write_bytes(b"half an HDF5 file")
    os.kill(os.getpid(), signal.SIGKILL)

rtml.data.write_trajectory = killed_while_writing
from rtml.cli import main
sys.exit(main(sys.argv[1:]))
"""
KILL_AFTER_WRITING = """
import os, signal, sys
import rtml.data

write = rtml.data.write_trajectory

def written_then_killed(path, traj):
    write(path, traj)
    os.kill(os.getpid(), signal.SIGKILL)

rtml.data.write_trajectory = written_then_killed
from rtml.cli import main
sys.exit(main(sys.argv[1:]))
"""
QUANTITIES = ("density", "fock", "energy", "dipole", "field", "time")


def rtml(*args, cwd, script=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = ["-c", script] if script else ["-m", "rtml"]
    return subprocess.run([sys.executable, *command, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env=env)


def error_line(proc) -> str:
    """The one error line of a failed run (asserting there is exactly one, no traceback)."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and lines[0].startswith("rtml: error:"), proc.stderr
    return lines[0]


def assert_same_trajectory(a_path, b_path):
    a, b = read_trajectory(a_path), read_trajectory(b_path)
    for key in QUANTITIES:
        assert np.array_equal(getattr(a, key), getattr(b, key)), key


def leftovers(directory):
    return sorted(p.name for p in directory.iterdir() if ".tmp-" in p.name or ".old-" in p.name)


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
    """A finished run (``reference/out.h5``) and the same run killed while writing its
    output (``killed/``: the complete checkpoint and half a temporary file)."""
    root = tmp_path_factory.mktemp("killed_run")
    (root / "reference").mkdir()
    (root / "killed").mkdir()
    assert rtml(*RUN, "-o", "out.h5", cwd=root / "reference").returncode == 0
    proc = rtml(*RUN, "-o", "out.h5", cwd=root / "killed", script=KILL_WHILE_WRITING)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return root


def copy_of_killed_run(killed_run, tmp_path):
    shutil.copytree(killed_run / "killed", tmp_path / "run")
    return tmp_path / "run"


def test_kill_while_writing_resumes_from_the_complete_checkpoint(killed_run, tmp_path):
    run = copy_of_killed_run(killed_run, tmp_path)
    assert not (run / "out.h5").exists() and (run / "out.h5.ckpt" / "state.npz").is_file()
    assert leftovers(run)  # the killed writer's temporary file
    proc = rtml(*RUN, "-o", "out.h5", cwd=run)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from checkpoint out.h5.ckpt at step 20" in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["out.h5"]  # no checkpoint, no temporary
    assert_same_trajectory(killed_run / "reference" / "out.h5", run / "out.h5")


def test_kill_after_the_output_landed_leaves_no_checkpoint_for_good(killed_run, tmp_path):
    """Killed after the output is in place but before its checkpoint is removed: the rerun
    removes the finished run's checkpoint (and, without --force, refuses to overwrite the
    complete output), so nothing is left behind for good."""
    proc = rtml(*RUN, "-o", "out.h5", cwd=tmp_path, script=KILL_AFTER_WRITING)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert (tmp_path / "out.h5").is_file() and (tmp_path / "out.h5.ckpt").is_dir()
    proc = rtml(*RUN, "-o", "out.h5", cwd=tmp_path)
    assert "exists; remove it or pass --force" in error_line(proc)
    assert "removing checkpoint out.h5.ckpt: the run it belongs to finished" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.h5"]
    assert_same_trajectory(killed_run / "reference" / "out.h5", tmp_path / "out.h5")


def test_kill_while_writing_a_directory_leaves_nothing_after_the_rerun(tmp_path):
    fields = ["propagate", "h2", "--field", "kick:1e-3:z", "--field", "none", *FAST,
              "--steps", "6", "--checkpoint-every", "3", "-q", "-o", "out"]
    proc = rtml(*fields, cwd=tmp_path, script=KILL_WHILE_WRITING)
    assert proc.returncode == -signal.SIGKILL
    assert leftovers(tmp_path) and (tmp_path / "out.ckpt").is_dir()
    proc = rtml(*fields, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "resuming from checkpoint out.ckpt at step 6" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert len(list((tmp_path / "out").iterdir())) == 2


@pytest.mark.parametrize("damage", ["garbage state", "missing chunk", "truncated chunk"])
def test_damaged_checkpoint_is_reported_and_started_over(killed_run, tmp_path, damage):
    run = copy_of_killed_run(killed_run, tmp_path)
    checkpoint = run / "out.h5.ckpt"
    if damage == "garbage state":
        (checkpoint / "state.npz").write_bytes(os.urandom(300))
    elif damage == "missing chunk":
        (checkpoint / "chunk-000002.frames.npz").unlink()
    else:
        chunk = checkpoint / "chunk-000001.density.npy"
        chunk.write_bytes(chunk.read_bytes()[:-40])
    proc = rtml(*RUN, "-o", "out.h5", cwd=run)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "checkpoint out.h5.ckpt is damaged" in warnings[0]
    assert "starting over from step 0" in warnings[0]
    assert "resuming" not in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["out.h5"]
    assert_same_trajectory(killed_run / "reference" / "out.h5", run / "out.h5")


def test_restart_ignores_the_checkpoint(killed_run, tmp_path):
    run = copy_of_killed_run(killed_run, tmp_path)
    proc = rtml(*RUN, "-o", "out.h5", "--restart", cwd=run)
    assert proc.returncode == 0, proc.stderr
    assert "resuming" not in proc.stderr and "--restart: removing checkpoint" in proc.stderr
    assert sorted(p.name for p in run.iterdir()) == ["out.h5"]
    assert_same_trajectory(killed_run / "reference" / "out.h5", run / "out.h5")


def test_force_never_replaces_a_fifo_or_a_foreign_directory(tmp_path):
    """A FIFO stands in for /dev/null (which --force replaced as root); sockets and device
    files are refused the same way (tests/test_atomic.py)."""
    os.mkfifo(tmp_path / "fifo.h5")
    line = error_line(rtml(*RUN, "-o", "fifo.h5", "--force", cwd=tmp_path))
    assert "'fifo.h5' is a FIFO, not a regular file or directory" in line
    assert (tmp_path / "fifo.h5").is_fifo()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    line = error_line(rtml(*RUN, "--output-dir", "mine", "--force", cwd=tmp_path))
    assert "is a directory rtml did not write (it holds 'thesis.tex')" in line
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"


def test_output_directory_that_is_a_symbolic_link_is_refused_before_any_work(tmp_path):
    """(Links to files, and dangling ones, are refused the same way: tests/test_atomic.py.)"""
    (tmp_path / "target").mkdir()
    (tmp_path / "runs").symlink_to("target")
    proc = rtml(*RUN, "--output-dir", "runs", cwd=tmp_path)
    line = error_line(proc)
    assert "'runs' is a symbolic link (to 'target')" in line
    assert "refuses to write through links" in line
    assert "ground state" not in proc.stderr  # refused before the SCF
    assert list((tmp_path / "target").iterdir()) == []


@pytest.mark.parametrize("command", [
    ["propagate", "close.xyz", "--field", "kick:1e-3:z", *FAST, "--steps", "2", "-o", "o.h5"],
    ["ground-state", "close.xyz", "--basis", "sto-3g", "-o", "gs.h5"],
    ["sample-geometries", "close.xyz", "--n", "2", "--output-dir", "geometries"],
])
def test_atoms_at_the_same_position_are_one_line(tmp_path, command):
    (tmp_path / "close.xyz").write_text("2\n\nH 0 0 0.3\nH 0 0 0.3\n")
    line = error_line(rtml(*command, cwd=tmp_path))
    assert "atoms 1 (H) and 2 (H) are 0.000 Å apart" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["close.xyz"]


def test_too_long_a_time_step_stops_with_one_line_naming_it(tmp_path):
    proc = rtml("propagate", "h2", "--field", "kick:1.0:z", "--dt", "2.0", "--steps", "60",
                "--grid-level", "1", "-q", "-o", "h2.h5", cwd=tmp_path)
    line = error_line(proc)
    assert "energy drifted by" in line and "with the field off" in line
    assert "at step 1 (t = 2.000 au)" in line and "dt = 2 au" in line
    assert list(tmp_path.iterdir()) == []  # no file, no checkpoint


def test_absurd_fields_and_time_steps_are_warned_about(tmp_path):
    proc = rtml("propagate", "h2", "--field", "kick:10:z", "--field", "gaussian:1e6:0.2:5:2:x",
                "--dt", "5", *FAST[2:], "--steps", "1", "-q", "-o", "out", cwd=tmp_path)
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line]
    assert any("kick strength |κ| 10 au of field kick:10.0:z is above 0.1 au" in w
               for w in warnings), proc.stderr
    assert any("field amplitude |E0| 1e+06 au" in w for w in warnings)
    assert any("time step dt = 5 au is above 1 au" in w for w in warnings)
    assert proc.stderr.index("WARNING") < proc.stderr.index("ground state")


def test_runs_that_cannot_fit_on_the_disk_are_refused_up_front(tmp_path):
    start = time.perf_counter()
    proc = rtml("propagate", "h2", "--field", "none", *FAST, "--steps", "100000000000",
                "-o", "h2.h5", cwd=tmp_path)
    line = error_line(proc)
    assert "TB of disk" in line and "of checkpoint" in line and "free" in line
    assert "100000000001 frames x 1 field(s), nao = 2" in line
    assert "ground state" not in proc.stderr
    assert time.perf_counter() - start < 60
    assert list(tmp_path.iterdir()) == []
