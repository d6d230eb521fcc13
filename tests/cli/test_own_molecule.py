"""Your own molecule, as README ("Your own molecule") and molecules/README.md describe it:
an .xyz file whose comment line carries charge, multiplicity, basis and xc, given to
`rtml propagate` as a path; `$RTML_MOLECULES` replacing the ladder's geometry files."""

import h5py
import numpy as np
import pytest

from rtml.cli import main

#: HeH+ (2 electrons, closed shell) at RT-TDHF/STO-3G, as a user would write it
HEH_XYZ = """2
charge=1 multiplicity=1 basis=sto-3g xc=hf
He  0.000  0.000  0.000
H   0.000  0.000  0.774
"""

#: A plain XYZ (free-text comment): defaults apply (neutral; 3 electrons -> doublet)
H3_XYZ = """3
linear H3 chain
H   0.000  0.000  0.000
H   0.000  0.000  0.900
H   0.000  0.000  1.800
"""

#: Replaces the ladder's H2 through $RTML_MOLECULES: stretched, and in STO-3G
H2_XYZ = """2
charge=0 multiplicity=1 basis=sto-3g
H   0.000  0.000 -0.450
H   0.000  0.000  0.450
"""

SYSTEM_ATTRS = ("molecule", "charge", "multiplicity", "basis", "xc", "n_electrons",
                "n_basis", "n_spin")


def _propagate(molecule, out, *extra) -> dict:
    """`rtml propagate MOLECULE` for 5 steps after a z kick; the file's system attributes."""
    status = main(["propagate", str(molecule), "--field", "kick:0.001:z", "--dt", "0.2",
                   "--steps", "5", "--grid-level", "1", "-q", "-o", str(out), *extra])
    assert status == 0
    assert main(["validate", str(out)]) == 0
    with h5py.File(out, "r") as h5:
        attrs = {name: h5.attrs[name] for name in SYSTEM_ATTRS}
        attrs["positions"] = h5["geometry/positions"][...]
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}


def test_xyz_comment_line_sets_charge_multiplicity_basis_and_xc(tmp_path):
    xyz = tmp_path / "heh.xyz"
    xyz.write_text(HEH_XYZ)
    attrs = _propagate(xyz, tmp_path / "heh.h5")
    assert {k: attrs[k] for k in SYSTEM_ATTRS} == {
        "molecule": "heh", "charge": 1, "multiplicity": 1, "basis": "sto-3g", "xc": "hf",
        "n_electrons": 2, "n_basis": 2, "n_spin": 1}


def test_plain_xyz_gets_the_defaults_and_command_line_overrides(tmp_path):
    xyz = tmp_path / "h3.xyz"
    xyz.write_text(H3_XYZ)
    attrs = _propagate(xyz, tmp_path / "h3.h5", "--basis", "sto-3g")
    assert {k: attrs[k] for k in SYSTEM_ATTRS} == {
        "molecule": "h3", "charge": 0, "multiplicity": 2, "basis": "sto-3g", "xc": "pbe0",
        "n_electrons": 3, "n_basis": 3, "n_spin": 2}


def test_rtml_molecules_replaces_the_ladder_geometry_file(tmp_path, monkeypatch):
    mine = tmp_path / "my_molecules"
    mine.mkdir()
    (mine / "h2.xyz").write_text(H2_XYZ)
    monkeypatch.setenv("RTML_MOLECULES", str(mine))
    attrs = _propagate("h2", tmp_path / "h2.h5")
    assert (attrs["molecule"], attrs["basis"], attrs["n_basis"]) == ("h2", "sto-3g", 2)
    np.testing.assert_allclose(attrs["positions"][:, 2], [-0.45, 0.45])


def test_rtml_molecules_without_the_ladder_file_is_one_line_error(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("RTML_MOLECULES", str(tmp_path))
    out = tmp_path / "lih.h5"
    status = main(["propagate", "lih", "--field", "kick:0.001:z", "--dt", "0.2",
                   "--steps", "5", "-q", "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and not out.exists()
    assert err[-1].startswith("rtml: error: ladder molecule 'lih' has no geometry file")
    assert "RTML_MOLECULES" in err[-1]


@pytest.mark.parametrize("name", ["heh.xyz", "heh.extxyz"])
def test_both_suffixes_are_geometry_files(tmp_path, name):
    xyz = tmp_path / name
    xyz.write_text(HEH_XYZ)
    assert _propagate(xyz, tmp_path / "out.h5")["molecule"] == "heh"
