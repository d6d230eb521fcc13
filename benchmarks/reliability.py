"""Kill each long command at several points, rerun it, and check the result is bit-identical.

For each command (a *case*) the script first runs it uninterrupted and keeps its outputs as
the reference. While it runs, the script watches the run directory every 10 ms. It records
the work time, from the first file the command writes to the last (imports before and
teardown after are not counted), and its progress: how many distinct lasting files and file
sizes it has written so far (temporary files, logs and event files do not count).

Then, for each kill fraction f, it prepares the same directory afresh and starts the
command. It sends SIGKILL to the command's whole process group as soon as the run has made
the progress the reference had made f x (work time) after its first write. The kill point
follows the work rather than the clock, so a busy machine shifts it less. At f = 1 the kill
comes right after the last write, while the command cleans up. The script then
reruns the same command to completion, compares every output with the reference bit for
bit, and lists anything left behind. The cases:

- ``propagate``: ``rtml propagate h2`` with a kick, checkpointing every few steps, to one
  ``.h5`` file;
- ``assemble``: ``rtml dataset assemble`` of H2 trajectory files into a new store;
- ``append``: the same command appending the second half of the files to a store that
  holds the first half;
- ``train``: ``rtml train`` of a small rtml model on that store;
- ``snakemake``: ``snakemake --profile profiles/local train_h2`` on a tiny one-molecule
  config, from geometry sampling to the trained model. In the small form, every run starts
  from a copy of the data stages (made once, with their Snakemake metadata and times), so
  only the training job runs and is killed. Before the rerun comes ``snakemake --unlock``, as
  Snakemake asks after a kill. The profile has ``rerun-incomplete``.

Every run is single-threaded by default (``OMP_NUM_THREADS=1`` and ``--threads 1``).
``--threads 2`` measures how far apart multi-threaded runs are.

**What is compared.** Every file under the run directory is compared with the reference,
which must hold the same set of files:

- HDF5 (``.h5``): every dataset's dtype, shape and bytes, and every attribute;
- Zarr stores (``*.zarr``): every group and array, with its metadata, chunking and
  attributes, and every array's values (the ``index`` group too). The store's card beside
  it (``*.zarr.README.md``) is compared as text;
- ``.pt`` (``model.pt``, ``checkpoint.pt``): every entry (weights, optimiser state, random
  states, configuration, scores), tensors by dtype, shape and bytes;
- ``.csv`` (``train_metrics.csv``): every row and column;
- any other file: its bytes.

Numbers are equal only when their bytes are, so -0.0 differs from 0.0 and the same NaN
equals itself.

**What is ignored, and nothing else:**

- ISO-8601 date-times (``2026-01-31T12:00:00``, with optional fraction and zone) inside
  strings. This covers provenance ``created_utc``, the store's ``date_created``,
  ``date_modified`` and ``history`` stamps, and the card's "created ... modified" line;
- lines of the store's ``history`` (and of the card's history list) that record an assembly
  adding nothing (``+0 trajectories``). When a kill comes after the store is complete, the
  rerun truthfully records that it added nothing;
- the store's ``source_sha256`` values (digests of the trajectory files' bytes, which
  hold the files' creation times): instead, each must be the SHA-256 of its
  ``source_file`` as the rerun left it (or, where the case copied in a store whose source
  files are elsewhere, the reference's digest of the same row);
- wall times: the ``seconds`` column of CSV files and the ``seconds`` entries saved in
  ``.pt`` files (an epoch's wall time, in ``train_metrics.csv`` and in the metric rows kept
  in ``checkpoint.pt``);
- directories named ``tensorboard`` (event files are named and stamped with the wall clock,
  host and pid), ``logs`` (job logs) and ``.snakemake`` (Snakemake's own metadata). Its
  locks and incomplete markers are still checked as leftovers.

A rerun may refuse to overwrite an output that the killed run had already completed. This
passes only when the outputs are identical and nothing is left behind.

**Leftovers** are temporary files and directories (``.*.tmp-*``, ``*.old-*``),
``*.lock`` files, propagation checkpoints (``*.ckpt``), and Snakemake's
``.snakemake/locks/*`` and ``.snakemake/incomplete/*``, if any remain after the rerun.

    python benchmarks/reliability.py --out /tmp/reliability                  # full form
    python benchmarks/reliability.py --out /tmp/rel --small --cases propagate train
    python benchmarks/reliability.py --out /tmp/rel2 --threads 2 --cases propagate

The table goes to stdout and ``OUT/reliability.csv``. Run directories of failed trials are
kept under ``OUT/<case>/failed-<fraction>``. The exit status is 1 when any trial is not
identical or leaves something behind. ``tests/test_reliability.py`` runs the small form.
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch
import yaml
import zarr

# the checkout's rtml first, for the input data made in this process
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rtml.chem import load_molecule  # noqa: E402
from rtml.data import assemble_store, write_trajectory  # noqa: E402
from rtml.fields import parse_field  # noqa: E402
from rtml.tddft import PropagationSettings, SimulationInputs, simulate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"
LOCAL_PROFILE = REPO / "profiles" / "local"

TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)?")
PROCESS_ID = re.compile(r"(\.tmp-|\.old-)\d+")
NO_OP_ASSEMBLY = re.compile(r"(\n|^)[^\n]*dataset assemble: \+0 trajectories[^\n]*")
#: Store arrays of SHA-256 digests of the source files' bytes, which hold their creation
#: time: compared with the files, not with the reference run.
SOURCE_HASHES = "source_sha256"
WALL_TIME_FIELDS = ("seconds",)   # CSV columns and saved entries holding a wall time
IGNORED_DIRECTORIES = ("tensorboard", "logs", ".snakemake")
LEFTOVER_PATTERNS = (".*.tmp-*", "*.old-*", "*.lock", "*.ckpt")
SNAKEMAKE_LEFTOVERS = (".snakemake/locks/*", ".snakemake/incomplete/*")


# --------------------------------------------------------------------------- comparison

def _normalise(value):
    """``value`` with every ISO-8601 date-time inside a string replaced by ``<time>`` and
    every history line of an assembly that added nothing removed (recursively through
    dicts, lists and JSON text)."""
    if isinstance(value, dict):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normalise(v) for v in value]
    if isinstance(value, np.ndarray) and value.dtype.kind not in "biufc":
        return [_normalise(v) for v in value.tolist()]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return NO_OP_ASSEMBLY.sub("", TIMESTAMP.sub("<time>", value))
    return value


def _equal_values(a, b) -> bool:
    """Bit equality for numbers and numeric arrays; plain equality for the rest."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        if a.dtype.kind in "biufc" and b.dtype.kind in "biufc":
            return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        return a.shape == b.shape and _normalise(a) == _normalise(b)
    if isinstance(a, float) and isinstance(b, float):
        return np.float64(a).tobytes() == np.float64(b).tobytes()
    return _normalise(a) == _normalise(b)


