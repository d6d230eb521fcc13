"""Round trip and on-disk schema of the rtml trajectory HDF5 file."""

from __future__ import annotations

import dataclasses
import json
import os
import tracemalloc

import h5py
import numpy as np
import pytest

from rtml import InputError
from rtml.data import (FORMAT_NAME, FORMAT_VERSION, FrameBlocks, Trajectory, read_trajectory,
                       write_trajectory)
from rtml.units import UNITS

EXPECTED_DATASETS = {
    "geometry/positions": ("n_atoms", 3),
    "geometry/atomic_numbers": ("n_atoms",),
    "basis/atom_index": ("nbf",),
    "basis/angular_momentum": ("nbf",),
    "basis/magnetic_quantum": ("nbf",),
    "matrices/overlap": ("nbf", "nbf"),
    "matrices/core_hamiltonian": ("nbf", "nbf"),
    "dynamics/density_real": ("n_steps", "n_spin", "nbf", "nbf"),
    "dynamics/density_imag": ("n_steps", "n_spin", "nbf", "nbf"),
    "dynamics/field": ("n_steps", 3),
    "dynamics/time": ("n_steps",),
    "dynamics/energy": ("n_steps",),
    "dynamics/dipole": ("n_steps", 3),
}
EXPECTED_ROOT_ATTRS = {
    "molecule", "n_atoms", "n_electrons", "n_basis", "n_steps", "n_spin", "dt",
    "save_every", "charge", "multiplicity", "xc", "basis", "propagator", "field_spec",
    "dipole_origin", "units", "provenance", "format", "format_version",
}
INT_FIELDS = {"atomic_numbers", "basis_atom_index", "basis_angular_momentum",
              "basis_magnetic_quantum"}


def assert_same_value(a, b, what):
    if isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray), what
        assert a.dtype == b.dtype, what
        assert a.shape == b.shape and np.array_equal(a, b), what
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), what
        for k in a:
            assert_same_value(a[k], b[k], f"{what}[{k!r}]")
    else:
        assert type(a) is type(b) and a == b, what


def assert_trajectories_equal(a: Trajectory, b: Trajectory):
    for f in dataclasses.fields(Trajectory):
        assert_same_value(getattr(a, f.name), getattr(b, f.name), f.name)


@pytest.mark.parametrize("which", ["closed_traj", "open_traj"])
def test_round_trip_exact(which, request, tmp_path):
    traj = request.getfixturevalue(which)
    out = write_trajectory(tmp_path / "t.h5", traj)
    assert out == tmp_path / "t.h5"
    back = read_trajectory(str(out))
    assert_trajectories_equal(traj, back)
    assert back.density.dtype == np.complex128
    for name in INT_FIELDS:
        assert getattr(back, name).dtype == np.int64
    assert back.n_spin == traj.n_spin and back.n_steps == traj.n_steps


def test_frames_held_as_blocks_are_written_one_block_at_a_time(tmp_path):
    """A trajectory whose density is a FrameBlocks of memory-mapped chunks (as the engine's
    checkpoint holds it) is written with about one chunk in memory, not the whole series,
    and the file is the same as one written from the whole array."""
    rng = np.random.default_rng(3)
    n_frames, n_chunks, nbf = 400, 8, 40  # 400 x 40 x 40 complex: 10.2 MB in all
    whole = rng.normal(size=(n_frames, 1, nbf, nbf)) + 1j * rng.normal(size=(n_frames, 1, nbf, nbf))
    chunks = []
    for i, part in enumerate(np.split(whole, n_chunks)):
        np.save(tmp_path / f"chunk{i}.npy", part)
        chunks.append(np.load(tmp_path / f"chunk{i}.npy", mmap_mode="r"))
    common = dict(
        molecule="x", atomic_numbers=np.array([1, 1]), positions_angstrom=np.zeros((2, 3)),
        charge=0, multiplicity=1, basis="b", xc="hf", n_electrons=2,
        basis_atom_index=np.zeros(nbf, int), basis_angular_momentum=np.zeros(nbf, int),
        basis_magnetic_quantum=np.zeros(nbf, int), overlap=np.eye(nbf),
        core_hamiltonian=np.eye(nbf), time=np.arange(n_frames) * 0.1,
        field=np.zeros((n_frames, 3)), energy=np.zeros(n_frames), dipole=np.zeros((n_frames, 3)),
        dt=0.1, save_every=1, propagator="magnus2", field_spec={"kind": "none"},
        dipole_origin_bohr=np.zeros(3), provenance={})
    write_trajectory(tmp_path / "whole.h5", Trajectory(density=whole, **common))
    blocks = FrameBlocks(chunks)
    assert blocks.shape == whole.shape and len(blocks) == n_frames

    tracemalloc.start()
    write_trajectory(tmp_path / "blocks.h5", Trajectory(density=blocks, **common))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    one_chunk = whole.nbytes // n_chunks
    assert peak < 2 * one_chunk < whole.nbytes / 3, (peak, one_chunk, whole.nbytes)
    streamed, reference = read_trajectory(tmp_path / "blocks.h5"), read_trajectory(tmp_path / "whole.h5")
    assert_trajectories_equal(streamed, reference)
    with h5py.File(tmp_path / "blocks.h5") as f:
        assert f["dynamics/density_real"].chunks == (1, 1, nbf, nbf)


