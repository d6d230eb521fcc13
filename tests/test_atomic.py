"""Output safety: atomic writes over files and directories, and the checks before a write."""

from pathlib import Path

import pytest

from rtml import InputError, atomic_directory, atomic_write, check_output_path


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
