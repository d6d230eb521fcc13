"""Output safety: atomic writes over files and directories, and the checks before a write."""

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from rtml import (InputError, atomic_directory, atomic_write, check_output_path,
                  remove_stale_temporaries)


def test_atomic_write_replaces_a_file_or_a_directory(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.h5").write_text("old")
    atomic_write(out, lambda tmp: Path(tmp).write_text("new"))
    assert out.read_text() == "new"
    atomic_write(out, lambda tmp: Path(tmp).write_text("newer"))
    assert out.read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_directory_replaces_and_cleans_up(tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "t07.h5").write_text("from an earlier run")
    atomic_directory(out, lambda d: (d / "t00.h5").write_text("x"))
    assert [p.name for p in out.iterdir()] == ["t00.h5"]

    def fail(directory):
        (directory / "t00.h5").write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        atomic_directory(out, fail)
    assert (out / "t00.h5").read_text() == "x"  # the old output survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_check_output_path(tmp_path):
    (tmp_path / "empty").mkdir()
    check_output_path(tmp_path / "empty", force=False)  # pre-created by a workflow manager
    check_output_path(tmp_path / "new" / "deeper" / "out.h5", force=False)
    assert (tmp_path / "new" / "deeper").is_dir()
    (tmp_path / "out.h5").write_text("x")
    with pytest.raises(InputError, match="exists; remove it or pass --force"):
        check_output_path(tmp_path / "out.h5", force=False)
    check_output_path(tmp_path / "out.h5", force=True)


def test_check_output_path_never_replaces_special_files_or_links(tmp_path, monkeypatch):
    os.mkfifo(tmp_path / "fifo")
    monkeypatch.chdir(tmp_path)  # bind a relative name: socket paths are limited to ~100 bytes
    server = socket.socket(socket.AF_UNIX)
    server.bind("socket")
    (tmp_path / "file.h5").write_text("someone's")
    (tmp_path / "dir").mkdir()
    for name, target in (("to-file", "file.h5"), ("to-dir", "dir"), ("dangling", "nowhere")):
        (tmp_path / name).symlink_to(target)
    for force in (False, True):
        with pytest.raises(InputError, match="is a FIFO, not a regular file or directory"):
            check_output_path(tmp_path / "fifo", force=force)
        with pytest.raises(InputError, match="is a socket, not a regular file or directory"):
            check_output_path(tmp_path / "socket", force=force)
        for name in ("to-file", "to-dir", "dangling"):
            with pytest.raises(InputError, match="is a symbolic link .* refuses to write through"):
                check_output_path(tmp_path / name, force=force)
    with pytest.raises(InputError, match="is a FIFO"):  # nor at the moment of the rename
        atomic_write(tmp_path / "fifo", lambda tmp: Path(tmp).write_text("x"))
    server.close()
    assert stat.S_ISFIFO((tmp_path / "fifo").lstat().st_mode)
    assert stat.S_ISSOCK((tmp_path / "socket").lstat().st_mode)
    assert (tmp_path / "file.h5").read_text() == "someone's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dangling", "dir", "fifo", "file.h5",
                                                         "socket", "to-dir", "to-file"]


def test_force_replaces_only_directories_of_rtml_files(tmp_path):
    out = tmp_path / "runs"
    out.mkdir()
    (out / "t00-kick_0.001_z.h5").write_text("x")
    check_output_path(out, force=True, rtml_files=r"t\d{2,}-.+\.h5")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="directory rtml did not write .*'notes.txt'"):
        check_output_path(out, force=True, rtml_files=r"t\d{2,}-.+\.h5")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "t00-kick_0.001_z.h5").mkdir()  # a directory, not a file
    with pytest.raises(InputError, match="directory rtml did not write"):
        check_output_path(tmp_path / "results", force=True, rtml_files=r"t\d{2,}-.+\.h5")
    with pytest.raises(InputError, match="directory rtml did not write"):  # writes files only
        check_output_path(out, force=True)


def test_temporaries_of_dead_processes_are_removed(tmp_path):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead, alive = finished.pid, running.pid
        (tmp_path / f".out.h5.tmp-{dead}").write_text("half")
        (tmp_path / f".out.h5.tmp-{alive}").write_text("being written")
        (tmp_path / f".out.h5.tmp-{os.getpid()}").write_text("ours")
        (tmp_path / f".other.h5.tmp-{dead}").write_text("another output's")
        (tmp_path / f".out.h5.old-{dead}").mkdir()
        check_output_path(tmp_path / "out.h5", force=False)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([
            f".out.h5.tmp-{alive}", f".out.h5.tmp-{os.getpid()}", f".other.h5.tmp-{dead}"])
        (tmp_path / "ckpt").mkdir()
        (tmp_path / "ckpt" / f".state.npz.tmp-{dead}.npz").write_text("half")
        (tmp_path / "ckpt" / "state.npz").write_text("kept")
        assert remove_stale_temporaries(tmp_path / "ckpt") == [
            tmp_path / "ckpt" / f".state.npz.tmp-{dead}.npz"]
        assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["state.npz"]
    finally:
        running.kill()
        running.wait()