def array_difference(name: str, ref: np.ndarray, out: np.ndarray) -> str | None:
    """``None`` when ``out`` equals ``ref`` bit for bit, else one line saying how they differ:
    dtype or shape, or the number of differing elements and the largest |difference|."""
    if ref.dtype != out.dtype or ref.shape != out.shape:
        return f"{name}: {out.dtype}{list(out.shape)} vs reference {ref.dtype}{list(ref.shape)}"
    if ref.dtype.kind not in "biufc":
        masked_ref, masked_out = _normalise(ref.ravel()), _normalise(out.ravel())
        n = sum(x != y for x, y in zip(masked_ref, masked_out))
        return f"{name}: {n}/{ref.size} strings differ" if n else None
    if ref.tobytes() == out.tobytes():
        return None
    width = ref.dtype.itemsize
    ref_bits = np.ascontiguousarray(ref).view(np.uint8).reshape(-1, width)
    out_bits = np.ascontiguousarray(out).view(np.uint8).reshape(-1, width)
    n = int((ref_bits != out_bits).any(axis=1).sum())
    with np.errstate(invalid="ignore", over="ignore"):
        delta = np.abs(out.astype(np.complex128) - ref.astype(np.complex128))
    largest = float(np.nanmax(delta)) if np.isfinite(delta).any() else float("nan")
    return f"{name}: {n}/{ref.size} elements differ, max |diff| {largest:.3g}"


def _attribute_differences(name: str, ref: dict, out: dict) -> list[str]:
    lines = []
    for key in sorted(set(ref) | set(out)):
        if key not in out or key not in ref:
            lines.append(f"{name}: attribute {key!r} only in {'reference' if key in ref else 'rerun'}")
        elif not _equal_values(ref[key], out[key]):
            lines.append(f"{name}: attribute {key!r} differs")
    return lines


