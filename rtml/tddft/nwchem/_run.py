"""Finding and running the ``nwchem`` executable, and streaming its restart records."""

from __future__ import annotations

import errno
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rtml._errors import RtmlError
from rtml.tddft.nwchem._parse import RESTART_HEADER

__all__ = ["NWChemUnavailable", "NWChemError", "nwchem_executable", "nwchem_available",
           "run_nwchem", "run_nwchem_streaming", "UNAVAILABLE_MESSAGE"]

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
    workdir, deck = _write_deck(deck_text, workdir, name)
    cmd = nwchem_command(deck, ranks)
    try:
        proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, env=_env(),
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise NWChemError(f"NWChem did not finish within {timeout} s ({deck})") from None
    return _checked_output(proc.stdout + proc.stderr, proc.returncode, workdir, name, deck)


def run_nwchem_streaming(deck_text: str, workdir: str | Path, name: str, ranks: int,
                         initial_restart: str, on_record: Callable[[str], None],
                         timeout: float | None = None) -> str:
    """Run a ``restart`` deck (``nrestarts *``) and hand every restart record it writes to
    ``on_record``, in order, while it runs; return its output (as :func:`run_nwchem`).

    NWChem reads its initial density from ``<name>.rt_restart`` and re-creates that file at
    every step, so one run leaves only its last density. Here that name is a symbolic link
    to a FIFO: NWChem's open of it (to load) is detected, the link is pointed at a second
    FIFO, and only then is ``initial_restart`` (the text of a restart file) written into the
    first, so NWChem cannot save before the link has moved. Every density NWChem then saves
    flows through the second FIFO, which this process keeps reading; NWChem blocks when it
    is full, so no record is lost or torn, and one NWChem start gives every step's P(t).
    The link and FIFOs are removed afterwards (``<name>.rt_restart`` is left absent).
    """
    workdir, deck = _write_deck(deck_text, workdir, name)
    cmd = nwchem_command(deck, ranks)
    link = workdir / f"{name}.rt_restart"
    load, save = workdir / f".{name}.load.fifo", workdir / f".{name}.save.fifo"
    for path in (link, load, save):
        path.unlink(missing_ok=True)
    os.mkfifo(load)
    os.mkfifo(save)
    link.symlink_to(load.name)
    reader = os.open(save, os.O_RDONLY | os.O_NONBLOCK)
    # a writer of our own keeps the FIFO open between NWChem's records: reads then wait for
    # data instead of returning end-of-file
    holder = os.open(save, os.O_WRONLY | os.O_NONBLOCK)
    records = _RecordStream(on_record)
    pending, loader, proc = initial_restart.encode(), None, None
    deadline = None if timeout is None else time.monotonic() + timeout
    # NWChem's output goes to a file: a pipe left unread while records flow could fill up
    with tempfile.TemporaryFile("w+", dir=workdir) as out:
        try:
            proc = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                                    text=True, env=_env())
            while proc.poll() is None:
                if pending and loader is None:
                    loader = _open_for_writing(load)
                    if loader is not None:  # NWChem has opened the link: move it
                        _point(link, save)
                writers = [loader] if loader is not None else []
                readable, writable, _ = select.select([reader], writers, [], 0.02)
                if writable:
                    pending = pending[_write_some(loader, pending):]
                    if not pending:
                        os.close(loader)
                        loader = None
                if readable:
                    records.feed(os.read(reader, 1 << 20))
                if deadline is not None and time.monotonic() > deadline:
                    raise NWChemError(f"NWChem did not finish within {timeout} s ({deck})")
            records.feed(_drain(reader))
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            for fd in (reader, holder, loader):
                if fd is not None:
                    os.close(fd)
            for path in (link, load, save):
                path.unlink(missing_ok=True)
        out.seek(0)
        output = out.read()
    output = _checked_output(output, proc.returncode, workdir, name, deck)
    records.close()
    return output


class _RecordStream:
    """Splits the concatenated restart files read from the FIFO into records."""

    def __init__(self, on_record: Callable[[str], None]):
        self.buffer = b""
        self.on_record = on_record
        self.header = RESTART_HEADER.encode()

    def feed(self, data: bytes) -> None:
        """Add bytes; every record followed by the next one's header is complete."""
        self.buffer += data
        while (end := self.buffer.find(self.header, 1)) > 0:
            self.on_record(self.buffer[:end].decode())
            self.buffer = self.buffer[end:]

    def close(self) -> None:
        """The stream has ended: its last record is complete."""
        if self.buffer.strip():
            self.on_record(self.buffer.decode())
        self.buffer = b""


def _env() -> dict:
    """NWChem's environment: one OpenMP thread per MPI rank."""
    return dict(os.environ, OMP_NUM_THREADS="1")


def _write_deck(deck_text: str, workdir: str | Path, name: str) -> tuple[Path, Path]:
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    deck = workdir / f"{name}.nw"
    deck.write_text(deck_text)
    return workdir, deck


def _checked_output(output: str, returncode: int, workdir: Path, name: str, deck: Path) -> str:
    """Append ``output`` to ``<name>.nwo``; NWChemError (with its tail) if the run failed."""
    with open(workdir / f"{name}.nwo", "a") as log:
        log.write(output)
    if returncode != 0 or "Total times  cpu:" not in output:
        tail = " | ".join(line.strip() for line in output.strip().splitlines()[-6:])
        raise NWChemError(f"NWChem failed (exit {returncode}) on {deck}: {tail}")
    return output


def _open_for_writing(fifo: Path) -> int | None:
    """A non-blocking write end of ``fifo``, or None while no process has it open to read."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as err:
        if err.errno == errno.ENXIO:
            return None
        raise


def _write_some(fd: int, data: bytes) -> int:
    try:
        return os.write(fd, data[:1 << 16])
    except BlockingIOError:
        return 0


def _drain(fd: int) -> bytes:
    """Everything left in a non-blocking pipe."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _point(link: Path, target: Path) -> None:
    """Make the symbolic link ``link`` point at ``target`` (same directory), atomically."""
    swap = link.with_name(link.name + ".swap")
    swap.unlink(missing_ok=True)
    swap.symlink_to(target.name)
    os.replace(swap, link)
