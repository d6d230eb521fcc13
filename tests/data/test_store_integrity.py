"""Nothing bad gets into the dataset store, and a killed assembly leaves it consistent.

Assembly validates every new file as ``rtml validate`` does and refuses the first that fails
before anything is written; an append is all or nothing; a killed assembly's temporary store
is removed by the next run, and the index, ``n_trajectories`` and ``dataset_sha256`` always
agree with the committed data.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr

from rtml import InputError
from rtml.data import (assemble_store, open_dataset, open_index, store_info, validate_trajectory,
                       write_trajectory)

#: Runs assemble_store(FILES, STORE) in a child process that SIGKILLs itself once KILL_AT
#: trajectories are written: argv = STORE KILL_AT FILES...
_KILLED_ASSEMBLY = """
import os, signal, sys
from rtml.data import assemble_store

def progress(n_written):
    if n_written == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)

assemble_store(sys.argv[3:], sys.argv[1], progress=progress)
"""


#: Runs assemble_store(FILES, STORE) in a child process that SIGKILLs itself at the start of
#: its KILL_AT-th write to the store (zarr LocalStore set/delete, 1-based; 0: never), then
#: prints every write as "op key": argv = STORE KILL_AT FILES...
_KILLED_AT_WRITE = """
import os, signal, sys
import zarr.storage
from rtml.data import assemble_store

kill_at, writes = int(sys.argv[2]), []

def counted(op):
    original = getattr(zarr.storage.LocalStore, op)
    async def write(self, key, *args, **kwargs):
        writes.append(f"{op} {key}")
        if len(writes) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return await original(self, key, *args, **kwargs)
    setattr(zarr.storage.LocalStore, op, write)

for op in ("set", "set_if_not_exists", "delete", "delete_dir"):
    counted(op)
assemble_store(sys.argv[3:], sys.argv[1], progress=False)
print("\\n".join(writes))
"""


def killed_assembly(store: Path, files, kill_at: int) -> None:
    """Assemble ``files`` into ``store`` in a child process killed (SIGKILL) after
    ``kill_at`` trajectories are written."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _KILLED_ASSEMBLY, str(store), str(kill_at),
                           *map(str, files)], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def store_bytes(store: Path) -> dict[str, str]:
    """sha256 of every file of a store (metadata included)."""
    return {str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(store.rglob("*")) if p.is_file()}


def assert_consistent(store: Path, n_expected: int) -> None:
    """The index, the counts and the dataset hash all describe the committed data."""
    groups = open_dataset(store)
    rows = {(mol, str(t)) for mol, ds in groups.items() for t in ds.traj_id.values}
    index = open_index(store)
    assert len(index) == len(rows) == n_expected
    assert set(zip(index.molecule, index.traj_id)) == rows
    info = store_info(store)
    assert info["n_trajectories"] == n_expected
    assert {m: v["n_trajectories"] for m, v in info["molecules"].items()} == {
        mol: ds.sizes["traj_id"] for mol, ds in groups.items()}
    pairs = sorted(f"{t} {s}" for t, s in zip(index.traj_id, index.inputs_sha256))
    assert info["dataset_sha256"] == hashlib.sha256("\n".join(pairs).encode()).hexdigest()