def _node_differences(ref: dict, out: dict, values, layout) -> list[str]:
    """Differences between two trees of named HDF5 or Zarr nodes: which nodes exist, their
    attributes, and for arrays their layout and values (``values(name, node)``; None for a
    group or a node compared otherwise; ``layout(node)`` gives chunking and compression)."""
    lines = [f"{name}: only in {'reference' if name in ref else 'rerun'}"
             for name in sorted(set(ref) ^ set(out))]
    for name in sorted(set(ref) & set(out)):
        a, b = ref[name], out[name]
        lines += _attribute_differences(name, dict(a.attrs), dict(b.attrs))
        if layout(a) != layout(b):
            lines.append(f"{name}: layout {layout(b)} vs reference {layout(a)}")
        ref_values = values(name, a)
        if ref_values is not None:
            line = array_difference(name, ref_values, values(name, b))
            lines += [line] if line else []
    return lines


def _hdf5_nodes(h5: h5py.File) -> dict:
    nodes = {"/": h5}
    h5.visititems(nodes.__setitem__)  # returns None: visititems stops at any other value
    return nodes


def compare_hdf5(ref_path: Path, out_path: Path) -> list[str]:
    """Differences between two HDF5 files: nodes, attributes, dataset layout and bytes."""
    with h5py.File(ref_path, "r") as ref, h5py.File(out_path, "r") as out:
        return _node_differences(
            _hdf5_nodes(ref), _hdf5_nodes(out),
            lambda _, node: np.asarray(node[()]) if isinstance(node, h5py.Dataset) else None,
            lambda node: (node.chunks, node.compression) if isinstance(node, h5py.Dataset) else None)


def _zarr_nodes(group, prefix="") -> dict:
    nodes = {prefix or "/": group}
    for name, node in group.members():
        path = f"{prefix}/{name}"
        nodes.update(_zarr_nodes(node, path) if isinstance(node, zarr.Group) else {path: node})
    return nodes


def _zarr_values(path: str, node):
    """An array's values for the comparison; None for a group and for ``source_sha256``
    (checked against the files instead, :func:`source_hash_differences`)."""
    if not isinstance(node, zarr.Array) or path.endswith("/" + SOURCE_HASHES):
        return None
    return np.asarray(node[...])


def source_hash_differences(store_path: Path, nodes: dict, ref_nodes: dict) -> list[str]:
    """Every ``source_sha256`` of the store against the SHA-256 of its ``source_file`` (a
    path relative to the store's directory) as the rerun left it; where that file is not
    there (a store the case prepared elsewhere and copied in), against the reference's
    digest of the same row."""
    lines = []
    for name, node in nodes.items():
        if not name.endswith("/" + SOURCE_HASHES):
            continue
        files = np.asarray(nodes[name[:-len(SOURCE_HASHES)] + "source_file"][...])
        reference = np.asarray(ref_nodes[name][...]) if name in ref_nodes else None
        for row, (source, digest) in enumerate(zip(files, np.asarray(node[...]))):
            path = store_path.parent / str(source)
            if path.is_file():
                expected, what = hashlib.sha256(path.read_bytes()).hexdigest(), "the file"
            elif reference is not None and row < len(reference):
                expected, what = str(reference[row]), "the reference"
            else:
                expected, what = None, "nothing (no file, no reference row)"
            if expected != str(digest):
                lines.append(f"{name}: {source}: stored {digest}, {what} has {expected}")
    return lines


def compare_zarr(ref_path: Path, out_path: Path) -> list[str]:
    """Differences between two Zarr stores: nodes, attributes, array chunking and values;
    and source hashes that do not match their files."""
    ref = _zarr_nodes(zarr.open_group(str(ref_path), mode="r"))
    out = _zarr_nodes(zarr.open_group(str(out_path), mode="r"))
    return _node_differences(
        ref, out, _zarr_values,
        lambda node: (node.chunks, node.shards) if isinstance(node, zarr.Array) else None,
    ) + source_hash_differences(out_path, out, ref)


def compare_card(ref_path: Path, out_path: Path) -> list[str]:
    """Differences between two dataset cards (``*.zarr.README.md``), as normalised text."""
    if _normalise(ref_path.read_text()) != _normalise(out_path.read_text()):
        return ["card differs"]
    return []


