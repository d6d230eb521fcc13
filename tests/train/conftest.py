"""Shared fixtures of the training tests."""

import pytest

from rtml.cli import main


@pytest.fixture(scope="session")
def h2_store(tmp_path_factory):
    """``h2.zarr`` made as a user makes it: 4 sampled geometries x 2 fields x 40 steps (train
    4 trajectories, validation 2, test 2 with the default split)."""
    root = tmp_path_factory.mktemp("h2_store")
    geometries = root / "geometries"
    assert main(["sample-geometries", "h2", "--n", "4", "--output-dir", str(geometries)]) == 0
    for geometry in sorted(geometries.glob("g*.xyz")):
        assert main(["propagate", "h2", "--geometry", str(geometry), "--field", "kick:2e-3:z",
                     "--field", "gaussian:0.01:0.13:2:1:z", "--dt", "0.2", "--steps", "40",
                     "--grid-level", "1", "-q", "--output-dir",
                     str(root / "trajectories" / geometry.stem)]) == 0
    files = sorted(str(f) for f in (root / "trajectories").glob("*/*.h5"))
    assert main(["dataset", "assemble", *files, "-o", str(root / "h2.zarr")]) == 0
    return root / "h2.zarr"


@pytest.fixture
def error_line():
    """The one ``rtml: error:`` line of a refused run (exit 2, no traceback)."""

    def one_line(proc) -> str:
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.startswith("rtml: error: ")]
        assert len(errors) == 1, proc.stderr
        return errors[0]

    return one_line
