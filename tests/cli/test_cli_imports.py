"""The command line stays light: parsing any subcommand (``--help`` included) loads neither
PySCF nor torch nor h5py; a subcommand's module is imported only when that subcommand runs."""

import subprocess
import sys

import pytest

HEAVY = ("pyscf", "torch", "h5py")


def heavy_modules_after(argv: list[str]) -> str:
    """The heavy packages loaded by parsing ``argv`` with the ``rtml`` parser (help exits)."""
    probe = "\n".join([
        "import contextlib, io, sys",
        "from rtml.cli import build_parser",
        "with contextlib.redirect_stdout(io.StringIO()):",
        "    try:",
        f"        build_parser().parse_args({argv!r})",
        "    except SystemExit:",
        "        pass",
        f"print(sorted(set({HEAVY!r}) & set(sys.modules)))",
    ])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("argv", [["--help"], ["ladder"], ["spectrum", "--help"],
                                  ["dataset", "info", "store.zarr"], ["train", "--help"],
                                  ["train", "store.zarr", "-o", "out"], ["propagate", "--help"]])
def test_parsing_loads_no_heavy_package(argv):
    assert heavy_modules_after(argv) == "[]"