def _object_differences(name: str, ref, out) -> list[str]:
    """Differences between two loaded ``torch.save`` objects, recursively, except the
    wall-time entries of dicts."""
    if isinstance(ref, torch.Tensor) and isinstance(out, torch.Tensor):
        line = array_difference(name, ref.detach().cpu().numpy(), out.detach().cpu().numpy())
        return [line] if line else []
    if isinstance(ref, dict) and isinstance(out, dict):
        entry = lambda key: f"{name}.{key}" if name else str(key)  # noqa: E731
        lines = [f"{entry(k)}: only in {'reference' if k in ref else 'rerun'}"
                 for k in sorted(set(ref) ^ set(out), key=str)]
        for key in [k for k in ref if k in out and k not in WALL_TIME_FIELDS]:
            lines += _object_differences(entry(key), ref[key], out[key])
        return lines
    if isinstance(ref, (list, tuple)) and isinstance(out, (list, tuple)) and len(ref) == len(out):
        return [line for i, (a, b) in enumerate(zip(ref, out))
                for line in _object_differences(f"{name}[{i}]", a, b)]
    return [] if _equal_values(ref, out) else [f"{name}: {out!r:.60} vs reference {ref!r:.60}"]


def compare_torch(ref_path: Path, out_path: Path) -> list[str]:
    """Differences between two ``torch.save`` files (every entry, tensors bit for bit)."""
    ref = torch.load(ref_path, map_location="cpu", weights_only=False)
    out = torch.load(out_path, map_location="cpu", weights_only=False)
    return _object_differences("", ref, out)


def compare_csv(ref_path: Path, out_path: Path) -> list[str]:
    """Differences between two CSV files, row by row, except the wall-time columns."""
    with open(ref_path, newline="") as fh:
        ref = list(csv.reader(fh))
    with open(out_path, newline="") as fh:
        out = list(csv.reader(fh))
    if not ref or not out or ref[0] != out[0]:
        return [f"header {out[:1]} vs reference {ref[:1]}"]
    keep = [i for i, column in enumerate(ref[0]) if column not in WALL_TIME_FIELDS]
    lines = []
    if len(ref) != len(out):
        lines.append(f"{len(out) - 1} rows vs reference {len(ref) - 1}"
                     f" (first column: {[r[0] for r in out[1:]]})")
    for row, (a, b) in enumerate(zip(ref[1:], out[1:])):
        columns = [ref[0][i] for i in keep if i >= len(a) or i >= len(b) or a[i] != b[i]]
        if columns:
            lines.append(f"row {row} differs in {', '.join(columns)}")
    return lines


COMPARERS: dict[str, Callable[[Path, Path], list[str]]] = {
    ".h5": compare_hdf5, ".zarr": compare_zarr, ".pt": compare_torch, ".csv": compare_csv,
    ".md": compare_card}