def assert_plain_view(store: Path, counts: dict[str, int]) -> None:
    """Plain xarray (consolidated metadata, warnings as errors) sees exactly the committed
    rows of each molecule group."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tree = xr.open_datatree(store, engine="zarr")
    assert sorted(tree.children) == sorted([*counts, "index"])
    for mol, n in counts.items():
        assert tree[mol].sizes["traj_id"] == n and tree[mol].attrs["n_committed"] == n, mol
    assert tree["index"].sizes["row_index"] == sum(counts.values())


def corrupt(source: Path, dest: Path, how: str) -> Path:
    """A copy of a good trajectory file broken in one way."""
    shutil.copy(source, dest)
    with h5py.File(dest, "r+") as f:
        if how == "nan_density":
            f["dynamics/density_real"][3, 0, 1, 1] = np.nan
        elif how == "inf_dipole":
            f["dynamics/dipole"][5, 2] = np.inf
        elif how == "imag_one_frame":  # broadcast silently by numpy: frame 0's Im P everywhere
            imag = f["dynamics/density_imag"][:1]
            del f["dynamics/density_imag"]
            f["dynamics/density_imag"] = imag
        elif how == "short_dipole":
            dipole = f["dynamics/dipole"][:-1]
            del f["dynamics/dipole"]
            f["dynamics/dipole"] = dipole
        elif how == "short_density":  # 13 density frames against a 20-frame time axis
            for part in ("real", "imag"):
                frames = f[f"dynamics/density_{part}"][:13]
                del f[f"dynamics/density_{part}"]
                f[f"dynamics/density_{part}"] = frames
            f.attrs["n_steps"] = 13
    return dest


BROKEN = {"nan_density": "finite", "inf_dipole": "finite", "imag_one_frame": "schema",
          "short_dipole": "schema", "short_density": "schema"}


@pytest.mark.parametrize("how", sorted(BROKEN))
def test_assemble_refuses_what_validate_fails(how, dataset_h5_files, tmp_path):
    good = dataset_h5_files["h2"][:2]
    bad = corrupt(good[0], tmp_path / f"{how}.h5", how)
    assert BROKEN[how] in {c.name for c in validate_trajectory(bad).failed}
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputError, match=rf"{how}\.h5: fails validation \(.*{BROKEN[how]}"):
        assemble_store([good[1], bad], out / "new.zarr", progress=False)
    assert list(out.iterdir()) == []  # no store, no temporary

    store = out / "s.zarr"
    assemble_store(good[1:], store, progress=False)
    before = store_bytes(store)
    with pytest.raises(InputError, match=rf"{how}\.h5: fails validation"):
        assemble_store([bad], store, progress=False)
    assert store_bytes(store) == before  # checked before anything is written


def test_append_of_good_and_bad_files_commits_nothing(dataset_h5_files, tmp_path):
    h2 = dataset_h5_files["h2"]
    store = tmp_path / "s.zarr"
    assemble_store(h2[:2], store, progress=False)
    before = store_bytes(store)
    bad = corrupt(h2[5], tmp_path / "bad.h5", "nan_density")
    with pytest.raises(InputError, match=r"bad\.h5: fails validation \(finite"):
        assemble_store(h2[2:4] + [bad], store, progress=False)
    assert store_bytes(store) == before
    assert_consistent(store, 2)
    assert assemble_store(h2[2:4], store, progress=False)["added"] == 2
    assert_consistent(store, 4)


def test_static_trajectory_is_flagged_and_refused_unless_allowed(dataset_trajectory, tmp_path):
    traj = dataset_trajectory("h2", "eq", "kick:1e-3:z")
    traj.density = np.repeat(traj.density[:1], traj.n_steps, axis=0)  # the kick never couples
    static = write_trajectory(tmp_path / "static.h5", traj)
    check = validate_trajectory(static)["response"]
    assert not check.passed and check.value == 0.0 and "static" in check.message
    traj.field_spec = {**traj.field_spec, "kind": "none", "amplitude": 0.0}
    assert validate_trajectory(write_trajectory(tmp_path / "free.h5", traj))["response"].passed

    store = tmp_path / "s.zarr"
    with pytest.raises(InputError, match=r"static\.h5: fails check 'response'.*--allow-static"):
        assemble_store([static], store, progress=False)
    assert not store.exists()
    assert assemble_store([static], store, progress=False, allow_static=True)["added"] == 1


def test_a_single_frame_has_no_response_to_measure(dataset_trajectory, tmp_path):
    """An imported restart snapshot (one frame) under a field is not called static."""
    traj = dataset_trajectory("h2", "eq", "kick:1e-3:z")
    for name in ("density", "time", "field", "energy", "dipole"):
        setattr(traj, name, getattr(traj, name)[:1])
    traj.fock = None if traj.fock is None else traj.fock[:1]
    check = validate_trajectory(write_trajectory(tmp_path / "one.h5", traj))["response"]
    assert check.passed and "one frame" in check.message


def test_killed_new_store_leaves_a_temporary_the_next_run_removes(dataset_h5_files, tmp_path):
    files = dataset_h5_files["lih"][:4]
    store = tmp_path / "s.zarr"
    killed_assembly(store, files, kill_at=2)
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert not store.exists() and len(leftovers) == 1 and leftovers[0].startswith(".s.zarr.tmp-")

    live = subprocess.Popen(["sleep", "60"])  # a concurrent assembly's temporary is kept
    try:
        (tmp_path / f".s.zarr.tmp-{live.pid}").mkdir()
        assert assemble_store(files, store, progress=False)["added"] == 4
        assert sorted(p.name for p in tmp_path.iterdir()) == [f".s.zarr.tmp-{live.pid}",
                                                              "s.zarr", "s.zarr.README.md"]
    finally:
        live.kill()
        live.wait()
    assert_consistent(store, 4)


def test_killed_append_commits_nothing_and_stays_consistent(dataset_h5_files, tmp_path):
    files = dataset_h5_files["lih"] + dataset_h5_files["h2"][:2]  # also a new molecule
    store = tmp_path / "s.zarr"
    assemble_store(files[:2], store, progress=False)
    killed_assembly(store, files[2:], kill_at=5)
    assert_consistent(store, 2)
    assert_plain_view(store, {"lih": 2})  # the last complete assembly's consolidated view
    summary = assemble_store(files, store, progress=False)
    assert summary["added"] == 6 and summary["skipped"] == 2
    assert_consistent(store, 8)
    assert_plain_view(store, {"lih": 6, "h2": 2})
    assert not list(store.rglob("*.partial"))


def test_index_left_behind_by_a_kill_after_the_commit(dataset_h5_files, tmp_path):
    """A kill between the commit and the index rewrite leaves the previous index on disk:
    readers still see every committed trajectory."""
    store = tmp_path / "s.zarr"
    assemble_store(dataset_h5_files["lih"][:2], store, progress=False)
    previous = tmp_path / "index-before"
    shutil.copytree(store / "index", previous)
    assemble_store(dataset_h5_files["lih"][2:] + dataset_h5_files["h2"][:1], store,
                   progress=False)
    shutil.rmtree(store / "index")
    shutil.copytree(previous, store / "index")
    assert_consistent(store, 7)
    rows = open_index(store)
    assert list(rows.row) == list(range(6)) + [0]
    assemble_store(dataset_h5_files["lih"][:1], store, progress=False)  # repairs it on disk
    assert zarr.open_group(str(store / "index"), mode="r")["traj_id"].shape == (7,)


def test_arrays_left_of_different_lengths_by_a_kill(dataset_h5_files, tmp_path):
    """A kill while an append grows the arrays along traj leaves them of different lengths
    (plain xarray cannot open the group): rtml still opens the committed rows."""
    store = tmp_path / "s.zarr"
    assemble_store(dataset_h5_files["lih"][:2], store, progress=False)
    before = open_dataset(store, "lih").load()
    group = zarr.open_group(str(store / "lih"), mode="r+")
    for name, length in (("dipole", 4), ("rho", 3)):
        group[name].resize((length,) + group[name].shape[1:])
    xr.testing.assert_identical(open_dataset(store, "lih").load(), before)
    assert_consistent(store, 2)
    assemble_store(dataset_h5_files["lih"][2:3], store, progress=False)
    assert_consistent(store, 3)


def test_kills_at_any_time_keep_the_store_consistent(dataset_h5_files, tmp_path):
    """SIGKILL an append at several moments (timed from an uninterrupted run): after each,
    the store is consistent and holds either the old or the new trajectories."""
    base, new = dataset_h5_files["lih"][:2], dataset_h5_files["lih"][2:] + dataset_h5_files["h2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    script = ("import sys; from rtml.data import assemble_store; print('ready', flush=True); "
              "assemble_store(sys.argv[2:], sys.argv[1], progress=False)")
    store = tmp_path / "s.zarr"

    def start():
        proc = subprocess.Popen([sys.executable, "-c", script, str(store), *map(str, new)],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                text=True)
        assert proc.stdout.readline().strip() == "ready"
        return proc, time.perf_counter()

    assemble_store(base, store, progress=False)
    pristine = tmp_path / "pristine.zarr"
    shutil.copytree(store, pristine)
    proc, t0 = start()
    assert proc.wait(timeout=300) == 0
    duration = time.perf_counter() - t0
    for fraction in (0.3, 0.7, 0.95):
        shutil.rmtree(store)
        shutil.copytree(pristine, store)
        proc, t0 = start()
        time.sleep(max(0.0, fraction * duration - (time.perf_counter() - t0)))
        proc.kill()
        proc.wait()
        n = len(open_index(store))
        assert n in (2, 2 + len(new)), fraction
        assert_consistent(store, n)
        assemble_store(base + new, store, progress=False)
        assert_consistent(store, 2 + len(new))
        assert not [p for p in store.rglob("*") if ".tmp-" in p.name or p.suffix == ".partial"]


def test_a_kill_at_any_write_keeps_the_store_consistent(dataset_h5_files, tmp_path):
    """SIGKILL an append just before chosen writes to the store, found from the writes of an
    uninterrupted run: inside the rows, at the commit and every later write of the root's
    metadata, at the groups' copies of the counts, inside the index rewrite. After each kill
    the store holds the old or the new trajectories, consistently, and the next assembly
    completes it."""
    base, new = dataset_h5_files["lih"][:2], dataset_h5_files["lih"][2:] + dataset_h5_files["h2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    store, pristine = tmp_path / "s.zarr", tmp_path / "pristine.zarr"
    assemble_store(base, pristine, progress=False)

    def append(kill_at: int) -> subprocess.CompletedProcess:
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(pristine, store)
        return subprocess.run([sys.executable, "-c", _KILLED_AT_WRITE, str(store), str(kill_at),
                               *map(str, new)], capture_output=True, text=True, env=env,
                              timeout=300)

    done = append(0)
    assert done.returncode == 0, done.stderr
    writes = done.stdout.split("\n")
    root_writes = [i for i, w in enumerate(writes, 1) if w == "set zarr.json"]
    index = [i for i, w in enumerate(writes, 1) if " index" in w]
    copies = [i for i, w in enumerate(writes, 1) if w in ("set lih/zarr.json", "set h2/zarr.json")]
    rows = [i for i, w in enumerate(writes, 1) if "/c/" in w]
    assert root_writes and index and copies and rows
    points = sorted({rows[0], rows[len(rows) // 2], *root_writes, root_writes[0] + 1, *copies,
                     index[0], index[len(index) // 2], index[-1]})
    assert len(points) >= 8
    for kill_at in points:
        proc = append(kill_at)
        assert proc.returncode == -signal.SIGKILL, (kill_at, writes[kill_at - 1], proc.stderr)
        where = f"killed before write {kill_at} ({writes[kill_at - 1]})"
        try:
            n = len(open_index(store))
            assert n in (2, 2 + len(new))
            assert_consistent(store, n)
            assemble_store(base + new, store, progress=False)
            assert_consistent(store, 2 + len(new))
        except AssertionError as error:
            raise AssertionError(where) from error
