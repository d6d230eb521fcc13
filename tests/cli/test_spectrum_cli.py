"""``rtml spectrum`` as a user meets it (issue 15): S(E) in 1/eV in the table, the JSON and
the plot; a ``--plot`` destination that cannot be written is refused before any work, with
one line, nothing printed and nothing left."""

import json
import os

import pytest
from PIL import Image

from rtml.chem import load_molecule
from rtml.cli import main
from rtml.data import read_trajectory, write_trajectory
from rtml.fields import parse_field
from rtml.tddft import (PropagationSettings, SimulationInputs, absorption_spectrum, find_peaks,
                        simulate)
from rtml.units import HARTREE_EV

pytestmark = pytest.mark.physics


@pytest.fixture(scope="module")
def kick_file(tmp_path_factory):
    """An H2/STO-3G z kick, 300 steps of 0.2 a.u."""
    spec = load_molecule("h2")
    inputs = SimulationInputs(molecule=spec, settings=PropagationSettings(dt=0.2, n_steps=300),
                              fields=[parse_field("kick:1e-3:z")], basis="sto-3g", grid_level=1)
    (traj,) = simulate(inputs)
    return write_trajectory(tmp_path_factory.mktemp("kick") / "kick.h5", traj)


def test_table_json_and_plot_give_the_strength_in_per_ev(kick_file, tmp_path, capsys):
    assert main(["spectrum", str(kick_file), "--max-ev", "40", "--plot",
                 str(tmp_path / "s.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split() == ["#", "E", "(eV)", "w", "(Ha)", "S(E)", "(1/eV)"]
    table = [[float(x) for x in line.split()] for line in lines[2:]]
    traj = read_trajectory(kick_file)
    spectrum = absorption_spectrum(traj.time, traj.dipole, 1e-3, (0, 0, 1),
                                   omega_max=40 / HARTREE_EV)
    omega, height_per_ha = find_peaks(spectrum)
    assert len(table) == len(omega) >= 1
    for (e_ev, w_ha, s_per_ev), w, h in zip(table, omega, height_per_ha):
        assert e_ev == pytest.approx(w * HARTREE_EV, abs=1e-4)
        assert s_per_ev == pytest.approx(h / HARTREE_EV, rel=1e-4)
    assert main(["spectrum", str(kick_file), "--max-ev", "40", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["heights_per_ev"] == pytest.approx([row[2] for row in table], rel=1e-4)
    panel = json.loads(Image.open(tmp_path / "s.png").text["Description"])["panels"][0]
    assert panel["xlabel"] == "photon energy E (eV)"
    assert panel["ylabel"] == "dipole strength S(E) (1/eV)"


@pytest.mark.parametrize("plot,message", [
    ("nodir/x.png", "no directory 'nodir' to write it in"),
    ("adir", "--plot 'adir' is a directory"),
    ("x.xyz", "unknown image type '.xyz'"),
    ("x", "no image type suffix"),
    ("fifo.png", "is a FIFO"),
    ("link.png", "is a symbolic link"),
    ("mine.png", "exists; remove it or pass --force"),
])
def test_unwritable_plot_destination_fails_first_with_one_line(kick_file, tmp_path, monkeypatch,
                                                              capsys, plot, message):
    (tmp_path / "adir").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    (tmp_path / "mine.png").write_bytes(b"a picture rtml did not write")
    before = sorted(p.name for p in tmp_path.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["spectrum", str(kick_file), "--plot", plot]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("rtml: error: ") and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not any((tmp_path / "adir").iterdir())
    assert (tmp_path / "mine.png").read_bytes() == b"a picture rtml did not write"
