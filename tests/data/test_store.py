"""The Zarr dataset store: layout, exact round trip, atomic build, append, CLI."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from rtml import InputError
from rtml.cli import add_dataset_parser, expand_trajectory_paths
from rtml.data import (STORE_INDEX_COLUMNS, STORE_PER_TRAJECTORY_ARRAYS, STORE_STATIC_ARRAYS,
                       assemble_store, open_dataset, open_index, read_trajectory, store_info,
                       time_chunking, write_trajectory)

zarr = pytest.importorskip("zarr")
xr = pytest.importorskip("xarray")

PER_TRAJ = [v.name for v in STORE_PER_TRAJECTORY_ARRAYS if v.if_absent != "group"]
STATIC = [v.name for v in STORE_STATIC_ARRAYS]


def all_files(files):
    return [p for mol in ("h2", "lih") for p in files[mol]]


def file_digests(store: Path, under: str) -> dict[str, tuple[str, int]]:
    """sha256 and mtime of every chunk/shard file below ``store/under`` (not metadata)."""
    out = {}
    for p in sorted((store / under).rglob("*")):
        if p.is_file() and p.name != "zarr.json":
            out[str(p.relative_to(store))] = (hashlib.sha256(p.read_bytes()).hexdigest(),
                                              p.stat().st_mtime_ns)
    return out


def row_of(store: Path) -> dict[str, tuple[str, int]]:
    idx = open_index(store)
    return {(store.parent / s).resolve().as_posix(): (m, int(r))
            for s, m, r in zip(idx.source_file, idx.molecule, idx.row)}


@pytest.fixture
def store(dataset_store):
    """The session's 12-trajectory store (tests/data/conftest.py); do not modify it."""
    return dataset_store


def test_layout_groups_attrs_and_dims(store):
    root = zarr.open_group(str(store), mode="r")
    attrs = root.attrs.asdict()
    assert attrs["format"] == "rtml-dataset" and attrs["format_version"] == 2
    assert attrs["Conventions"] == "CF-1.10, ACDD-1.3"
    for key in ("title", "summary", "source", "history", "date_created", "date_modified"):
        assert attrs[key], key
    assert attrs["molecules"] == ["h2", "lih"]
    assert attrs["n_trajectories"] == 12
    assert {"rtml_version", "rtml_git_commit", "pyscf_version", "zarr_version",
            "inputs_sha256"} <= set(attrs["provenance"])
    assert attrs["units"]["positions"] == "angstrom"
    dims = {"rho": ["traj_id", "time", "spin", "ao_i", "ao_j"],
            "dipole": ["traj_id", "time", "xyz"], "energy": ["traj_id", "time"],
            "positions": ["traj_id", "atom", "xyz"], "overlap": ["traj_id", "ao_i", "ao_j"],
            "time": ["time"], "step": ["time"], "atomic_numbers": ["atom"],
            "ao_i_m": ["ao_i"], "ao_j_m": ["ao_j"], "field_polarization": ["traj_id", "xyz"]}
    for mol, nbf in (("h2", 4), ("lih", 11)):
        g = root[mol]
        ga = g.attrs.asdict()
        assert ga["n_committed"] == 6 and ga["n_basis"] == nbf and ga["n_spin"] == 1
        assert ga["molecule"] == mol and ga["rho_dtype"] == "complex128"
        for key in ("n_electrons", "charge", "multiplicity", "xc", "basis", "dt", "save_every",
                    "propagator", "units", "dipole_origin_convention", "ao_order_convention"):
            assert key in ga, key
        assert "px, py, pz" in ga["ao_order_convention"]
        for name in PER_TRAJ + STATIC:
            assert name in g, name
        for name, expected in dims.items():
            assert list(g[name].metadata.dimension_names) == expected, name
        assert g["rho"].dtype == np.complex128
        assert g["rho"].shape == (6, 20, 1, nbf, nbf)


def test_chunks_one_shard_per_trajectory(store):
    root = zarr.open_group(str(store), mode="r")
    for mol in ("h2", "lih"):
        g = root[mol]
        rho = g["rho"]
        assert rho.shards == (1, 20) + rho.shape[2:]  # one shard = one whole trajectory
        assert rho.chunks[0] == 1 and rho.chunks[2:] == rho.shape[2:]
        assert np.prod(rho.chunks) * rho.dtype.itemsize <= 2 ** 20
        shard_files = [p for p in (store / mol / "rho" / "c").rglob("*") if p.is_file()]
        assert len(shard_files) == 6
        for name in PER_TRAJ:  # one trajectory per chunk everywhere
            assert g[name].chunks[0] == 1, name
            assert g[name].chunks[1:] == g[name].shape[1:], name
        codecs = json.loads((store / mol / "rho" / "zarr.json").read_text())["codecs"]
        inner = codecs[0]["configuration"]["codecs"]
        assert codecs[0]["name"] == "sharding_indexed"
        assert any(c["name"] == "zstd" for c in inner)