def output_entries(root: Path) -> list[str]:
    """Relative paths of the files under ``root`` that are compared; a ``*.zarr`` directory
    counts as one entry, and the ignored directories and leftovers are skipped."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for name in list(dirnames):
            if name in IGNORED_DIRECTORIES or _is_leftover(name):
                dirnames.remove(name)
            elif name.endswith(".zarr"):
                dirnames.remove(name)
                entries.append(str(rel / name))
        entries += [str(rel / f) for f in filenames if not _is_leftover(f)]
    return sorted(entries)


def compare_outputs(reference: Path, result: Path) -> list[str]:
    """Every difference between two run directories (empty: bit-identical)."""
    ref_entries, out_entries = output_entries(reference), output_entries(result)
    lines = [f"{e}: missing after the rerun" for e in ref_entries if e not in out_entries]
    lines += [f"{e}: not in the reference" for e in out_entries if e not in ref_entries]
    for entry in (e for e in ref_entries if e in out_entries):
        compare = COMPARERS.get(Path(entry).suffix)
        if compare is not None:
            lines += [f"{entry}: {line}" for line in compare(reference / entry, result / entry)]
        elif (reference / entry).read_bytes() != (result / entry).read_bytes():
            lines.append(f"{entry}: bytes differ")
    return lines


def _is_leftover(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in LEFTOVER_PATTERNS)


def leftovers(root: Path) -> list[str]:
    """Temporary files, locks, checkpoints and Snakemake markers left under ``root``."""
    found = [str(p.relative_to(root)) for p in root.rglob("*") if _is_leftover(p.name)]
    found += [str(p.relative_to(root)) for pattern in SNAKEMAKE_LEFTOVERS for p in root.glob(pattern)]
    return sorted(found)


# --------------------------------------------------------------------------- running

@dataclass
class Case:
    """One command to interrupt: run in a fresh ``run`` directory made by ``prepare``."""

    name: str
    command: list[str]
    prepare: Callable[[Path], None]
    describe: Callable[[Path], str]
    env: dict
    before_rerun: list[list[str]] = field(default_factory=list)


@dataclass
class Trial:
    """One kill and rerun, and what came of it."""

    case: str
    fraction: float
    kill_at: str = ""                  # progress at the kill / the reference's whole progress
    kill_s: float | None = None        # after the run's first write; None: it finished first
    state: str = ""                    # what was on disk when it was killed
    rerun_rc: int | None = None
    rerun_s: float | None = None
    resumed: bool = False
    rerun_message: str = ""            # last line of a rerun that failed
    differences: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def ok(self) -> bool:
        return not (self.differences or self.leftovers or self.error)


@dataclass
class Run:
    rc: int
    work_s: float      # first write -> last write (or kill)
    wall_s: float
    killed: bool
    timeline: list     # (seconds after the first write, file states written by then)


def _file_states(root: Path) -> set[tuple[str, int]]:
    """(relative path, size) of every lasting file under ``root``, with process ids in
    temporary directory names replaced by ``*``; inside a temporary directory a file counts
    by its path alone (-1), whatever size it has while being written. Temporary files (seen
    or missed by chance) and the ignored directories (logs, event files) do not count, so
    the set grows with the work in the same steps in every run."""
    states = set()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in IGNORED_DIRECTORIES]
        in_temporary = PROCESS_ID.search(os.path.relpath(dirpath, root)) is not None
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                size = -1 if in_temporary else os.stat(path).st_size
            except FileNotFoundError:
                continue
            if not _is_leftover(name):
                states.add((PROCESS_ID.sub(r"\1*", os.path.relpath(path, root)), size))
    return states


def run_command(command, cwd: Path, env: dict, log: Path, kill_at: int | None = None,
                timeout: float = 1800) -> Run:
    """Run ``command`` in ``cwd`` (output appended to ``log``) and record its progress: the
    file states (:func:`_file_states`) it has written, over time. With ``kill_at``, SIGKILL
    its process group as soon as it has written that many."""
    before = _file_states(cwd)
    with open(log, "ab") as fh:
        fh.write(f"$ {' '.join(map(str, command))}\n".encode())
        fh.flush()
        start = time.monotonic()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    seen: set = set()
    first_write, last_write, timeline = None, None, []
    try:
        while proc.poll() is None:
            now = time.monotonic()
            if now - start > timeout:
                raise TimeoutError(f"{command[:3]} ran over {timeout} s")
            new = _file_states(cwd) - before - seen
            if new:
                seen |= new
                first_write, last_write = first_write or now, now
                timeline.append((now - first_write, len(seen)))
            if kill_at is not None and len(seen) >= kill_at:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return Run(proc.returncode, now - first_write, now - start, True, timeline)
            time.sleep(0.01)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    end = time.monotonic()
    return Run(proc.returncode, (last_write or end) - (first_write or start), end - start, False,
               timeline)


def progress_at(timeline: list[tuple[float, int]], seconds: float) -> int:
    """The file states a run had written ``seconds`` after its first write (at least one)."""
    return max([n for t, n in timeline if t <= seconds], default=1)


def _fresh(run_dir: Path, case: Case) -> None:
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    case.prepare(run_dir)


def _log_tail(log: Path, n: int = 3) -> str:
    return " | ".join(log.read_text(errors="replace").strip().splitlines()[-n:])


def _resumed(log: Path, run_dir: Path, start: int) -> bool:
    """Whether the rerun said it resumed (its own output, or job logs under ``results/logs``)."""
    texts = [log.read_text(errors="replace")[start:]]
    texts += [p.read_text(errors="replace") for p in run_dir.glob("results/logs/**/*.log")]
    return any("resuming" in text for text in texts)


def run_case(case: Case, work: Path, fractions) -> list[Trial]:
    """The reference run, then one kill-and-rerun trial per fraction of its work time."""
    work.mkdir(parents=True, exist_ok=True)
    run_dir, reference = work / "run", work / "reference"
    _fresh(run_dir, case)
    log = work / "reference.log"
    ref = run_command(case.command, run_dir, case.env, log)
    if ref.rc != 0:
        raise RuntimeError(f"{case.name}: the uninterrupted run failed: {_log_tail(log)}")
    if reference.exists():
        shutil.rmtree(reference)
    shutil.copytree(run_dir, reference, symlinks=True)
    print(f"{case.name}: reference {ref.wall_s:.1f} s, {ref.work_s:.1f} s from first to last write",
          flush=True)
    trials = []
    for fraction in fractions:
        trial = Trial(case.name, fraction)
        log = work / f"trial-{fraction:g}.log"
        log.unlink(missing_ok=True)
        _fresh(run_dir, case)
        kill_at = progress_at(ref.timeline, fraction * ref.work_s)
        trial.kill_at = f"{kill_at}/{ref.timeline[-1][1] if ref.timeline else 0}"
        killed = run_command(case.command, run_dir, case.env, log, kill_at=kill_at)
        if killed.killed:
            trial.kill_s, trial.state = killed.work_s, case.describe(run_dir)
            for command in case.before_rerun:
                run_command(command, run_dir, case.env, log)
            start = log.stat().st_size
            rerun = run_command(case.command, run_dir, case.env, log)
            trial.rerun_rc, trial.rerun_s = rerun.rc, rerun.wall_s
            trial.resumed = _resumed(log, run_dir, start)
            if rerun.rc != 0:
                trial.rerun_message = _log_tail(log, 1)
        elif killed.rc != 0:
            trial.error = f"exit {killed.rc} before the kill: {_log_tail(log, 1)}"
        else:
            trial.state = "finished before the kill"
        if not trial.error:
            trial.differences = compare_outputs(reference, run_dir)
        trial.leftovers = leftovers(run_dir)
        if trial.rerun_message and (trial.differences or trial.leftovers):
            trial.error = f"rerun exit {trial.rerun_rc}: {trial.rerun_message}"
        if not trial.ok:
            shutil.copytree(run_dir, work / f"failed-{fraction:g}", symlinks=True, dirs_exist_ok=True)
        print(format_trial(trial), flush=True)
        trials.append(trial)
    return trials


# --------------------------------------------------------------------------- the cases

@dataclass(frozen=True)
class Scale:
    """Sizes of the cases and their kill fractions (of the reference's work time)."""

    propagate_steps: int
    checkpoint_every: int
    trajectory_steps: int          # the files assembled and trained on
    geometries: int                # >= 3: training needs train, validation and test geometries
    epochs: int
    workflow_steps: int
    workflow_epochs: int
    workflow_trials_train_only: bool   # snakemake runs start from the data stages, made once
    fractions: dict


CASES = ("propagate", "assemble", "append", "train", "snakemake")
SMALL = Scale(propagate_steps=200, checkpoint_every=20, trajectory_steps=60, geometries=4,
              epochs=3, workflow_steps=40, workflow_epochs=2, workflow_trials_train_only=True,
              fractions={"propagate": (0.25, 0.6), "assemble": (0.2, 0.6), "append": (0.3,),
                         "train": (0.25, 0.75), "snakemake": (0.6,)})
FULL = Scale(propagate_steps=2000, checkpoint_every=100, trajectory_steps=200, geometries=4,
             epochs=6, workflow_steps=200, workflow_epochs=3, workflow_trials_train_only=False,
             fractions={name: (0.05, 0.2, 0.4, 0.6, 0.8, 0.9, 0.97, 0.995, 1.0)
                        for name in CASES})
FIELDS = ("kick:2e-3:z", "gaussian:0.01:0.13:4:2:z")


def make_inputs(directory: Path, scale: Scale) -> list[Path]:
    """H2 trajectory files (stretched geometries x ``FIELDS``) for the assembly and training
    cases, made once in this process; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    spec = load_molecule("h2")
    paths = []
    for k in range(scale.geometries):
        stretch = 1.0 + 0.05 * (k - 1)
        inputs = SimulationInputs(molecule=spec, fields=[parse_field(f) for f in FIELDS],
                                  settings=PropagationSettings(dt=0.2, n_steps=scale.trajectory_steps),
                                  positions_angstrom=spec.positions_angstrom * stretch,
                                  grid_level=1, geometry_id=f"s{k}")
        for i, traj in enumerate(simulate(inputs)):
            paths.append(write_trajectory(directory / f"g{k}-f{i}.h5", traj))
    return paths


def _no_inputs(run: Path) -> None:
    """Nothing to prepare: the command's inputs lie outside its run directory."""


def _count(pattern: str, root: Path) -> int:
    return sum(1 for _ in root.glob(pattern))


def _describe_propagation(run: Path) -> str:
    parts = []
    if (run / "h2.h5.ckpt").is_dir():
        parts.append(f"checkpoint: {_count('h2.h5.ckpt/chunk-*.frames.npz', run)} chunks")
    if _count(".*.tmp-*", run):
        parts.append("tmp file")
    if (run / "h2.h5").exists():
        parts.append("output")
    return ", ".join(parts) or "nothing"


def _describe_store(run: Path) -> str:
    parts = ["tmp store"] if _count(".*.tmp-*", run) else []
    card = run / "store.zarr" / "zarr.json"
    if card.exists():
        attrs = json.loads(card.read_text())["attributes"]
        parts.append(f"store of {attrs.get('n_trajectories')}")
    return ", ".join(parts) or "nothing"


def _describe_model_dir(model: Path) -> str:
    """Epoch rows in the metrics, and which of checkpoint.pt and model.pt exist."""
    metrics = model / "train_metrics.csv"
    rows = len(metrics.read_text().splitlines()) - 1 if metrics.is_file() else 0
    return ", ".join([f"{max(rows, 0)} epochs in csv"]
                     + [name for name in ("checkpoint.pt", "model.pt") if (model / name).exists()])


def _describe_training(run: Path) -> str:
    return _describe_model_dir(run / "model") if (run / "model").is_dir() else "nothing"


def _describe_workflow(run: Path) -> str:
    results = run / "results"
    parts = [f"{_count('ground_states/*/*.h5', results)} ground states",
             f"{_count('trajectories/*/*/*.h5', results)} trajectories"]
    if (results / "datasets" / "h2.zarr").is_dir():
        parts.append("store")
    if (results / "models" / "h2").is_dir():
        parts.append(_describe_model_dir(results / "models" / "h2"))
    return ", ".join(parts)


def _prepare_workflow(run: Path, config: str, upstream: Path | None, snakemake: list[str],
                      env: dict) -> None:
    """The config and, with ``upstream``, a copy of the workflow's data stages and Snakemake
    metadata with their times, so that only the training job is left to run. ``upstream``
    is made once, by running the workflow up to the training set's store."""
    (run / "config.yaml").write_text(config)
    if upstream is None:
        return
    if not (upstream / "results" / "datasets" / "h2.zarr").is_dir():
        upstream.mkdir(parents=True, exist_ok=True)
        (upstream / "config.yaml").write_text(config)
        log = upstream.with_name("upstream.log")
        if run_command(snakemake + ["--", "results/datasets/h2.zarr"], upstream, env, log).rc:
            raise RuntimeError(f"the workflow's data stages failed: {_log_tail(log)}")
    shutil.copytree(upstream / ".snakemake", run / ".snakemake", symlinks=True)
    for stage in ("geometries", "ground_states", "trajectories", "datasets"):
        shutil.copytree(upstream / "results" / stage, run / "results" / stage, symlinks=True)


def workflow_config(scale: Scale, threads: int) -> dict:
    """A tiny one-molecule config: H2, 3 geometries (train, validation, test), one z field each."""
    return {
        "molecules": {"h2": {"geometries": 3, "trajectories": 1}},
        "level_of_theory": {"grid_level": 1},
        "ground_state": {"nstates": 4},
        "fields": {"polarizations": ["z"]},       # H2 in 6-31G responds only along its axis
        "propagation": {"dt": 0.2, "steps": scale.workflow_steps,
                        "checkpoint_every": max(1, scale.workflow_steps // 8)},
        "training_sets": {"h2": {"molecules": ["h2"]}},
        "train": {"window": 8, "epochs": scale.workflow_epochs, "threads": threads},
        "evaluate": {"ablations": []},
        "resources": {"max_threads": threads},
    }


def _inputs(work: Path, scale: Scale, names) -> tuple[list[Path], Path, Path]:
    """The trajectory files, the store trained on and the store appended to, under
    ``work/inputs``: made once, and only those that the cases ``names`` need."""
    inputs = work / "inputs"
    store, half_store = inputs / "store.zarr", inputs / "half.zarr"
    if not {"assemble", "append", "train"} & set(names):
        return [], store, half_store
    files = sorted(inputs.glob("*.h5")) if inputs.is_dir() else []
    if len(files) != scale.geometries * len(FIELDS):
        files = make_inputs(inputs, scale)
    if "train" in names and not store.exists():
        assemble_store(files, store, progress=False)
    if "append" in names and not half_store.exists():
        assemble_store(files[:len(files) // 2], half_store, progress=False)
    return files, store, half_store


def make_cases(work: Path, scale: Scale, threads: int = 1, names=CASES) -> dict[str, Case]:
    """The cases ``names``, on inputs made under ``work/inputs`` (and ``work/snakemake/upstream``)."""
    env = command_env(threads)
    files, store, half_store = _inputs(work, scale, names)
    half = len(files) // 2
    rtml = [sys.executable, "-m", "rtml"]
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                 "--profile", str(LOCAL_PROFILE), "--configfile", "config.yaml",
                 "--replace-workflow-config", "--cores", "2"]
    config = yaml.safe_dump(workflow_config(scale, threads), sort_keys=False)
    upstream = work / "snakemake" / "upstream" if scale.workflow_trials_train_only else None
    cases = {
        "propagate": Case(
            "propagate",
            rtml + ["propagate", "h2", "--field", FIELDS[0], "--dt", "0.2", "--grid-level", "1",
                    "--steps", str(scale.propagate_steps),
                    "--checkpoint-every", str(scale.checkpoint_every),
                    "--threads", str(threads), "-q", "-o", "h2.h5"],
            _no_inputs, _describe_propagation, env),
        "assemble": Case("assemble", rtml + ["dataset", "assemble", *map(str, files), "-q",
                                             "-o", "store.zarr"], _no_inputs, _describe_store, env),
        "append": Case("append", rtml + ["dataset", "assemble", *map(str, files[half:]), "-q",
                                         "-o", "store.zarr"],
                       lambda run: shutil.copytree(half_store, run / "store.zarr"), _describe_store, env),
        "train": Case("train", rtml + ["train", str(store), "--epochs", str(scale.epochs),
                                       "--sequence-epochs", "2", "--frame-batches", "4",
                                       "--window", "8", "--d-model", "8",
                                       "--threads", str(threads), "-q", "-o", "model"],
                      _no_inputs, _describe_training, env),
        "snakemake": Case("snakemake", snakemake + ["--", "train_h2"],
                          lambda run: _prepare_workflow(run, config, upstream, snakemake, env),
                          _describe_workflow, env, before_rerun=[snakemake + ["--unlock"]]),
    }
    return {name: cases[name] for name in names}


# --------------------------------------------------------------------------- report

COLUMNS = ("case", "fraction", "kill_at", "kill_s", "state", "rerun_rc", "rerun_s", "resumed",
           "identical", "leftovers", "differences")


def _row(trial: Trial) -> dict:
    return {"case": trial.case, "fraction": trial.fraction, "kill_at": trial.kill_at,
            "kill_s": "" if trial.kill_s is None else f"{trial.kill_s:.2f}",
            "state": trial.state, "rerun_rc": "" if trial.rerun_rc is None else trial.rerun_rc,
            "rerun_s": "" if trial.rerun_s is None else f"{trial.rerun_s:.1f}",
            "resumed": "yes" if trial.resumed else "no",
            "identical": "yes" if not (trial.differences or trial.error) else "NO",
            "leftovers": " ".join(trial.leftovers),
            "differences": "; ".join(([trial.error] if trial.error else []) + trial.differences)}


def format_trial(trial: Trial) -> str:
    row = _row(trial)
    text = (f"{row['case']:<10} f={row['fraction']:<5} kill at {row['kill_at']:>7}: "
            f"{row['kill_s'] or '-':>6} s "
            f"[{row['state']}]  rerun {row['rerun_s'] or '-'} s resumed={row['resumed']}  "
            f"identical={row['identical']}")
    if trial.rerun_message and not trial.error:
        text += f"\n    rerun exit {trial.rerun_rc} (the killed run had finished): {trial.rerun_message}"
    if trial.leftovers:
        text += f"\n    leftovers: {row['leftovers']}"
    for line in ([trial.error] if trial.error else []) + trial.differences[:8]:
        text += f"\n    {line}"
    if len(trial.differences) > 8:
        text += f"\n    ... {len(trial.differences) - 8} more"
    return text


def write_csv(path: Path, trials: list[Trial]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(_row(t) for t in trials)


def command_env(threads: int) -> dict:
    """The environment of every command: ``threads`` OpenMP/BLAS threads."""
    n = str(threads)
    return {**os.environ, "OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work and result directory")
    parser.add_argument("--small", action="store_true", help="the CI sizes and kill points")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--fractions", type=lambda s: tuple(float(x) for x in s.split(",")),
                        help="kill fractions for every case, e.g. 0.2,0.5,0.9")
    parser.add_argument("--threads", type=int, default=1, help="threads of every command")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # kill the running command too
    scale = SMALL if args.small else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"load: {os.getloadavg()}", flush=True)
    cases = make_cases(args.out, scale, args.threads, args.cases)
    trials = []
    for name in args.cases:
        trials += run_case(cases[name], args.out / name, args.fractions or scale.fractions[name])
    write_csv(args.out / "reliability.csv", trials)
    print(f"load: {os.getloadavg()}")
    bad = [t for t in trials if not t.ok]
    print(f"{len(trials) - len(bad)}/{len(trials)} trials bit-identical with nothing left behind")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
