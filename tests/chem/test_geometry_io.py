"""read_geometry / write_geometry: extxyz round trip, atomic writes, bad input."""

import numpy as np
import pytest

from rtml import InputError
from rtml.chem import read_geometry, write_geometry


@pytest.mark.parametrize("suffix", [".xyz", ".extxyz"])
def test_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    symbols = ["C", "O", "H", "H"]
    positions = rng.uniform(-3, 3, size=(4, 3))
    info = {
        "name": "h2co",
        "charge": 0,
        "multiplicity": 1,
        "basis": "6-31G",
        "xc": "pbe0",
        "temperature": 300.5,
        "source": "PySCF PBE0/6-31G (geomeTRIC), start ase.build.molecule('H2CO')",
    }
    path = write_geometry(tmp_path / f"h2co{suffix}", symbols, positions, info)
    symbols2, positions2, info2 = read_geometry(path)
    assert symbols2 == symbols
    assert positions2.shape == (4, 3) and positions2.dtype == np.float64
    assert np.allclose(positions2, positions, rtol=0, atol=1e-8)
    assert info2 == info
    assert all(type(info2[k]) is type(v) for k, v in info.items())


def test_write_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "h2.xyz"
    write_geometry(path, ["H", "H"], [[0, 0, 0], [0, 0, 0.7]])
    write_geometry(path, ["H", "H"], [[0, 0, 0], [0, 0, 0.8]], {"name": "h2"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h2.xyz"]  # no temp files left
    _, positions, info = read_geometry(path)
    assert positions[1, 2] == pytest.approx(0.8) and info == {"name": "h2"}


def test_plain_xyz_is_readable(tmp_path):
    path = tmp_path / "h2.xyz"
    path.write_text("2\n\nH 0 0 0\nH 0 0 0.74\n")
    symbols, positions, info = read_geometry(path)
    assert symbols == ["H", "H"] and positions[1, 2] == pytest.approx(0.74)
    assert info == {}


@pytest.mark.parametrize(
    "content, why",
    [(None, "no such file"), ("", "empty"), ("3\ncomment\nH 0 0\n", "")],
)
def test_unreadable_files(tmp_path, content, why):
    path = tmp_path / "bad.xyz"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=f"cannot read geometry file '.*bad.xyz'.*{why}") as err:
        read_geometry(path)
    assert "\n" not in str(err.value)


def test_unsupported_suffix(tmp_path):
    with pytest.raises(InputError, match="unsupported geometry file"):
        read_geometry(tmp_path / "mol.pdb")
    with pytest.raises(InputError, match="unsupported geometry file"):
        write_geometry(tmp_path / "mol.pdb", ["H"], [[0, 0, 0]])


def test_write_shape_mismatch(tmp_path):
    with pytest.raises(InputError, match=r"shape \(1, 3\); expected \(2, 3\)"):
        write_geometry(tmp_path / "x.xyz", ["H", "H"], [[0, 0, 0]])


def test_write_to_missing_directory(tmp_path):
    with pytest.raises(InputError, match="cannot write geometry file"):
        write_geometry(tmp_path / "nope" / "x.xyz", ["H"], [[0, 0, 0]])


def test_atoms_at_the_same_position_are_named_with_the_file(tmp_path):
    path = tmp_path / "close.xyz"
    path.write_text("4\n\nO 0 0 0\nH 0 0.76 0.58\nH 0 0.76 0.58\nH 0 -0.76 0.58\n")
    with pytest.raises(InputError, match=r"geometry file '.*close.xyz': atoms 2 \(H\) and 3 "
                                         r"\(H\) are 0.000 Å apart, closer than 0.1 Å"):
        read_geometry(path)


@pytest.mark.parametrize("content, line, problem", [
    (b"0\n\n", 1, "no atoms"),
    (b"2\n", 2, "the comment line is missing"),
    (b"1\nname=\xff\xfe\nH 0 0 0\n", 2, "not text (byte 0xff)"),
    (b"1\nProperties=species:S:1:pos:Q:3\nH 0 0 0\n", 2, "cannot parse the comment line"),
    (b"1\nProperties=species:S:1:pos:R:3:n:I:1\nH 0 0 0 x\n", 3, "column 'n' must be an integer"),
])
def test_a_parse_error_names_the_line(tmp_path, content, line, problem):
    path = tmp_path / "bad.extxyz"
    path.write_bytes(content)
    with pytest.raises(InputError) as err:
        read_geometry(path)
    assert str(err.value).startswith(f"cannot read geometry file '{path}', line {line}: {problem}")


def test_only_the_first_frame_is_read(tmp_path):
    """Symbols are normalised as ASE does; a second frame (even a broken one) is not read."""
    path = tmp_path / "two.xyz"
    path.write_text("2\n\nh 0 0 0\nCL 0 0 1.3 extra columns\n3\nbroken\n")
    symbols, positions, info = read_geometry(path)
    assert symbols == ["H", "Cl"] and positions[1, 2] == pytest.approx(1.3) and info == {}