def test_time_chunking_tiles_and_respects_size():
    for n_time, frame, mib in [(20, 256, 1.0), (4001, 66 * 66 * 16, 1.0), (1000, 1936, 0.01),
                               (7, 10 ** 7, 1.0)]:
        ct, shard = time_chunking(n_time, frame, mib)
        n_chunks = shard // ct
        assert shard % ct == 0 and shard >= n_time and shard - n_time < n_chunks
        assert ct == 1 or ct * frame <= mib * 2 ** 20


def assert_store_matches_files(store: Path, files, rho_dtype=np.complex128):
    """Every array and coordinate equals its HDF5 source exactly, read through zarr and
    through open_dataset (xarray)."""
    rows = row_of(store)
    root = zarr.open_group(str(store), mode="r")
    datasets = {mol: ds.load() for mol, ds in open_dataset(store).items()}
    raw = {mol: {name: root[mol][name][...] for name in PER_TRAJ} for mol in datasets}
    for path in files:
        traj = read_trajectory(path)
        mol, row = rows[Path(path).resolve().as_posix()]
        assert mol == traj.molecule
        ds = datasets[mol].isel(traj_id=row)
        expected_rho = traj.density.astype(rho_dtype)
        for got in (raw[mol]["rho"][row], ds.rho.values):
            assert got.dtype == rho_dtype and np.array_equal(got, expected_rho)
        for name, value in [("dipole", traj.dipole), ("energy", traj.energy),
                            ("field", traj.field), ("positions", traj.positions_angstrom),
                            ("overlap", traj.overlap), ("core_hamiltonian", traj.core_hamiltonian),
                            ("dipole_origin", traj.dipole_origin_bohr)]:
            assert np.array_equal(raw[mol][name][row], value), name
            assert np.array_equal(ds[name].values, value), name
        for name, value in [("atomic_numbers", traj.atomic_numbers),
                            ("ao_i_atom", traj.basis_atom_index),
                            ("ao_j_atom", traj.basis_atom_index),
                            ("ao_i_l", traj.basis_angular_momentum),
                            ("ao_j_l", traj.basis_angular_momentum),
                            ("ao_i_m", traj.basis_magnetic_quantum),
                            ("ao_j_m", traj.basis_magnetic_quantum)]:
            assert np.array_equal(ds[name].values, value), name
            assert ds[name].dtype == value.dtype, name
        # time is the file's, made exact: step * dt with dt's decimal value
        assert np.array_equal(ds.step.values, np.rint(traj.time / traj.dt).astype(np.int64))
        np.testing.assert_allclose(ds.time.values, traj.time, rtol=0, atol=1e-12)
        fs = traj.field_spec
        assert str(ds.traj_id.values) == f"{mol}/{traj.extra_attrs['geometry_id']}/{path.stem}"
        assert str(ds.geometry_id.values) == traj.extra_attrs["geometry_id"]
        assert str(ds.field_kind.values) == fs["kind"]
        assert str(ds.field_spec.values) == fs["spec"]
        assert float(ds.field_amplitude) == fs["amplitude"]
        assert np.array_equal(ds.field_polarization.values, fs["polarization"])
        for key in ("omega", "t0", "sigma", "duration"):
            value = float(ds[f"field_{key}"])
            assert (np.isnan(value) if fs[key] is None else value == fs[key]), key
        assert float(ds.kick_strength) == traj.extra_attrs["kick_strength"]
        assert float(ds.ground_state_energy) == traj.extra_attrs["ground_state_energy"]
        assert str(ds.inputs_sha256.values) == traj.provenance["inputs_sha256"]
        assert (store.parent / str(ds.source_file.values)).resolve() == Path(path).resolve()
        assert not Path(str(ds.source_file.values)).is_absolute()
        assert str(ds.source_sha256.values) == hashlib.sha256(path.read_bytes()).hexdigest()
        assert json.loads(str(ds.provenance.values)) == traj.provenance


def test_round_trip_is_exact(store, dataset_h5_files):
    assert_store_matches_files(store, all_files(dataset_h5_files))


