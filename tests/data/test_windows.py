"""TrajectoryWindows, the geometry splits, EqualBasisBatchSampler and collate_windows."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("zarr")

from torch.utils.data import DataLoader  # noqa: E402

from rtml import InputError  # noqa: E402
from rtml.data import (EqualBasisBatchSampler, TrajectoryWindows, assign_splits,  # noqa: E402
                       collate_windows, read_trajectory)

N_TIME = 20  # frames per trajectory in the conftest store
GEOMETRIES = {"eq", "s+10", "s-10"}


def expected_count(n_traj, window, stride, n_time=N_TIME):
    return n_traj * ((n_time - window) // stride + 1) if n_time >= window else 0


@pytest.mark.parametrize("window,stride", [(8, 4), (20, 1), (7, 3), (1, 5), (21, 1)])
def test_window_count(dataset_store, window, stride):
    ds = TrajectoryWindows(dataset_store, window=window, stride=stride, split="all")
    assert len(ds.trajectories) == 12
    assert len(ds) == expected_count(12, window, stride)
    starts = sorted({ds.window_location(i)[3] for i in range(len(ds))})
    assert starts == list(range(0, N_TIME - window + 1, stride))
    lih = TrajectoryWindows(dataset_store, molecules=["lih"], window=window, stride=stride,
                            split="all")
    assert len(lih) == expected_count(6, window, stride)


def test_items_equal_the_source_files(dataset_store, dataset_h5_files):
    sources = {}
    for mol, files in dataset_h5_files.items():
        for f in files:
            t = read_trajectory(f)
            sources[f"{mol}/{t.extra_attrs['geometry_id']}/{Path(f).stem}"] = t
    ds = TrajectoryWindows(dataset_store, window=8, stride=5, split="all")
    assert len(ds) == 12 * 3
    for i in range(len(ds)):
        item = ds[i]
        t = sources[item["traj_id"]]
        s, n = item["start"], t.n_basis
        sl = slice(s, s + 8)
        assert item["molecule"] == t.molecule
        assert item["rho"].shape == (8, 1, n, n) and item["rho"].dtype == torch.complex128
        assert torch.equal(item["rho"], torch.from_numpy(t.density[sl]))
        # the store's time is the file's made exact (step * dt): equal to rounding
        np.testing.assert_allclose(item["time"].numpy(), t.time[sl], rtol=0, atol=1e-12)
        for key, value in [("field", t.field[sl]),
                           ("dipole", t.dipole[sl]), ("energy", t.energy[sl]),
                           ("overlap", t.overlap), ("core_hamiltonian", t.core_hamiltonian),
                           ("positions", t.positions_angstrom)]:
            assert item[key].dtype == torch.float64, key
            assert torch.equal(item[key], torch.from_numpy(np.ascontiguousarray(value))), key
        for key, value in [("atomic_numbers", t.atomic_numbers),
                           ("basis_atom_index", t.basis_atom_index),
                           ("basis_angular_momentum", t.basis_angular_momentum),
                           ("basis_magnetic_quantum", t.basis_magnetic_quantum)]:
            assert item[key].dtype == torch.int64 and torch.equal(item[key],
                                                                  torch.from_numpy(value)), key
        assert int(item["n_electrons"]) == t.n_electrons
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_complex64_items(dataset_store):
    ds = TrajectoryWindows(dataset_store, window=4, stride=4, split="all",
                           dtype=torch.complex64)
    item = ds[0]
    assert item["rho"].dtype == torch.complex64 and item["dipole"].dtype == torch.float32
    full = TrajectoryWindows(dataset_store, window=4, stride=4, split="all")[0]
    assert torch.equal(item["rho"], full["rho"].to(torch.complex64))


def geometry_sets(ds):
    return {(m, g) for m, _, _, g in ds.trajectories}


def test_geometry_splits_are_deterministic_and_disjoint(dataset_store):
    splits = {s: TrajectoryWindows(dataset_store, window=8, stride=4, split=s)
              for s in ("train", "val", "test")}
    sets = {s: geometry_sets(ds) for s, ds in splits.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"]
                or sets["val"] & sets["test"])
    assert sets["train"] | sets["val"] | sets["test"] == {
        (m, g) for m in ("h2", "lih") for g in GEOMETRIES}
    for mol in ("h2", "lih"):  # >= 3 geometries: at least one train and one test each
        assert any(m == mol for m, _ in sets["train"])
        assert any(m == mol for m, _ in sets["test"])
    assert sum(len(ds) for ds in splits.values()) == expected_count(12, 8, 4)
    again = TrajectoryWindows(dataset_store, window=8, stride=4, split="train")
    assert again.trajectories == splits["train"].trajectories
    assert [again.window_location(i) for i in range(len(again))] == \
        [splits["train"].window_location(i) for i in range(len(again))]


def test_assign_splits_properties():
    keys = [("mol", f"g{i}") for i in range(2000)]
    a = assign_splits(keys, (0.8, 0.1, 0.1), seed=0)
    counts = {s: sum(v == s for v in a.values()) for s in ("train", "val", "test")}
    assert abs(counts["train"] / 2000 - 0.8) < 0.04 and abs(counts["test"] / 2000 - 0.1) < 0.03
    assert assign_splits(keys, (0.8, 0.1, 0.1), seed=0) == a  # deterministic
    b = assign_splits(keys + [("mol", "new")], (0.8, 0.1, 0.1), seed=0)
    assert all(b[k] == a[k] for k in keys)  # stable when geometries are added
    assert assign_splits(keys, (0.8, 0.1, 0.1), seed=1) != a
    for n in (3, 4, 5):  # small molecules still get train and test
        for seed in range(20):
            s = assign_splits([("m", f"g{i}") for i in range(n)], seed=seed)
            assert "train" in s.values() and "test" in s.values()
    assert set(assign_splits([("m", "a"), ("m", "b")], (0, 0, 1)).values()) == {"test"}
    with pytest.raises(InputError, match="fractions"):
        assign_splits(keys, (0.5, -0.1, 0.6))


def test_held_out_molecule_is_only_in_test(dataset_store):
    kw = dict(window=8, stride=4, split_by="molecule", held_out_molecules=("lih",))
    test = TrajectoryWindows(dataset_store, split="test", **kw)
    assert {m for m, *_ in test.trajectories} == {"lih"} and len(test.trajectories) == 6
    train = TrajectoryWindows(dataset_store, split="train", **kw)
    val = TrajectoryWindows(dataset_store, split="val", **kw)
    assert {m for m, *_ in train.trajectories + val.trajectories} == {"h2"}
    assert len(train.trajectories) + len(val.trajectories) == 6
    assert len(train.trajectories) > 0
    # held-out molecules join the selection and stay out of train with split_by="geometry"
    geo = TrajectoryWindows(dataset_store, molecules=["h2"], held_out_molecules=["lih"],
                            split="train", window=8, stride=4)
    assert {m for m, *_ in geo.trajectories} == {"h2"}
    with pytest.raises(InputError, match="held_out_molecules"):
        TrajectoryWindows(dataset_store, split_by="molecule")
    with pytest.raises(InputError, match="no molecule"):
        TrajectoryWindows(dataset_store, molecules=["h2o"])
    with pytest.raises(InputError, match="split"):
        TrajectoryWindows(dataset_store, split="training")
    with pytest.raises(InputError, match="window"):
        TrajectoryWindows(dataset_store, window=0)


def test_sampler_groups_by_basis_and_is_deterministic(dataset_store):
    ds = TrajectoryWindows(dataset_store, window=8, stride=2, split="all")
    sampler = EqualBasisBatchSampler(ds, batch_size=5, seed=3)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(ds)))
    for b in batches:
        assert len({ds.n_basis_of(i) for i in b}) == 1 and 1 <= len(b) <= 5
    assert list(EqualBasisBatchSampler(ds, batch_size=5, seed=3)) == batches
    sampler.set_epoch(1)
    assert list(sampler) != batches
    sampler.set_epoch(0)
    assert list(sampler) == batches
    dropped = EqualBasisBatchSampler(ds, batch_size=5, drop_last=True)
    assert all(len(b) == 5 for b in dropped) and len(list(dropped)) == len(dropped)
    ordered = list(EqualBasisBatchSampler(ds, batch_size=5, shuffle=False))
    assert [i for b in ordered for i in b] == sorted(i for b in ordered for i in b)


def test_dataloader_with_two_workers(dataset_store):
    ds = TrajectoryWindows(dataset_store, window=8, stride=4, split="all")
    ds[0]  # a handle opened in the parent must not leak into the workers
    sampler = EqualBasisBatchSampler(ds, batch_size=4, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=2, collate_fn=collate_windows)
    seen = []
    for batch in loader:
        assert len(set(batch["molecule"])) == 1
        n = batch["overlap"].shape[-1]
        b = len(batch["traj_id"])
        assert batch["rho"].shape == (b, 8, 1, n, n)
        assert batch["positions"].shape == (b, 2, 3) and batch["start"].dtype == torch.int64
        seen += list(zip(batch["traj_id"], batch["start"].tolist()))
        first = ds[[i for i in range(len(ds)) if ds.window_location(i)[2:] ==
                    (batch["traj_id"][0], int(batch["start"][0]))][0]]
        assert torch.equal(batch["rho"][0], first["rho"])
    assert len(seen) == len(set(seen)) == len(ds)


def test_pickle_drops_handles(dataset_store):
    ds = TrajectoryWindows(dataset_store, window=8, stride=4, split="all")
    item = ds[3]
    assert ds._handles is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._handles is None and len(clone._cache) == 0
    assert torch.equal(clone[3]["rho"], item["rho"])


def test_collate_rejects_mixed_shapes(dataset_store):
    ds = TrajectoryWindows(dataset_store, window=8, stride=4, split="all")
    h2 = next(i for i in range(len(ds)) if ds.n_basis_of(i) == 4)
    lih = next(i for i in range(len(ds)) if ds.n_basis_of(i) == 11)
    with pytest.raises(ValueError, match="EqualBasisBatchSampler"):
        collate_windows([ds[h2], ds[lih]])
    batch = collate_windows([ds[h2], ds[h2 + 1]])
    assert batch["rho"].shape[0] == 2 and isinstance(batch["traj_id"], list)


def test_import_rtml_data_does_not_import_torch():
    code = ("import sys, rtml.data; assert 'torch' not in sys.modules; "
            "assert 'TrajectoryWindows' in rtml.data.__all__")
    subprocess.run([sys.executable, "-c", code], check=True)
