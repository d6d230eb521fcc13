"""The errors a researcher still met on the first day (issue 15), through the real ``rtml``
command line: one ``rtml: error:`` line naming the file (and, for a geometry, the line), a
non-zero exit, no traceback, nothing left behind; and the two log lines of a geometry whose
meaning rtml had to guess."""

import logging

import pytest

from rtml.cli import main

H2_KICK = ["--field", "kick:1e-3:z", "--dt", "0.2", "--grid-level", "1", "-q"]


def run(capsys, *argv):
    """``rtml ARGV`` in this process: (exit status, stdout, stderr). An exception that
    escapes :func:`main` (a traceback for the user) fails the test."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return status, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("rtml: error:")]


@pytest.fixture(scope="module")
def trajectory(tmp_path_factory):
    """A real H2/STO-3G kick trajectory (4 steps of the engine)."""
    path = tmp_path_factory.mktemp("good") / "h2.h5"
    assert main(["propagate", "h2", "--basis", "sto-3g", *H2_KICK, "--steps", "4",
                 "-o", str(path)]) == 0
    return path


def truncated(trajectory, directory):
    """The first half of the file, as a killed copy leaves it."""
    data = trajectory.read_bytes()
    (directory / "truncated.h5").write_bytes(data[:len(data) // 2])
    return directory / "truncated.h5"


def broken_btree(trajectory, directory):
    """Every B-tree node signature overwritten: the file opens, its groups cannot be read
    (h5py's "wrong B-tree signature")."""
    (directory / "btree.h5").write_bytes(trajectory.read_bytes().replace(b"TREE", b"XXXX"))
    return directory / "btree.h5"


@pytest.mark.parametrize("damage, reason", [(truncated, "truncated file"),
                                            (broken_btree, "wrong B-tree signature")])
@pytest.mark.parametrize("command", [["validate", "FILE"], ["spectrum", "FILE", "--plot", "s.png"],
                                     ["dataset", "assemble", "FILE", "-q", "-o", "s.zarr"]])
def test_a_damaged_trajectory_is_named_by_every_reader(trajectory, tmp_path, monkeypatch,
                                                       capsys, damage, reason, command):
    monkeypatch.chdir(tmp_path)
    bad = damage(trajectory, tmp_path)
    status, _, err = run(capsys, *(bad if arg == "FILE" else arg for arg in command))
    assert status != 0
    assert error_lines(err) == err.splitlines()
    [line] = error_lines(err)
    assert line.startswith(f"rtml: error: {bad}: not a readable HDF5 trajectory file "
                           "(truncated or corrupt; HDF5 says: ")
    assert reason in line
    assert [p.name for p in tmp_path.iterdir()] == [bad.name]


def test_validate_checks_every_file_and_counts_the_failures(trajectory, tmp_path, capsys):
    noise = tmp_path / "noise.h5"
    noise.write_bytes(bytes(range(256)) * 8)
    bad = [noise, truncated(trajectory, tmp_path), tmp_path / "missing.h5"]
    status, out, err = run(capsys, "validate", bad[0], trajectory, *bad[1:])
    assert status != 0
    lines = err.splitlines()
    assert lines == error_lines(err)[:3] + ["rtml: 3 of 4 files failed validation (3 unreadable)"]
    assert [line.split(": ")[2] for line in lines[:3]] == [str(p) for p in bad]
    assert out.splitlines()[0] == f"{trajectory}: OK (13 checks passed)"


def test_validate_a_directory_checks_its_trajectory_files(trajectory, tmp_path, capsys):
    for name in ("b.h5", "a.h5"):
        (tmp_path / name).write_bytes(trajectory.read_bytes())
    status, out, err = run(capsys, "validate", tmp_path)
    assert (status, err) == (0, "")
    assert [line.split(": ")[0] for line in out.splitlines() if not line.startswith(" ")] == [
        str(tmp_path / "a.h5"), str(tmp_path / "b.h5")]

    empty = tmp_path / "empty"
    empty.mkdir()
    status, out, err = run(capsys, "validate", empty)
    assert status != 0 and out == ""
    assert err.splitlines() == [f"rtml: error: directory '{empty}' holds no *.h5 trajectory files"]


@pytest.mark.parametrize("text, line, problem", [
    ("2\n\nH 0 0 0\nXx 0 0 0.74\n", 4, "unknown element 'Xx'"),
    ("this is not a geometry\nat all\n", 1, "expected the number of atoms"),
    ("2\nH2\nH 0 0 0\nH 0 zero 0.74\n", 4, "column 'pos' must be a real number, got 'zero'"),
    ("2\nH2\nH 0 0\nH 0 0 0.74\n", 3, "expected 4 columns"),
    ("3\nH3\nH 0 0 0\nH 0 0 0.74\n", 5, "the file ends after 2 atom line(s)"),
    ("2\nH2\nH 0 0 0\nH 0 0 nan\n", 4, "position 'nan' is not finite"),
])
def test_a_bad_geometry_file_is_named_with_its_line(tmp_path, monkeypatch, capsys, text, line,
                                                    problem):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mol.xyz").write_text(text)
    status, _, err = run(capsys, "propagate", "mol.xyz", *H2_KICK, "--steps", "2",
                         "-o", "out.h5")
    assert status != 0
    [message] = err.splitlines()
    assert problem in message
    if problem.startswith("unknown element"):
        assert message == f"rtml: error: {problem} in 'mol.xyz', line {line}"
    else:
        assert message.startswith(f"rtml: error: cannot read geometry file 'mol.xyz', "
                                  f"line {line}: ")
    assert [p.name for p in tmp_path.iterdir()] == ["mol.xyz"]


def test_an_assumed_multiplicity_is_logged(tmp_path, capsys, caplog):
    (tmp_path / "h.xyz").write_text("1\nhydrogen atom\nH 0 0 0\n")
    caplog.set_level(logging.INFO, logger="rtml")
    status, out, _ = run(capsys, "excitations", tmp_path / "h.xyz", "--nstates", "1",
                         "--grid-level", "1")
    assert status == 0 and "S1" in out
    [record] = [r for r in caplog.records if "multiplicity" in r.getMessage()]
    assert record.levelno == logging.INFO
    assert "odd number of electrons (1)" in record.getMessage()
    assert "multiplicity 2 (doublet) is assumed" in record.getMessage()
    assert "multiplicity=N" in record.getMessage()


def test_unknown_comment_line_keys_are_warned_once(tmp_path, capsys, caplog):
    (tmp_path / "h2.xyz").write_text("2\ncharge=0 multiplicty=1 basis=sto-3g foo=bar plain\n"
                                     "H 0 0 0\nH 0 0 0.74\n")
    status, out, _ = run(capsys, "excitations", tmp_path / "h2.xyz", "--nstates", "1",
                         "--grid-level", "1")
    assert status == 0 and "S1" in out
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    message = record.getMessage()
    assert "'multiplicty', 'foo'" in message and "plain" not in message.split("(known")[0]
    assert "known: name, charge, multiplicity, basis, xc" in message


@pytest.mark.parametrize("command", [
    ["propagate", "h2", "--basis", "6-31Gxx", *H2_KICK, "--steps", "2", "-o", "out.h5"],
    ["ground-state", "h2", "--basis", "6-31Gxx", "-o", "gs.h5"],
])
def test_an_unknown_basis_is_one_line(tmp_path, monkeypatch, capsys, command):
    """Before: a 36-line traceback ending in KeyError: '631gxx'."""
    monkeypatch.chdir(tmp_path)
    status, _, err = run(capsys, *command)
    assert status == 2
    assert err.splitlines() == error_lines(err) and len(err.splitlines()) == 1
    assert "unknown basis '6-31Gxx'" in err
    assert not any(tmp_path.iterdir())