def test_round_trip_with_several_chunks_per_shard(dataset_h5_files, tmp_path):
    files = dataset_h5_files["lih"]
    path = tmp_path / "s.zarr"
    assemble_store(files, path, chunk_mib=0.01, progress=False)
    rho = zarr.open_group(str(path), mode="r")["lih"]["rho"]
    # LiH frames are 1936 bytes: 5 frames per 0.01-MiB chunk, 4 chunks per shard
    assert rho.chunks == (1, 5, 1, 11, 11) and rho.shards == (1, 20, 1, 11, 11)
    assert len([p for p in (path / "lih" / "rho" / "c").rglob("*") if p.is_file()]) == 6
    assert_store_matches_files(path, files)


def test_open_dataset_is_lazy_and_named(store):
    groups = open_dataset(store)
    assert isinstance(groups, dict) and list(groups) == ["h2", "lih"]
    ds = open_dataset(store, molecule="lih")
    assert set(ds.dims) == {"traj_id", "time", "spin", "ao_i", "ao_j", "atom", "xyz"}
    assert set(ds.data_vars) == {"rho", "dipole", "energy", "field"}
    assert {"traj_id", "time", "overlap", "positions", "atomic_numbers"} <= set(ds.coords)
    assert isinstance(ds.rho.data, da.Array)
    assert ds.sizes["traj_id"] == 6 and ds.sizes["time"] == 20
    assert ds.rho.attrs["units"].startswith("electrons")
    assert ds.positions.attrs["units"] == "angstrom"
    with pytest.raises(InputError, match="no molecule 'h2o'"):
        open_dataset(store, molecule="h2o")


def test_index_table(store, dataset_h5_files):
    idx = open_index(store)
    assert list(idx.columns) == [c for c, _ in STORE_INDEX_COLUMNS]
    assert len(idx) == 12 and idx.traj_id.is_unique
    assert list(idx.molecule) == ["h2"] * 6 + ["lih"] * 6
    assert list(idx.row) == list(range(6)) * 2
    assert set(idx.n_basis) == {4, 11} and set(idx.n_time) == {20}
    assert set(idx.geometry_id) == {"eq", "s+10", "s-10"}
    assert set(idx.field_kind) == {"kick", "gaussian"}
    h2 = read_trajectory(dataset_h5_files["h2"][0])
    assert idx.inputs_sha256[0] == h2.provenance["inputs_sha256"]


def test_dataset_card(store):
    assert not (store / "README.md").exists()  # beside the store, not a non-Zarr file in it
    card = store.with_name("data.zarr.README.md").read_text()
    for text in ("| h2 | 6 | 3 | 4 |", "| lih | 6 | 3 | 11 |", "Ångström", "atomic units",
                 "PySCF AO order", "(px, py, pz)", "n_committed", "open_dataset",
                 "xr.open_zarr", "TrajectoryWindows", "DataLoader", "pyscf version: ",
                 "rtml git commit", "`rho` (data)", "(traj_id, time, spin, ao_i, ao_j)",
                 "sel(traj_id='h2/eq/kick_1e-3_z')", "sel(time=1.2, xyz='z')",
                 "dataset assemble: +12 trajectories", "`data.zarr`"):
        assert text in card, text
    assert ".tmp-" not in card


def test_info_and_cli(store, dataset_h5_files, tmp_path, capsys):
    info = store_info(store)
    assert info["n_trajectories"] == 12 and info["rho_dtype"] == "complex128"
    assert info["card"] == str(store.with_name("data.zarr.README.md"))
    assert info["molecules"]["lih"]["rho_shard_shape"] == [1, 20, 1, 11, 11]
    assert info["size_bytes"] > 0

    parser = argparse.ArgumentParser(prog="rtml")
    add_dataset_parser(parser.add_subparsers(dest="command", required=True))
    root_dir = Path(dataset_h5_files["h2"][0]).parents[2]
    out = tmp_path / "cli.zarr"
    args = parser.parse_args(["dataset", "assemble", str(root_dir / "lih"),
                              str(dataset_h5_files["h2"][0]), "-o", str(out),
                              "--dtype", "complex64", "--chunk-mib", "0.5", "-q"])
    assert args.func(args) == 0
    assert "7 trajectories added" in capsys.readouterr().out
    args = parser.parse_args(["dataset", "info", str(out), "--json"])
    assert args.func(args) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["rho_dtype"] == "complex64" and info["n_trajectories"] == 7
    args = parser.parse_args(["dataset", "info", str(out)])
    assert args.func(args) == 0
    out_text = capsys.readouterr().out
    assert "7 trajectories, rho complex64" in out_text
    assert f"dataset card (schema, units, how to open it): {out}.README.md" in out_text

    with pytest.raises(InputError, match="no such file or directory"):
        expand_trajectory_paths([tmp_path / "missing"])
    with pytest.raises(InputError, match="no \\*.h5"):
        expand_trajectory_paths([tmp_path])  # holds only the store
    with pytest.raises(SystemExit):
        parser.parse_args(["dataset", "assemble", "x.h5", "-o", "s", "--chunk-mib", "0"])


