"""Finding and running the ``nwchem`` executable."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from rtml._errors import RtmlError

__all__ = ["NWChemUnavailable", "NWChemError", "nwchem_executable", "nwchem_available",
           "run_nwchem", "UNAVAILABLE_MESSAGE"]

UNAVAILABLE_MESSAGE = "nwchem not on PATH"


class NWChemUnavailable(RtmlError):
    """The NWChem engine was asked for but ``nwchem`` is not installed."""


class NWChemError(RtmlError):
    """An NWChem run failed; the message ends with the last lines of its output."""


def nwchem_executable() -> str | None:
    """Path of ``nwchem`` (``$RTML_NWCHEM`` overrides PATH), or None."""
    return os.environ.get("RTML_NWCHEM") or shutil.which("nwchem")


def nwchem_available() -> bool:
    return nwchem_executable() is not None


def nwchem_command(deck: Path, ranks: int) -> list[str]:
    """The command line running ``deck`` on ``ranks`` MPI ranks (``mpirun`` when > 1)."""
    exe = nwchem_executable()
    if exe is None:
        raise NWChemUnavailable(f"engine 'nwchem' is unavailable: {UNAVAILABLE_MESSAGE} "
                                "(install it, e.g. apt-get install nwchem openmpi-bin, or use "
                                "--engine pyscf)")
    if ranks > 1:
        mpirun = shutil.which("mpirun")
        if mpirun is None:
            raise NWChemUnavailable(f"{ranks} NWChem ranks need mpirun, which is not on PATH")
        cmd = [mpirun, "-np", str(ranks)]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-run-as-root")
        return cmd + [exe, str(deck)]
    return [exe, str(deck)]


def run_nwchem(deck_text: str, workdir: str | Path, name: str = "rtml", ranks: int = 1,
               timeout: float | None = None) -> str:
    """Write ``deck_text`` to ``workdir/<name>.nw``, run NWChem there, return its output.

    The output is also kept in ``workdir/<name>.nwo`` (appended, one run after another).
    Raises :class:`NWChemError` with the tail of the output when NWChem fails or reports
    an error, :class:`NWChemUnavailable` when it is not installed.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    deck = workdir / f"{name}.nw"
    deck.write_text(deck_text)
    cmd = nwchem_command(deck, ranks)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=env,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NWChemError(f"NWChem did not finish within {timeout} s ({deck})") from None
    output = proc.stdout + proc.stderr
    with open(workdir / f"{name}.nwo", "a") as log:
        log.write(output)
    failed = proc.returncode != 0 or "Total times  cpu:" not in output
    if failed:
        tail = " | ".join(line.strip() for line in output.strip().splitlines()[-6:])
        raise NWChemError(f"NWChem failed (exit {proc.returncode}) on {deck}: {tail}")
    return output
