"""Random time windows: the Zarr dataset store (TrajectoryWindows) against the HDF5 files.

Creates synthetic trajectories without propagation (RHF density of a randomly displaced
molecule, evolved by a random unitary in the Löwdin basis, written with
``rtml.data.write_trajectory``), assembles them into a store, then reads the same N random
windows (rho, field, time, dipole, energy, overlap, core Hamiltonian, positions -> torch)

- through ``TrajectoryWindows`` (Zarr), and
- directly from the HDF5 files with h5py slicing (files kept open),

in one process and through a ``DataLoader`` with 2 workers, and prints windows/s and the
ratio. Runs in well under a minute with the defaults::

    OMP_NUM_THREADS=1 python benchmarks/dataset_windows.py
    python benchmarks/dataset_windows.py --store data.zarr          # an existing store
    python benchmarks/dataset_windows.py --h5-dir runs/ --chunk-mib 0.25

With ``--store`` alone the HDF5 side reads the store's ``source_file`` paths.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MOLECULES = {  # name: (atoms in Å, charge, spin)
    "h2o": ("O 0 0 0.1173; H 0 0.7572 -0.4692; H 0 -0.7572 -0.4692", 0, 0),
    "c2h4": ("C 0 0 0.6695; C 0 0 -0.6695; H 0 0.9289 1.2321; H 0 -0.9289 1.2321; "
             "H 0 0.9289 -1.2321; H 0 -0.9289 -1.2321", 0, 0),
}


def synthetic_trajectory(name: str, index: int, n_time: int, rng: np.random.Generator):
    """One Trajectory: RHF/6-31G of a displaced geometry, random unitary Löwdin evolution."""
    from pyscf import gto, scf

    from rtml.data import Trajectory
    from rtml.chem import basis_metadata, one_electron_matrices

    atoms, charge, spin = MOLECULES[name]
    mol = gto.M(atom=atoms, basis="6-31g", charge=charge, spin=spin, verbose=0)
    coords = mol.atom_coords(unit="Angstrom") + rng.normal(scale=0.02, size=(mol.natm, 3))
    mol = gto.M(atom=[(mol.atom_symbol(i), coords[i]) for i in range(mol.natm)],
                basis="6-31g", charge=charge, spin=spin, verbose=0)
    mf = scf.RHF(mol).run(conv_tol=1e-9)
    matrices = one_electron_matrices(mol)
    S = matrices.overlap
    lam, vec = np.linalg.eigh(S)
    s_half, s_mhalf = (vec * np.sqrt(lam)) @ vec.T, (vec / np.sqrt(lam)) @ vec.T
    n = S.shape[0]
    a = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    w, V = np.linalg.eigh(0.05 * (a + a.conj().T))
    dt, save_every = 0.2, 1
    times = np.arange(n_time) * dt * save_every
    U = np.einsum("ij,tj,kj->tik", V, np.exp(-1j * np.outer(times, w)), V.conj())
    p0 = s_half @ mf.make_rdm1() @ s_half
    density = (s_mhalf @ (U @ p0 @ U.conj().transpose(0, 2, 1)) @ s_mhalf)[:, None]
    charges = mol.atom_charges()
    dipole = (matrices.nuclear_dipole
              - np.einsum("xij,tji->tx", matrices.dipole_ints, density[:, 0]).real)
    kappa = 1e-3 * (1 + index)
    atom, ang, mag = basis_metadata(mol)
    return Trajectory(
        molecule=name, atomic_numbers=charges.astype(np.int64), positions_angstrom=coords,
        charge=charge, multiplicity=spin + 1, basis="6-31G", xc="hf",
        n_electrons=mol.nelectron, basis_atom_index=atom, basis_angular_momentum=ang,
        basis_magnetic_quantum=mag, overlap=S,
        core_hamiltonian=matrices.hcore,
        density=density, time=times, field=np.zeros((n_time, 3)),
        energy=np.full(n_time, mf.e_tot), dipole=dipole, dt=dt, save_every=save_every,
        propagator="synthetic",
        field_spec={"kind": "kick", "spec": f"kick:{kappa:g}:z", "amplitude": kappa,
                    "polarization": [0.0, 0.0, 1.0], "omega": None, "t0": None,
                    "sigma": None, "duration": None, "omega_source": None},
        dipole_origin_bohr=matrices.dipole_origin,
        provenance={"engine": "synthetic-benchmark", "inputs_sha256": f"{name}-{index:04d}"},
        extra_attrs={"geometry_id": f"g{index:03d}", "kick_strength": kappa,
                     "ground_state_energy": float(mf.e_tot)},
    )


class HDF5Windows:
    """The same windows read with h5py slicing; files opened lazily per process."""

    def __init__(self, locations, window, real_dtype, complex_dtype):
        self.locations = locations  # [(file, start)]
        self.window = window
        self.real_dtype, self.complex_dtype = real_dtype, complex_dtype
        self._files = {}
        self._pid = None

    def __getstate__(self):
        return {**self.__dict__, "_files": {}, "_pid": None}

    def __len__(self):
        return len(self.locations)

    def _file(self, path):
        import h5py

        if self._pid != os.getpid():
            self._files, self._pid = {}, os.getpid()
        f = self._files.get(path)
        if f is None:
            f = self._files[path] = h5py.File(path, "r")
        return f

    def __getitem__(self, i):
        import torch

        path, s = self.locations[i]
        f = self._file(path)
        sl = slice(s, s + self.window)
        rho = f["dynamics/density_real"][sl] + 1j * f["dynamics/density_imag"][sl]

        def rt(x):
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.real_dtype)

        return {"rho": torch.from_numpy(rho).to(self.complex_dtype),
                "field": rt(f["dynamics/field"][sl]), "time": rt(f["dynamics/time"][sl]),
                "dipole": rt(f["dynamics/dipole"][sl]), "energy": rt(f["dynamics/energy"][sl]),
                "overlap": rt(f["matrices/overlap"][()]),
                "core_hamiltonian": rt(f["matrices/core_hamiltonian"][()]),
                "positions": rt(f["geometry/positions"][()])}


def _rate(fn, n, repeats=1):
    """Best of ``repeats``: (windows/s, seconds)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n / best, best


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, help="existing store (skips generation)")
    parser.add_argument("--h5-dir", type=Path, help="existing trajectory files to assemble")
    parser.add_argument("--molecules", default="h2o,c2h4", help="synthetic molecules")
    parser.add_argument("--n-traj", type=int, default=6, help="synthetic trajectories/molecule")
    parser.add_argument("--n-time", type=int, default=2000, help="frames per trajectory")
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--n-windows", type=int, default=400, help="random windows to read")
    parser.add_argument("--chunk-mib", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs")
    parser.add_argument("--keep", type=Path, help="keep generated files in this directory")
    args = parser.parse_args(argv)

    import torch
    from torch.utils.data import DataLoader

    from rtml.data import (TrajectoryWindows, assemble_store, collate_windows,
                           write_trajectory)

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="rtml-bench-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    try:
        store = args.store
        if store is None:
            h5_dir = args.h5_dir
            if h5_dir is None:
                h5_dir = work / "h5"
                h5_dir.mkdir(exist_ok=True)
                t0 = time.perf_counter()
                for name in args.molecules.split(","):
                    for k in range(args.n_traj):
                        write_trajectory(h5_dir / f"{name}-{k:03d}.h5",
                                         synthetic_trajectory(name, k, args.n_time, rng))
                print(f"generated {len(list(h5_dir.glob('*.h5')))} synthetic trajectories "
                      f"({args.n_time} frames) in {time.perf_counter() - t0:.1f} s")
            files = sorted(h5_dir.rglob("*.h5"))
            store = work / "data.zarr"
            shutil.rmtree(store, ignore_errors=True)
            t0 = time.perf_counter()
            assemble_store(files, store, chunk_mib=args.chunk_mib, progress=False)
            dt = time.perf_counter() - t0
            h5_bytes = sum(f.stat().st_size for f in files)
            print(f"assembled {len(files)} files ({h5_bytes / 2**20:.1f} MiB HDF5) in "
                  f"{dt:.2f} s ({h5_bytes / 2**20 / dt:.1f} MiB/s); store "
                  f"{_dir_size(store) / 2**20:.1f} MiB")

        ds = TrajectoryWindows(store, window=args.window, stride=1, split="all")
        n = min(args.n_windows, len(ds))
        picks = rng.choice(len(ds), size=n, replace=False)
        group_rho = {}
        import zarr

        root = zarr.open_group(str(store), mode="r")
        sources = {}
        for mol in ds.molecules:
            g = root[mol]
            nc = int(g.attrs["n_committed"])
            # relative to the directory holding the store
            sources[mol] = [str(store.parent / s) for s in g["source_file"][:nc]]
            group_rho[mol] = (g["rho"].chunks, g["rho"].shards)
        locations = []
        for i in picks:
            mol, row, _, start = ds.window_location(int(i))
            locations.append((sources[mol][row], start))
        h5 = HDF5Windows(locations, args.window, ds.real_dtype, ds.dtype)
        print(f"{len(ds)} windows of {args.window} frames available; reading {n} random ones")
        for mol, (chunks, shards) in group_rho.items():
            print(f"  {mol}: rho chunk {chunks}, shard {shards}")

        # correctness spot check
        for j in range(min(5, n)):
            assert torch.equal(ds[int(picks[j])]["rho"], h5[j]["rho"])

        # fresh readers in every repeat: handles opened and caches filled inside the timing
        results = {}
        R = args.repeats

        def zarr_reads():
            fresh = TrajectoryWindows(store, window=args.window, stride=1, split="all")
            for i in picks:
                fresh[int(i)]

        def zarr_reads_uncached():
            fresh = TrajectoryWindows(store, window=args.window, stride=1, split="all",
                                      cache_chunk_mib=0)
            for i in picks:
                fresh[int(i)]

        def h5_reads():
            fresh = HDF5Windows(locations, args.window, ds.real_dtype, ds.dtype)
            for j in range(n):
                fresh[j]

        results["zarr, 1 process"] = _rate(zarr_reads, n, R)
        results["zarr, 1 process, no cache"] = _rate(zarr_reads_uncached, n, R)
        results["hdf5, 1 process"] = _rate(h5_reads, n, R)

        # batches of one basis size (what EqualBasisBatchSampler guarantees), same windows
        # in the same order for both readers
        bs = args.batch_size
        by_nbf: dict[int, list[int]] = {}
        for j, i in enumerate(picks):
            by_nbf.setdefault(ds.n_basis_of(int(i)), []).append(j)
        hb = [js[k:k + bs] for js in by_nbf.values() for k in range(0, len(js), bs)]
        zb = [[int(picks[j]) for j in b] for b in hb]

        def run_loader(dataset, batches, collate):
            loader = DataLoader(dataset, batch_sampler=batches, num_workers=args.workers,
                                collate_fn=collate)
            for _ in loader:
                pass

        tag = f"{args.workers} workers"
        results[f"zarr, DataLoader {tag}"] = _rate(
            lambda: run_loader(TrajectoryWindows(store, window=args.window, stride=1,
                                                 split="all"), zb, collate_windows), n, R)
        results[f"hdf5, DataLoader {tag}"] = _rate(
            lambda: run_loader(HDF5Windows(locations, args.window, ds.real_dtype, ds.dtype),
                               hb, _collate), n, R)

        print(f"\n{'reader (best of ' + str(R) + ')':<32}{'windows/s':>12}{'seconds':>10}")
        for key, (rate, dt) in results.items():
            print(f"{key:<32}{rate:>12.0f}{dt:>10.2f}")
        r1 = results["zarr, 1 process"][0] / results["hdf5, 1 process"][0]
        r2 = results[f"zarr, DataLoader {tag}"][0] / results[f"hdf5, DataLoader {tag}"][0]
        print(f"\nratio zarr/hdf5: {r1:.2f} (1 process), {r2:.2f} (DataLoader, {tag})")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def _collate(items):
    import torch

    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


if __name__ == "__main__":
    sys.exit(main())