def test_complex64_store(dataset_h5_files, tmp_path):
    files = dataset_h5_files["lih"][:2]
    path = tmp_path / "c64.zarr"
    assemble_store(files, path, dtype="complex64", progress=False)
    ds = open_dataset(path, "lih")
    assert ds.rho.dtype == np.complex64 and ds.attrs["rho_dtype"] == "complex64"
    for row, f in enumerate(files):
        assert np.array_equal(ds.rho.values[row],
                              read_trajectory(f).density.astype(np.complex64))
    with pytest.raises(InputError, match="complex64"):
        assemble_store(dataset_h5_files["lih"][2:], path, dtype="complex128", progress=False)
    summary = assemble_store(dataset_h5_files["lih"][2:], path, dtype=None, progress=False)
    assert summary["added"] == 4


def test_new_store_is_built_atomically(dataset_h5_files, tmp_path):
    def failing(n_written):
        if n_written == 4:  # 4 trajectories committed, the 5th never read
            raise RuntimeError("simulated crash mid-assembly")

    path = tmp_path / "new.zarr"
    with pytest.raises(RuntimeError, match="simulated"):
        assemble_store(all_files(dataset_h5_files), path, progress=failing)
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary, no card left behind


def test_append_keeps_existing_bytes_and_skips_known(dataset_h5_files, tmp_path):
    files = all_files(dataset_h5_files)
    path = tmp_path / "a.zarr"
    first = dataset_h5_files["h2"][:4] + dataset_h5_files["lih"][:2]
    s1 = assemble_store(first, path, progress=False)
    assert s1["added"] == 6
    created = zarr.open_group(str(path), mode="r").attrs["date_created"]
    before = {mol: file_digests(path, mol) for mol in ("h2", "lih")}
    assert any("rho/c/" in k for k in before["lih"])

    s2 = assemble_store(files, path, progress=False)
    assert s2["added"] == 6 and s2["skipped"] == 6 and not s2["created"]
    assert s2["molecules"]["h2"] == {"added": 2, "skipped": 4, "n_trajectories": 6}
    for mol in ("h2", "lih"):
        after = file_digests(path, mol)
        for name, digest in before[mol].items():
            assert after[name] == digest, f"{name} was rewritten by the append"
        assert len(after) > len(before[mol])
    attrs = zarr.open_group(str(path), mode="r").attrs.asdict()
    assert attrs["date_created"] == created
    assert len(attrs["history"].splitlines()) == 2
    assert_store_matches_files(path, files)

    # the same files again: nothing added, nothing rewritten
    data_before = {mol: file_digests(path, mol) for mol in ("h2", "lih")}
    s3 = assemble_store(files, path, progress=False)
    assert s3["added"] == 0 and s3["skipped"] == 12
    assert {mol: file_digests(path, mol) for mol in ("h2", "lih")} == data_before
    assert len(open_index(path)) == 12


def test_interrupted_append_is_repaired(dataset_h5_files, tmp_path):
    files = all_files(dataset_h5_files)
    path = tmp_path / "i.zarr"
    assemble_store(dataset_h5_files["lih"][:2], path, progress=False)

    def failing(n_written):
        if n_written == 2:
            raise KeyboardInterrupt  # killed before the third new trajectory is read

    with pytest.raises(KeyboardInterrupt):
        assemble_store(dataset_h5_files["lih"][2:], path, progress=failing)
    g = zarr.open_group(str(path), mode="r", use_consolidated=False)["lih"]
    # an append is all or nothing: 2 rows written, none committed
    assert g.attrs["n_committed"] == 2 and g["rho"].shape[0] == 6
    assert open_dataset(path, "lih").sizes["traj_id"] == 2
    assert len(open_index(path)) == 2

    summary = assemble_store(files, path, progress=False)
    assert summary["added"] == 10 and summary["skipped"] == 2
    g = zarr.open_group(str(path), mode="r")["lih"]
    assert g.attrs["n_committed"] == 6 and g["rho"].shape[0] == 6
    idx = open_index(path)
    assert len(idx) == 12 and idx.traj_id.is_unique
    assert_store_matches_files(path, files)


