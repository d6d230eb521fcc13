"""The dataset store as another project reads it: plain xarray, no rtml, no warnings.

Labelled dims (``traj_id``, exact ``time`` and ``step``, ``xyz``, ``spin``), the basis
labels on ``ao_i``/``ao_j``, ``source_file`` relative with its SHA-256, consolidated
metadata (so neither zarr nor a Snakemake timestamp inside the store warns), the card
beside the store, and old-format stores refused in one line.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from rtml import InputError
from rtml.cli import main
from rtml.data import (TrajectoryWindows, assemble_store, open_dataset, read_trajectory,
                       store_info, write_trajectory)

#: Opens STORE (argv[1]) with plain xarray, warnings as errors and without rtml, selects
#: trajectory TRAJ_ID (argv[2]) at time TIME (argv[3]); prints what it read as JSON.
PLAIN_READ = r"""
import json, sys, warnings
warnings.simplefilter("error")
import xarray as xr

store, traj_id, time = sys.argv[1], sys.argv[2], float(sys.argv[3])
tree = xr.open_datatree(store, engine="zarr")
root = xr.open_zarr(store)
ds = xr.open_zarr(store, group="h2")
one = ds.sel(traj_id=traj_id)
frame = one.sel(time=time)
labels = {f"{axis}_{k}": ds[f"{axis}_{k}"].values.tolist()
          for axis in ("ao_i", "ao_j") for k in ("atom", "l", "m")}
print(json.dumps({
    "groups": sorted(tree.children), "format_version": root.attrs["format_version"],
    "sizes": dict(ds.sizes), "indexes": sorted(ds.indexes),
    "xyz": ds.xyz.values.tolist(), "spin": ds.spin.values.tolist(),
    "cation_spin": tree["lih_cation"].spin.values.tolist(), "labels": labels,
    "step": int(frame.step), "time": float(frame.time),
    "rho": [frame.rho.values.real.tolist(), frame.rho.values.imag.tolist()],
    "dipole_z": float(frame.dipole.sel(xyz="z")),
    "source_file": str(one.source_file.values), "source_sha256": str(one.source_sha256.values),
}))
assert "rtml" not in sys.modules, "the plain read imported rtml"
"""


@pytest.fixture
def workflow_store(dataset_h5_files, open_traj, tmp_path):
    """A store of two H2 trajectories and one LiH+ (n_spin = 2) as the workflow leaves it:
    with Snakemake's ``.snakemake_timestamp`` inside. Returns (store, h2 files)."""
    h2 = dataset_h5_files["h2"][:2]
    (tmp_path / "traj").mkdir()
    cation = write_trajectory(tmp_path / "traj" / "cation.h5", open_traj)
    store = tmp_path / "results" / "dataset.zarr"
    store.parent.mkdir()
    assemble_store(h2 + [cation], store, progress=False)
    (store / ".snakemake_timestamp").touch()
    return store, h2


