"""examples/: each script runs as its docstring says, on a store rtml made, without rtml.

The store is made with the rtml command line (H2/STO-3G, a z kick and a Gaussian pulse,
60 a.u.); the example then runs in a fresh interpreter that fails if rtml was imported or
anything warned (opening the store included).
"""

import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from rtml.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KICK_ID = "h2/eq/t00-kick_0.001_z"
PULSE_ID = "h2/eq/t01-gaussian_0.01_0.3_5.0_2.0_z"

#: Runs `python SCRIPT ARGS...` as __main__ with warnings as errors, then fails if anything
#: imported rtml.
WITHOUT_RTML = """import runpy, sys, warnings
warnings.simplefilter("error")
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
assert "rtml" not in sys.modules, "the example imported rtml"
"""


@pytest.fixture(scope="module")
def h2_store(tmp_path_factory):
    """A store with one H2 kick and one pulse trajectory; returns its directory."""
    out = tmp_path_factory.mktemp("example")
    assert main(["propagate", "h2", "--basis", "sto-3g", "--grid-level", "1",
                 "--field", "kick:0.001:z", "--field", "gaussian:0.01:0.3:5:2:z",
                 "--dt", "0.2", "--steps", "300", "-q", "--output-dir", str(out / "traj")]) == 0
    assert main(["dataset", "assemble", str(out / "traj"), "-o", str(out / "store.zarr"),
                 "-q"]) == 0
    return out


def _run_example(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_RTML, str(EXAMPLES / "read_store.py"),
                           *map(str, args)], capture_output=True, text=True, timeout=120)


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_store_plots_the_first_kick_and_finds_rtmls_spectrum_peak(h2_store, capsys):
    png = h2_store / "kick.png"
    run = _run_example(h2_store / "store.zarr", "h2", "-o", png)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{KICK_ID}: 301 frames -> {png}"), run.stdout
    assert _is_png(png)
    peak = float(re.search(r"brightest peak: ([\d.]+) eV", run.stdout).group(1))

    capsys.readouterr()
    assert main(["spectrum", str(h2_store / "traj" / "t00-kick_0.001_z.h5")]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()
            if line.strip() and not line.startswith("#")]
    brightest = max(rows, key=lambda row: float(row[2]))
    assert peak == pytest.approx(float(brightest[0]), abs=0.01)


def test_read_store_selects_a_trajectory_by_traj_id(h2_store):
    png = h2_store / "pulse.png"
    run = _run_example(h2_store / "store.zarr", "h2", "--traj-id", PULSE_ID, "-o", png)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == [f"{PULSE_ID}: 301 frames -> {png}"]
    assert _is_png(png)


def test_read_store_selects_a_frame_by_its_exact_time(h2_store):
    """t = 0.6 a.u. is frame 3 of dt = 0.2 (0.6000000000000001 as the engine sums it)."""
    png = h2_store / "at.png"
    run = _run_example(h2_store / "store.zarr", "h2", "--traj-id", PULSE_ID, "--time", 0.6,
                       "-o", png)
    assert run.returncode == 0, run.stderr
    line = run.stdout.splitlines()[1]
    assert line.startswith("dipole at t = 0.6 a.u.: ") and line.endswith(" e bohr")
    with h5py.File(h2_store / "traj" / f"{PULSE_ID.split('/')[-1]}.h5", "r") as h5:
        assert h5["dynamics/time"][3] != 0.6  # the float noise the store's time removes
        expected = h5["dynamics/dipole"][3]
    assert [float(v) for v in line.split(": ")[1].split()[:3]] == pytest.approx(expected,
                                                                                 abs=1e-10)
    run = _run_example(h2_store / "store.zarr", "h2", "--time", 0.7, "-o", h2_store / "no.png")
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1].startswith("no frame at t = 0.7 a.u.")
    assert not (h2_store / "no.png").exists()


def test_read_store_names_the_trajectories_when_the_id_is_unknown(h2_store):
    png = h2_store / "missing.png"
    run = _run_example(h2_store / "store.zarr", "h2", "--traj-id", "h2/eq/t09", "-o", png)
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1] == (
        f"no trajectory 'h2/eq/t09'; this group holds: {KICK_ID}, {PULSE_ID}")
    assert not png.exists()