def test_mismatched_basis_names_the_file(dataset_h5_files, dataset_trajectory, tmp_path):
    bad = write_trajectory(tmp_path / "lih_sto3g.h5",
                           dataset_trajectory("lih", "eq", "kick:1e-3:z", basis="sto-3g"))
    with pytest.raises(InputError, match=r"lih_sto3g\.h5: n_basis = 6 but molecule group 'lih' "
                                         r"has n_basis = 11"):
        assemble_store(dataset_h5_files["lih"][:1] + [bad], tmp_path / "new.zarr",
                       progress=False)
    assert not (tmp_path / "new.zarr").exists()
    path = tmp_path / "s.zarr"
    assemble_store(dataset_h5_files["lih"][:1], path, progress=False)
    before = file_digests(path, "")
    with pytest.raises(InputError, match=r"lih_sto3g\.h5: .*in store 's\.zarr'"):
        assemble_store([bad], path, progress=False)
    assert file_digests(path, "") == before  # checked before anything is written


def test_time_grid_and_id_conflicts(dataset_h5_files, dataset_trajectory, tmp_path):
    short = dataset_trajectory("h2", "eq", "kick:1e-3:z", n_steps=21)
    short_path = write_trajectory(tmp_path / "short.h5", short)
    with pytest.raises(InputError, match="short.h5: n_time = 21"):
        assemble_store(dataset_h5_files["h2"][:1] + [short_path], tmp_path / "x.zarr",
                       progress=False)
    # same traj_id (molecule/geometry/stem) with other inputs: never replaced
    other = read_trajectory(dataset_h5_files["h2"][0])
    other.provenance = {**other.provenance, "inputs_sha256": "f" * 64}
    (tmp_path / "copy").mkdir()
    other_path = write_trajectory(tmp_path / "copy" / Path(dataset_h5_files["h2"][0]).name,
                                  other)
    path = tmp_path / "s.zarr"
    assemble_store(dataset_h5_files["h2"][:1], path, progress=False)
    with pytest.raises(InputError, match="already in the store with different inputs"):
        assemble_store([other_path], path, progress=False)


def test_bad_inputs(dataset_h5_files, tmp_path):
    with pytest.raises(InputError, match="no trajectory files"):
        assemble_store([], tmp_path / "s.zarr")
    with pytest.raises(InputError, match="dtype"):
        assemble_store(dataset_h5_files["h2"][:1], tmp_path / "s.zarr", dtype="float64")
    with pytest.raises(InputError, match="chunk_mib"):
        assemble_store(dataset_h5_files["h2"][:1], tmp_path / "s.zarr", chunk_mib=0)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a store")
    with pytest.raises(InputError, match="not an rtml dataset store"):
        assemble_store(dataset_h5_files["h2"][:1], tmp_path / "plain", progress=False)
    with pytest.raises(InputError, match="does not exist"):
        assemble_store(dataset_h5_files["h2"][:1], tmp_path / "no" / "s.zarr", progress=False)
    with pytest.raises(InputError, match="not an rtml dataset store"):
        open_dataset(tmp_path / "plain")
    (tmp_path / "empty.zarr").mkdir()  # e.g. made by a workflow manager: becomes the store
    assert assemble_store(dataset_h5_files["h2"][:1], tmp_path / "empty.zarr",
                          progress=False)["created"]


def test_progress_lines(dataset_h5_files, tmp_path, capsys):
    assemble_store(dataset_h5_files["h2"][:2], tmp_path / "p.zarr")
    err = capsys.readouterr().err
    assert "assemble p.zarr: 2/2" in err
    seen = []
    assemble_store(dataset_h5_files["h2"][2:4], tmp_path / "p.zarr", progress=seen.append)
    assert seen == [1, 2]


def test_files_without_engine_metadata(closed_traj, tmp_path):
    """Older/foreign files (no geometry_id, no inputs_sha256, other field JSON) still go in."""
    path = write_trajectory(tmp_path / "old.h5", closed_traj)
    store = tmp_path / "s.zarr"
    assemble_store([path], store, progress=False)
    ds = open_dataset(store, "lih")
    assert str(ds.geometry_id.values[0]).startswith("pos-")
    assert str(ds.inputs_sha256.values[0]).startswith("file-")
    assert str(ds.field_kind.values[0]) == "delta_kick"
    assert float(ds.kick_strength[0]) == 1e-3
    assert np.array_equal(ds.rho.values[0], closed_traj.density)
    assert assemble_store([path], store, progress=False)["added"] == 0