def plain_read(store: Path, traj_id: str, time: float) -> dict:
    run = subprocess.run([sys.executable, "-c", PLAIN_READ, str(store), traj_id, repr(time)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_plain_xarray_reads_labels_exact_time_and_sources_without_warnings(workflow_store):
    store, h2 = workflow_store
    source = Path(h2[1])
    traj = read_trajectory(source)
    traj_id = f"h2/{traj.extra_attrs['geometry_id']}/{source.stem}"
    assert traj.time[3] != 1.2  # 3 * 0.4 as the engine sums it: 1.2000000000000002
    got = plain_read(store, traj_id, 1.2)

    assert got["groups"] == ["h2", "index", "lih_cation"] and got["format_version"] == 2
    assert got["sizes"] == {"traj_id": 2, "time": 20, "spin": 1, "ao_i": 4, "ao_j": 4,
                            "atom": 2, "xyz": 3}  # no separate "ao" dim
    assert {"traj_id", "time", "xyz", "spin"} <= set(got["indexes"])
    assert got["xyz"] == ["x", "y", "z"] and got["spin"] == ["total"]
    assert got["cation_spin"] == ["alpha", "beta"]
    for axis in ("ao_i", "ao_j"):
        assert got["labels"][f"{axis}_atom"] == traj.basis_atom_index.tolist()
        assert got["labels"][f"{axis}_l"] == traj.basis_angular_momentum.tolist()
        assert got["labels"][f"{axis}_m"] == traj.basis_magnetic_quantum.tolist()

    # time = step * dt exactly: frame 3 of dt 0.2 saved every 2 steps
    assert got["step"] == 6 and got["time"] == 1.2
    assert np.array_equal(np.array(got["rho"][0]) + 1j * np.array(got["rho"][1]),
                          traj.density[3])
    assert got["dipole_z"] == traj.dipole[3, 2]

    relative = Path(got["source_file"])
    assert not relative.is_absolute()
    assert (store.parent / relative).resolve() == source.resolve()
    assert got["source_sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_rtml_selects_by_step_and_time(workflow_store):
    store, h2 = workflow_store
    ds = open_dataset(store, "h2")
    by_step, by_time = ds.dipole.sel(step=6), ds.dipole.sel(time=1.2)
    assert np.array_equal(by_step.values, by_time.values)
    assert np.array_equal(by_time.sel(traj_id="h2/eq/kick_1e-3_z").values,
                          read_trajectory(h2[0]).dipole[3])


def test_append_to_a_workflow_store_warns_nothing_and_updates_the_plain_view(
        workflow_store, dataset_h5_files):
    store, _ = workflow_store
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert assemble_store(dataset_h5_files["h2"][2:4], store, progress=False)["added"] == 2
        plain = xr.open_zarr(store, group="h2")
    assert plain.sizes["traj_id"] == 4 and plain.attrs["n_committed"] == 4
    assert (store / ".snakemake_timestamp").exists()  # Snakemake's, left alone


def test_card_is_beside_the_store_and_never_replaces_a_foreign_file(dataset_h5_files,
                                                                    tmp_path):
    store = tmp_path / "s.zarr"
    assemble_store(dataset_h5_files["h2"][:1], store, progress=False)
    card = tmp_path / "s.zarr.README.md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr", "s.zarr.README.md"]
    assert "| h2 | 1 |" in card.read_text()
    assemble_store(dataset_h5_files["h2"][1:2], store, progress=False)  # rtml's: rewritten
    assert "| h2 | 2 |" in card.read_text()

    notes = tmp_path / "n.zarr.README.md"
    notes.write_text("# my notes\n")
    with pytest.raises(InputError, match=r"n\.zarr\.README\.md' exists and is not an rtml "
                                         r"dataset card"):
        assemble_store(dataset_h5_files["h2"][:1], tmp_path / "n.zarr", progress=False)
    assert notes.read_text() == "# my notes\n" and not (tmp_path / "n.zarr").exists()


def test_an_old_format_store_is_refused_in_one_line(dataset_h5_files, tmp_path, capsys):
    store = tmp_path / "old.zarr"
    assemble_store(dataset_h5_files["h2"][:1], store, progress=False)
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["format_version"] = 1
    (store / "zarr.json").write_text(json.dumps(meta))
    before = (store / "zarr.json").read_bytes()

    assert main(["dataset", "info", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("rtml: error: ")
    assert "format_version 1" in err[0] and "assemble the store again" in err[0]
    for read in (lambda: open_dataset(store), lambda: store_info(store),
                 lambda: TrajectoryWindows(store),
                 lambda: assemble_store(dataset_h5_files["h2"][1:2], store, progress=False)):
        with pytest.raises(InputError, match="format_version 1.*assemble the store again"):
            read()
    assert (store / "zarr.json").read_bytes() == before


def test_frames_off_the_step_grid_are_refused_in_one_line(dataset_trajectory, tmp_path):
    """Frames are labelled by step: a file whose times are not multiples of dt is refused."""
    traj = dataset_trajectory("h2", "eq", "kick:1e-3:z")
    traj.time = traj.time + 0.1
    path = write_trajectory(tmp_path / "shifted.h5", traj)
    with pytest.raises(InputError, match=r"shifted\.h5: saved time t\[0\] = 0\.1 is not a "
                                         r"multiple of dt = 0\.2") as err:
        assemble_store([path], tmp_path / "s.zarr", progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "s.zarr").exists()
