"""Fock frames and the ground state (P0, F0) through HDF5, validation, the Zarr store and
the learning data path (:func:`rtml.data.trajectory_data`)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import zarr
from pyscf import gto, scf

from rtml import InputError
from rtml.data import (TRAJECTORY_DATASETS, MoleculeSplit, TrajectoryData, assemble_store,
                       open_dataset, open_store_groups, read_trajectory, store_info,
                       trajectory_data, trajectory_datasets_table, trajectory_splits,
                       validate_trajectory, write_trajectory)


def with_fock(traj, seed=0):
    """Give a synthetic trajectory Hermitian complex Fock frames and a ground state:
    F(t) = F_RHF[Re P(t)] + i * (antisymmetric part), P0 = RHF density, F0 = F_RHF[P0]."""
    mol = gto.M(atom=[(int(z), tuple(p)) for z, p in zip(traj.atomic_numbers,
                                                        traj.positions_angstrom)],
                basis=traj.basis, charge=traj.charge, spin=traj.multiplicity - 1, verbose=0)
    mf = (scf.RHF(mol) if traj.n_spin == 1 else scf.UHF(mol)).set(conv_tol=1e-11)
    mf.kernel()
    dm0 = np.asarray(mf.make_rdm1()).reshape(traj.n_spin, mol.nao, mol.nao)
    f0 = np.asarray(mf.get_fock()).reshape(dm0.shape)
    real = np.array([np.asarray(mf.get_fock(dm=(p.real if traj.n_spin == 2 else p[0].real)))
                     .reshape(dm0.shape) for p in traj.density])
    traj.fock = real + 0.3j * traj.density.imag
    traj.ground_state_density, traj.ground_state_fock = dm0, f0
    return traj


@pytest.fixture
def fock_closed(closed_traj):
    return with_fock(closed_traj)


@pytest.fixture
def fock_open(open_traj):
    return with_fock(open_traj)


# --------------------------------------------------------------------------- HDF5


@pytest.mark.parametrize("which", ["fock_closed", "fock_open"])
def test_hdf5_round_trip_with_fock(which, request, tmp_path):
    traj = request.getfixturevalue(which)
    back = read_trajectory(write_trajectory(tmp_path / "t.h5", traj))
    assert back.fock.dtype == np.complex128 and np.array_equal(back.fock, traj.fock)
    assert np.array_equal(back.ground_state_density, traj.ground_state_density)
    assert np.array_equal(back.ground_state_fock, traj.ground_state_fock)
    assert np.array_equal(back.density, traj.density)
    with h5py.File(tmp_path / "t.h5") as f:
        for name in ("dynamics/fock_real", "dynamics/fock_imag"):
            assert f[name].chunks == (1,) + traj.fock.shape[1:]
            assert f[name].attrs["units"] == "hartree" and f[name].attrs["description"]
        for name in ("ground_state/density", "ground_state/fock"):
            assert f[name].shape == traj.ground_state_density.shape
            assert f[name].dtype == np.float64 and f[name].attrs["description"]


def test_hdf5_round_trip_without_fock(closed_traj, tmp_path):
    back = read_trajectory(write_trajectory(tmp_path / "t.h5", closed_traj))
    assert back.fock is None and back.ground_state_density is None
    assert back.ground_state_fock is None
    with h5py.File(tmp_path / "t.h5") as f:
        assert "dynamics/fock_real" not in f and "ground_state" not in f


def test_hdf5_rejects_bad_fock_shape_and_half_pairs(fock_closed, tmp_path):
    bad = read_trajectory(write_trajectory(tmp_path / "t.h5", fock_closed))
    bad.fock = bad.fock[:-1]
    with pytest.raises(InputError, match="fock has shape"):
        write_trajectory(tmp_path / "bad.h5", bad)
    with h5py.File(tmp_path / "t.h5", "a") as f:
        del f["dynamics/fock_imag"]
    with pytest.raises(InputError, match="must come together"):
        read_trajectory(tmp_path / "t.h5")


def test_schema_table_lists_optional_datasets():
    table = trajectory_datasets_table()  # the table of the HDF5 writer's module docstring
    for name in (n for d in TRAJECTORY_DATASETS if not d.required for n in d.h5_names):
        assert f"``{name}`` *" in table


# --------------------------------------------------------------------------- validate


@pytest.mark.parametrize("which", ["fock_closed", "fock_open"])
def test_validate_passes_with_fock(which, request, tmp_path):
    report = validate_trajectory(write_trajectory(tmp_path / "t.h5",
                                                  request.getfixturevalue(which)))
    assert report.ok, "\n".join(report.format_lines())
    names = [c.name for c in report.checks]
    assert names[-3:] == ["fock_hermiticity", "ground_state_density", "ground_state_fock"]
    assert report["fock_hermiticity"].value < 1e-15
    assert report["ground_state_density"].value < 1e-10
    assert "optional" in report["schema"].message


def test_validate_flags_non_hermitian_fock(fock_closed, tmp_path):
    fock_closed.fock[7, 0, 1, 2] += 1e-6
    report = validate_trajectory(write_trajectory(tmp_path / "t.h5", fock_closed),
                                 block_frames=5)
    assert {c.name for c in report.failed} == {"fock_hermiticity"}
    check = report["fock_hermiticity"]
    assert 1e-8 < check.value < 1e-5 and "worst frame 7" in check.message


def test_validate_flags_bad_ground_state_and_fock_shape(fock_closed, tmp_path):
    fock_closed.ground_state_density = 1.01 * fock_closed.ground_state_density
    fock_closed.ground_state_fock[0, 0, 1] += 1e-3
    path = write_trajectory(tmp_path / "t.h5", fock_closed)
    report = validate_trajectory(path)
    assert {c.name for c in report.failed} == {"ground_state_density", "ground_state_fock"}
    assert "Tr(P0 S)" in report["ground_state_density"].message
    with h5py.File(path, "a") as f:
        del f["dynamics/fock_real"]
        f["dynamics/fock_real"] = np.zeros((3, 1, 2, 2))
        f["ground_state/fock"][0, 0, 0] = np.nan
    report = validate_trajectory(path)
    assert {"schema", "finite", "fock_hermiticity"} <= {c.name for c in report.failed}
    assert "'dynamics/fock_real' has shape (3, 1, 2, 2)" in report["schema"].message
    assert report["fock_hermiticity"].message.startswith("skipped")


# --------------------------------------------------------------------------- store


@pytest.fixture
def fock_files(tmp_path_factory, dataset_trajectory):
    """h2 at 3 geometries x 1 field with Fock frames, and one h2 file without."""
    make_dataset_trajectory = dataset_trajectory
    root = tmp_path_factory.mktemp("fock_h5")
    with_, without = [], []
    for geo in ("eq", "s+10", "s-10"):
        traj = with_fock(make_dataset_trajectory("h2", geo, "kick:1e-3:z"))
        (root / geo).mkdir()
        with_.append(write_trajectory(root / geo / "kick.h5", traj))
    plain = make_dataset_trajectory("h2", "eq", "gaussian:0.01:0.2:4:1.5:x")
    without.append(write_trajectory(root / "eq" / "pulse.h5", plain))
    return with_, without


def test_store_round_trip_exposes_fock_and_ground_state(fock_files, tmp_path):
    files = fock_files[0]
    store = tmp_path / "s.zarr"
    assemble_store(files, store, progress=False)
    ds = open_dataset(store, "h2").load()
    assert "fock" in ds.data_vars and ds.fock.dims == ds.rho.dims
    assert ds.fock.dtype == ds.rho.dtype == np.complex128
    assert {"rho_ground", "fock_ground"} <= set(ds.coords)
    assert ds.rho_ground.dims == ("traj_id", "spin", "ao_i", "ao_j")
    assert ds.attrs["has_fock"] is True
    for row, path in enumerate(files):
        traj = read_trajectory(path)
        assert np.array_equal(ds.fock[row].values, traj.fock)
        assert np.array_equal(ds.rho_ground[row].values, traj.ground_state_density)
        assert np.array_equal(ds.fock_ground[row].values, traj.ground_state_fock)
    g = zarr.open_group(str(store), mode="r")["h2"]
    assert g["fock"].chunks == g["rho"].chunks and g["fock"].shards == g["rho"].shards
    info = store_info(store)["molecules"]["h2"]
    assert info["has_fock"] and info["has_ground_state"]
    card = store.with_name("s.zarr.README.md").read_text()
    assert "`fock` (data)" in card and "`rho_ground` (coord)" in card and "has_fock" in card


def test_store_without_fock_has_nan_ground_state(fock_files, tmp_path):
    store = tmp_path / "s.zarr"
    assemble_store(fock_files[1], store, progress=False)
    ds = open_dataset(store, "h2")
    assert "fock" not in ds.variables and ds.attrs["has_fock"] is False
    assert np.isnan(ds.rho_ground.values).all() and np.isnan(ds.fock_ground.values).all()
    data = trajectory_data(ds, 0, "h2")
    assert data.fock is None and data.rho_ground is None and data.fock_ground is None


@pytest.mark.parametrize("first,then", [(0, 1), (1, 0)], ids=["has-then-lacks", "lacks-then-has"])
def test_mixed_fock_append_is_one_clear_error(fock_files, tmp_path, first, then):
    store = tmp_path / "s.zarr"
    assemble_store(fock_files[first][:1], store, progress=False)
    with pytest.raises(InputError) as err:
        assemble_store(fock_files[then][:1], store, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "Fock frames" in msg and "'h2'" in msg
    assert str(fock_files[then][0]) in msg
    with pytest.raises(InputError, match="Fock frames"):  # mixed in one new store too
        assemble_store(fock_files[0][:1] + fock_files[1], tmp_path / "mixed.zarr",
                       progress=False)


# --------------------------------------------------------------------------- learning


def test_trajectory_data_has_everything(fock_files, tmp_path):
    store = tmp_path / "s.zarr"
    assemble_store(fock_files[0], store, progress=False)
    groups = open_store_groups(store)
    ds = groups["h2"]
    data = trajectory_data(ds, 1, "h2")
    assert isinstance(data, TrajectoryData)
    assert TrajectoryData._fields[:11] == (
        "molecule", "rho", "field", "positions_angstrom", "atomic_numbers", "basis_atom_index",
        "basis_angular_momentum", "basis_magnetic_quantum", "overlap", "n_electrons",
        "multiplicity")
    traj = read_trajectory(fock_files[0][1])
    assert np.array_equal(data.rho, traj.density) and np.array_equal(data.fock, traj.fock)
    assert np.array_equal(data.rho_ground, traj.ground_state_density)
    assert np.array_equal(data.fock_ground, traj.ground_state_fock)
    assert np.array_equal(data.core_hamiltonian, traj.core_hamiltonian)
    np.testing.assert_allclose(data.time, traj.time, rtol=0, atol=1e-12)  # made exact
    assert np.array_equal(data.dipole_origin_bohr, traj.dipole_origin_bohr)
    assert (data.basis, data.xc, data.charge) == (traj.basis, traj.xc, traj.charge)
    assert data.geometry_id == "s+10" and data.traj_id == "h2/s+10/kick"
    spec = traj.field_spec
    assert data.field_spec["kind"] == "kick" and data.field_spec["spec"] == spec["spec"]
    assert data.field_spec["amplitude"] == spec["amplitude"]
    assert data.field_spec["polarization"] == spec["polarization"]
    assert data.field_spec["omega"] is None
    with pytest.raises(InputError, match="no trajectories for lih"):
        open_store_groups(store, ["lih"])


class _Geometries:
    """Stand-in for a store group: only ``geometry_id`` is read by trajectory_splits."""

    def __init__(self, ids):
        self.geometry_id = type("A", (), {"values": np.array(ids)})()


@pytest.mark.parametrize("seed", range(20))
def test_splits_never_take_val_from_test(seed):
    groups = {m: _Geometries([g for g in ("eq", "s+10", "s-10") for _ in range(2)])
              for m in ("h2", "lih", "h2o")}
    splits = trajectory_splits(groups, (0.8, 0.1, 0.1), seed, held_out_molecules=("h2o",))
    for mol, split in splits.items():
        geo = groups[mol].geometry_id.values
        assert isinstance(split, MoleculeSplit) and set(split) == {"train", "val", "test"}
        assert sorted(sum(split.values(), [])) == list(range(6))
        by = {s: {geo[r] for r in rows} for s, rows in split.items()}
        assert not by["val"] & by["test"] and not by["train"] & by["test"]
        assert not by["train"] & by["val"]
        if mol == "h2o":
            assert by["test"] == {"eq", "s+10", "s-10"} and split.val_source == "none"
        else:  # 3 geometries: one each
            assert split["val"] and split["train"] and split["test"], (seed, mol, split)
            assert split.val_source in ("hash", "train") and not split.val_missing


def test_splits_flag_a_molecule_that_cannot_have_val():
    groups = {"h2": _Geometries(["eq", "s+10"])}
    split = trajectory_splits(groups, (0.8, 0.1, 0.1), 0)["h2"]
    assert not split["val"] and split.val_missing and split.val_source == "none"
    assert split["train"] and split["test"]
    split = trajectory_splits({"h2": _Geometries(["a", "b", "c"])}, (0.8, 0.0, 0.2), 0)["h2"]
    assert not split["val"] and split.val_source == "none"  # no val asked for


def test_append_to_a_group_without_ground_state_arrays(fock_files, tmp_path):
    """A group written before rho_ground/fock_ground existed gets them on its next append
    (NaN for its earlier rows); its committed chunk files are not rewritten."""
    store = tmp_path / "s.zarr"
    assemble_store(fock_files[0][:1], store, progress=False)
    g = zarr.open_group(str(store), mode="r+")["h2"]
    for name in ("rho_ground", "fock_ground"):
        shutil.rmtree(store / "h2" / name)
    g.attrs["coordinates"] = " ".join(c for c in g.attrs["coordinates"].split()
                                      if c not in ("rho_ground", "fock_ground"))
    assert "rho_ground" not in open_dataset(store, "h2").variables
    assemble_store(fock_files[0][1:], store, progress=False)
    ds = open_dataset(store, "h2").load()
    assert ds.sizes["traj_id"] == 3 and "rho_ground" in ds.coords
    assert np.isnan(ds.rho_ground[0].values).all()
    traj = read_trajectory(fock_files[0][2])
    assert np.array_equal(ds.fock_ground[2].values, traj.ground_state_fock)
    assert trajectory_data(ds, 0, "h2").rho_ground is None