def test_datasets_names_shapes_dtypes(open_traj, tmp_path):
    path = write_trajectory(tmp_path / "t.h5", open_traj)
    dims = {"n_atoms": open_traj.n_atoms, "nbf": open_traj.n_basis,
            "n_steps": open_traj.n_steps, "n_spin": 2}
    found = set()

    def collect(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.add(name)

    with h5py.File(path, "r") as f:
        f.visititems(collect)
        assert set(found) == set(EXPECTED_DATASETS)
        for name, sym in EXPECTED_DATASETS.items():
            dset = f[name]
            assert dset.shape == tuple(d if isinstance(d, int) else dims[d] for d in sym)
            assert dset.dtype == np.float64, name
            assert dset.attrs["units"] and dset.attrs["description"], name
        for name in ("dynamics/density_real", "dynamics/density_imag"):
            assert f[name].chunks == (1, 2, open_traj.n_basis, open_traj.n_basis)
            assert f[name].compression is None
            assert f[name].attrs["units"] == UNITS["density"]
        assert f["geometry/positions"].attrs["units"] == "angstrom"
        assert f["dynamics/time"].attrs["units"] == UNITS["time"]
        assert f["dynamics/energy"].attrs["units"] == UNITS["energy"]
        assert np.array_equal(f["dynamics/density_imag"][()], open_traj.density.imag)


def test_root_attributes(closed_traj, tmp_path):
    path = write_trajectory(tmp_path / "t.h5", closed_traj)
    with h5py.File(path, "r") as f:
        attrs = dict(f.attrs)
    assert set(attrs) == EXPECTED_ROOT_ATTRS | set(closed_traj.extra_attrs)
    assert attrs["format"] == FORMAT_NAME == "rtml-trajectory"
    assert attrs["format_version"] == FORMAT_VERSION == 1
    assert attrs["n_steps"] == 12 and attrs["n_spin"] == 1
    assert attrs["n_basis"] == closed_traj.n_basis and attrs["n_atoms"] == 2
    assert attrs["n_electrons"] == 4 and attrs["multiplicity"] == 1
    assert attrs["dt"] == 0.2 and attrs["save_every"] == 2
    assert attrs["molecule"] == "lih" and attrs["xc"] == "hf" and attrs["basis"] == "6-31g"
    assert np.array_equal(attrs["dipole_origin"], closed_traj.dipole_origin_bohr)
    assert json.loads(attrs["field_spec"]) == closed_traj.field_spec
    assert json.loads(attrs["provenance"]) == closed_traj.provenance
    units = json.loads(attrs["units"])
    assert {k: units[k] for k in UNITS} == UNITS
    assert "angstrom" in units["note"] and "px,py,pz" in units["note"]
    # extras: dicts/lists/None as JSON, arrays as arrays, scalars as scalars
    assert json.loads(attrs["scf_settings"]) == {"conv_tol": 1e-10, "max_cycle": 50}
    assert json.loads(attrs["tags"]) == ["synthetic", "test"]
    assert attrs["grid"] == "null"
    assert isinstance(attrs["dipole_ground"], np.ndarray)
    assert attrs["grid_level"] == 3 and attrs["comment"] == "plain string"


def test_atomic_write_failure_leaves_nothing(closed_traj, tmp_path, monkeypatch):
    original = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "dynamics/dipole":          # the last dataset: the file is nearly done
            raise RuntimeError("disk on fire")
        return original(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_trajectory(tmp_path / "t.h5", closed_traj)
    assert os.listdir(tmp_path) == []


def test_atomic_write_failure_keeps_previous_file(closed_traj, tmp_path, monkeypatch):
    path = write_trajectory(tmp_path / "t.h5", closed_traj)
    newer = dataclasses.replace(closed_traj, molecule="other")

    def failing(*args, **kwargs):  # interrupted while writing the new file's first dataset
        raise KeyboardInterrupt

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(KeyboardInterrupt):
        write_trajectory(path, newer)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["t.h5"]
    assert read_trajectory(path).molecule == "lih"


def test_write_rejects_bad_input(closed_traj, tmp_path):
    bad = dataclasses.replace(closed_traj, energy=closed_traj.energy[:-1])
    with pytest.raises(InputError, match="energy"):
        write_trajectory(tmp_path / "t.h5", bad)
    clash = dataclasses.replace(closed_traj, extra_attrs={"n_steps": 3})
    with pytest.raises(InputError, match="reserved"):
        write_trajectory(tmp_path / "t.h5", clash)
    weird = dataclasses.replace(closed_traj, extra_attrs={"obj": object()})
    with pytest.raises(InputError, match="obj"):
        write_trajectory(tmp_path / "t.h5", weird)
    assert os.listdir(tmp_path) == []


def test_read_errors(closed_traj, tmp_path):
    with pytest.raises(InputError, match=r"missing\.h5: no such"):
        read_trajectory(tmp_path / "missing.h5")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5\n")
    with pytest.raises(InputError, match=r"notes\.h5: not an HDF5 file"):
        read_trajectory(text)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(3)
    with pytest.raises(InputError, match=r"other\.h5: not an rtml trajectory"):
        read_trajectory(other)
    path = write_trajectory(tmp_path / "t.h5", closed_traj)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 2
    with pytest.raises(InputError, match="format_version"):
        read_trajectory(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 1
        del f["dynamics/dipole"]
    with pytest.raises(InputError, match=r"t\.h5: missing dataset 'dynamics/dipole'"):
        read_trajectory(path)
    for err_path in (tmp_path / "missing.h5", text, other, path):
        with pytest.raises(InputError) as info:
            read_trajectory(err_path)
        assert "\n" not in str(info.value)
