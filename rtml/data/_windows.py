r"""PyTorch access to the dataset store: time windows, deterministic splits, batching.

:class:`TrajectoryWindows` is a map-style :class:`torch.utils.data.Dataset` over all time
windows ``[t, t + window)``, ``t = 0, stride, 2 stride, ...`` with ``t + window <= n_time``,
of the committed trajectories of a store (:func:`rtml.data.assemble_store`). A trajectory of
``n_time`` frames gives ``floor((n_time - window) / stride) + 1`` windows (none if
``n_time < window``).

Splits are by geometry (no geometry in two splits) and deterministic: see
:func:`assign_splits`. :class:`EqualBasisBatchSampler` batches windows that can be stacked
(same nbf, and the same n_spin and atom count), and :func:`collate_windows` stacks them.

This is the only rtml module that imports torch; :mod:`rtml.data` imports it on first use
of one of its names.

Example::

    from torch.utils.data import DataLoader
    from rtml.data import TrajectoryWindows, EqualBasisBatchSampler, collate_windows

    train = TrajectoryWindows("data.zarr", window=32, stride=16, split="train")
    sampler = EqualBasisBatchSampler(train, batch_size=16, seed=0)
    loader = DataLoader(train, batch_sampler=sampler, num_workers=2,
                        collate_fn=collate_windows)
    for epoch in range(n_epochs):
        sampler.set_epoch(epoch)
        for batch in loader:
            batch["rho"]          # (B, window, n_spin, nbf, nbf) complex
            batch["rho_initial"]  # (B, n_spin, nbf, nbf) the trajectory's first frame
            batch["rho_previous"] # (B, n_spin, nbf, nbf) the frame before the window
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset, Sampler

from rtml._errors import InputError
from rtml.data._commit import committed_counts, read_index
from rtml.data._schema import check_is_store
from rtml.data._splits import SPLITS, _check_fractions, assign_splits  # noqa: F401


def _torch_dtype(dtype) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, None)
    if dtype not in (torch.complex128, torch.complex64):
        raise InputError(f"dtype must be torch.complex128 or torch.complex64, got {dtype!r}")
    return dtype


class _Handles:
    """Open Zarr arrays of one process (created lazily, never pickled)."""

    def __init__(self, path: Path, molecules: Iterable[str]):
        self.pid = os.getpid()
        root = zarr.open_group(str(path), mode="r", zarr_format=3, use_consolidated=False)
        names = ("rho", "dipole", "energy", "field", "overlap", "core_hamiltonian", "positions")
        self.arrays = {}
        for mol in molecules:
            g = root[mol]
            self.arrays[mol] = {n: g[n] for n in names}


class TrajectoryWindows(Dataset):
    r"""Time windows of the trajectories in a dataset store, as a PyTorch Dataset.

    Args:
        path: store directory (:func:`rtml.data.assemble_store`).
        molecules: molecule groups to use (default: all in the store).
        window: frames per window (>= 1).
        stride: frames between window starts (>= 1).
        split: ``"train"``, ``"val"``, ``"test"`` or ``"all"``.
        split_by: ``"geometry"``: every (molecule, geometry) goes to one split by
            :func:`assign_splits`; ``held_out_molecules``, if any, are test only.
            ``"molecule"``: ``held_out_molecules`` (required) form the test split (zero-shot);
            the other molecules are split into train/val by geometry with the train and val
            fractions.
        fractions: (train, val, test) fractions of geometries, normalised.
        held_out_molecules: molecules used only in the test split (added to ``molecules``).
        seed: seed of the split hash.
        dtype: ``torch.complex128`` (default) or ``torch.complex64`` for ``rho``; real tensors
            are float64 or float32 to match.
        cache_trajectories: per-process LRU cache size (trajectories) for the small
            per-trajectory arrays (dipole, energy, field, overlap, core Hamiltonian, positions).
        cache_chunk_mib: per-process LRU cache (MiB) of decoded ``rho`` time chunks; 0
            reads every window straight from the store.

    Each item is a dict (n = nbf of the window's molecule):

    =========================  =====================  =========================
    key                        shape                  dtype / unit
    =========================  =====================  =========================
    ``rho``                    (window, n_spin, n, n) complex
    ``field``                  (window, 3)            real, a.u.
    ``time``                   (window,)              real, a.u. of time
    ``dipole``                 (window, 3)            real, e*bohr
    ``energy``                 (window,)              real, hartree
    ``overlap``                (n, n)                 real
    ``core_hamiltonian``       (n, n)                 real, hartree
    ``positions``              (n_atoms, 3)           real, Å
    ``atomic_numbers``         (n_atoms,)             int64
    ``basis_atom_index``,      (n,)                   int64
    ``basis_angular_momentum``,
    ``basis_magnetic_quantum``
    ``n_electrons``            ()                     int64
    ``molecule``, ``traj_id``  str
    ``start``                  int (first frame)
    =========================  =====================  =========================

    The store is opened lazily, on the first ``__getitem__`` in each process (DataLoader
    workers open their own handles); handles and caches are not pickled.

    Attributes:
        trajectories: list of ``(molecule, row, traj_id, geometry_id)`` in this split.
        split_of: ``{(molecule, geometry_id): split}`` for every geometry of the selected
            molecules.
    """

    def __init__(self, path: str | os.PathLike, molecules: Sequence[str] | None = None,
                 window: int = 32, stride: int = 16, split: str = "train",
                 split_by: str = "geometry", fractions=(0.8, 0.1, 0.1),
                 held_out_molecules: Sequence[str] = (), seed: int = 0,
                 dtype=torch.complex128, cache_trajectories: int = 256,
                 cache_chunk_mib: float = 256.0):
        self.path = Path(path)
        if int(window) != window or window < 1:
            raise InputError(f"window must be a positive integer, got {window!r}")
        if int(stride) != stride or stride < 1:
            raise InputError(f"stride must be a positive integer, got {stride!r}")
        if split not in SPLITS + ("all",):
            raise InputError(f"split must be train, val, test or all, got {split!r}")
        if split_by not in ("geometry", "molecule"):
            raise InputError(f"split_by must be 'geometry' or 'molecule', got {split_by!r}")
        self.window, self.stride = int(window), int(stride)
        self.split, self.split_by, self.seed = split, split_by, int(seed)
        self.fractions = _check_fractions(fractions)
        self.dtype = _torch_dtype(dtype)
        self.real_dtype = torch.float64 if self.dtype == torch.complex128 else torch.float32
        self.cache_trajectories = int(cache_trajectories)
        self.cache_chunk_mib = float(cache_chunk_mib)

        check_is_store(self.path)
        # the commit record and the arrays as they are, never the consolidated copy
        root = zarr.open_group(str(self.path), mode="r", zarr_format=3, use_consolidated=False)
        committed = committed_counts(root)
        available = list(committed)
        held_out = list(dict.fromkeys(str(m) for m in held_out_molecules))
        selected = list(available if molecules is None else dict.fromkeys(map(str, molecules)))
        selected += [m for m in held_out if m not in selected]
        unknown = [m for m in selected if m not in available]
        if unknown:
            raise InputError(f"store '{self.path}' has no molecule(s) {', '.join(unknown)} "
                             f"(it has: {', '.join(available) or 'none'})")
        if split_by == "molecule" and not held_out:
            raise InputError("split_by='molecule' needs held_out_molecules (the test split)")
        self.molecules = selected
        self.held_out_molecules = tuple(held_out)

        # per-group constants (small: kept in memory and pickled to workers)
        self._group: dict[str, dict[str, Any]] = {}
        for mol in selected:
            g = root[mol]
            a = g.attrs.asdict()
            self._group[mol] = {
                "n_committed": committed[mol], "n_time": int(a["n_time"]),
                "n_basis": int(a["n_basis"]), "n_spin": int(a["n_spin"]),
                "n_atoms": int(a["n_atoms"]), "n_electrons": int(a["n_electrons"]),
                "time": np.asarray(g["time"][...], dtype=np.float64),
                "atomic_numbers": np.asarray(g["atomic_numbers"][...], dtype=np.int64),
                "basis_atom_index": np.asarray(g["ao_i_atom"][...], dtype=np.int64),
                "basis_angular_momentum": np.asarray(g["ao_i_l"][...], dtype=np.int64),
                "basis_magnetic_quantum": np.asarray(g["ao_i_m"][...], dtype=np.int64),
            }

        # committed trajectories from the index (checked against the commit record)
        index = read_index(root)
        all_trajs = [(m, r, t, gid) for m, r, t, gid in zip(
            index["molecule"], index["row"], index["traj_id"], index["geometry_id"])
            if m in self._group]

        # splits
        f_train, f_val, f_test = self.fractions
        split_fracs = (f_train, f_val, 0.0) if split_by == "molecule" else self.fractions
        if split_by == "molecule" and f_train + f_val <= 0:
            raise InputError("split_by='molecule' needs a positive train or val fraction")
        geos = [(m, gid) for m, _, _, gid in all_trajs if m not in held_out]
        self.split_of = assign_splits(geos, split_fracs, seed=self.seed)
        self.split_of.update({(m, gid): "test" for m, _, _, gid in all_trajs if m in held_out})
        self.trajectories = [t for t in all_trajs
                             if split == "all" or self.split_of[(t[0], t[3])] == split]

        # windows
        traj_idx, starts = [], []
        for k, (mol, _, _, _) in enumerate(self.trajectories):
            n_time = self._group[mol]["n_time"]
            s = np.arange(0, n_time - self.window + 1, self.stride, dtype=np.int64)
            traj_idx.append(np.full(len(s), k, dtype=np.int64))
            starts.append(s)
        self._win_traj = np.concatenate(traj_idx) if traj_idx else np.zeros(0, np.int64)
        self._win_start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self._handles: _Handles | None = None
        self._cache: OrderedDict = OrderedDict()

    # -- pickling: never ship handles or caches to workers --------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_handles"] = None
        state["_cache"] = OrderedDict()
        state["_chunk_cache"], state["_chunk_bytes"] = OrderedDict(), 0
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def _arrays(self, mol: str):
        if self._handles is None or self._handles.pid != os.getpid():
            self._handles = _Handles(self.path, self.molecules)  # first use in this process
            self._cache = OrderedDict()
            self._chunk_cache, self._chunk_bytes = OrderedDict(), 0
        return self._handles.arrays[mol]

    def _traj_data(self, k: int) -> dict[str, np.ndarray]:
        """The small arrays of trajectory ``k`` (LRU cached per process)."""
        hit = self._cache.get(k)
        if hit is not None:
            self._cache.move_to_end(k)
            return hit
        mol, row, _, _ = self.trajectories[k]
        arrays = self._arrays(mol)
        data = {name: np.asarray(arrays[name][row]) for name in (
            "dipole", "energy", "field", "overlap", "core_hamiltonian", "positions")}
        if self.cache_trajectories > 0:
            self._cache[k] = data
            while len(self._cache) > self.cache_trajectories:
                self._cache.popitem(last=False)
        return data

    def _rho_window(self, mol: str, row: int, start: int, stop: int) -> np.ndarray:
        """rho[row, start:stop] assembled from decoded time chunks (LRU cached per process).

        Training reads many overlapping windows from each chunk; decoding a chunk once and
        slicing it afterwards removes zarr's per-read overhead (~1 ms a call).
        """
        arr = self._arrays(mol)["rho"]
        if self.cache_chunk_mib <= 0:
            return arr[row, start:stop]
        ct = int(arr.chunks[1])
        parts = []
        for c in range(start // ct, (stop - 1) // ct + 1):
            key = (mol, row, c)
            chunk = self._chunk_cache.get(key)
            if chunk is None:
                chunk = np.asarray(arr[row, c * ct:(c + 1) * ct])
                self._chunk_cache[key] = chunk
                self._chunk_bytes += chunk.nbytes
                while self._chunk_bytes > self.cache_chunk_mib * 2 ** 20 and len(self._chunk_cache) > 1:
                    _, old = self._chunk_cache.popitem(last=False)
                    self._chunk_bytes -= old.nbytes
            else:
                self._chunk_cache.move_to_end(key)
            lo, hi = max(start - c * ct, 0), min(stop - c * ct, len(chunk))
            parts.append(chunk[lo:hi])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- Dataset protocol -----------------------------------------------------------
    def __len__(self) -> int:
        return int(len(self._win_start))

    def window_location(self, index: int) -> tuple[str, int, str, int]:
        """``(molecule, row, traj_id, start)`` of window ``index``."""
        k = int(self._win_traj[index])
        mol, row, traj_id, _ = self.trajectories[k]
        return mol, row, traj_id, int(self._win_start[index])

    def __getitem__(self, index: int) -> dict[str, Any]:
        index = int(index)
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        k = int(self._win_traj[index])
        mol, row, traj_id, _ = self.trajectories[k]
        start = int(self._win_start[index])
        stop = start + self.window
        meta = self._group[mol]
        rho = self._rho_window(mol, row, start, stop)
        # the trajectory's first frame and the frame before the window: a model's reference
        # state and the velocity at the window's first frame (the frame itself at start 0)
        rho_initial = rho[0] if start == 0 else self._rho_window(mol, row, 0, 1)[0]
        rho_previous = rho[0] if start == 0 else self._rho_window(mol, row, start - 1, start)[0]
        small = self._traj_data(k)
        real = self.real_dtype

        def rt(x):
            return torch.from_numpy(np.ascontiguousarray(x)).to(real)

        def it(x):
            return torch.from_numpy(np.ascontiguousarray(x)).to(torch.int64)

        return {
            "rho": torch.from_numpy(np.ascontiguousarray(rho)).to(self.dtype),
            "rho_initial": torch.from_numpy(np.ascontiguousarray(rho_initial)).to(self.dtype),
            "rho_previous": torch.from_numpy(np.ascontiguousarray(rho_previous)).to(self.dtype),
            "field": rt(small["field"][start:stop]),
            "time": rt(meta["time"][start:stop]),
            "dipole": rt(small["dipole"][start:stop]),
            "energy": rt(small["energy"][start:stop]),
            "overlap": rt(small["overlap"]),
            "core_hamiltonian": rt(small["core_hamiltonian"]),
            "positions": rt(small["positions"]),
            "atomic_numbers": it(meta["atomic_numbers"]),
            "basis_atom_index": it(meta["basis_atom_index"]),
            "basis_angular_momentum": it(meta["basis_angular_momentum"]),
            "basis_magnetic_quantum": it(meta["basis_magnetic_quantum"]),
            "n_electrons": torch.tensor(meta["n_electrons"], dtype=torch.int64),
            "molecule": mol,
            "traj_id": traj_id,
            "start": start,
        }

    # -- batching support -----------------------------------------------------------
    def batch_groups(self) -> dict[tuple[int, int, int], np.ndarray]:
        """Window indices grouped by ``(n_basis, n_spin, n_atoms)``: windows of one group
        stack into one batch (same nbf alone is not enough: H2 and H2+ share nbf but not
        n_spin)."""
        keys = np.array([[self._group[m]["n_basis"], self._group[m]["n_spin"],
                          self._group[m]["n_atoms"]] for m, *_ in self.trajectories],
                        dtype=np.int64).reshape(-1, 3)
        out: dict[tuple[int, int, int], list] = {}
        if len(self):
            per_window = keys[self._win_traj]
            uniq, inverse = np.unique(per_window, axis=0, return_inverse=True)
            inverse = inverse.reshape(-1)
            for j, key in enumerate(uniq):
                out[tuple(int(v) for v in key)] = np.flatnonzero(inverse == j)
        return out

    def n_basis_of(self, index: int) -> int:
        """nbf of window ``index``."""
        return self._group[self.trajectories[int(self._win_traj[index])][0]]["n_basis"]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}('{self.path}', split={self.split!r} by "
                f"{self.split_by}, molecules={self.molecules}, window={self.window}, "
                f"stride={self.stride}: {len(self.trajectories)} trajectories, "
                f"{len(self)} windows)")


class EqualBasisBatchSampler(Sampler):
    """Batches of window indices whose windows can be stacked (same nbf, n_spin, atoms).

    For use as ``DataLoader(dataset, batch_sampler=EqualBasisBatchSampler(dataset, B))``.
    Each epoch, the windows of each group are permuted (``shuffle``), cut into batches of
    ``batch_size`` (the last one shorter unless ``drop_last``), and the batches of all
    groups are permuted together. The order is a pure function of ``(seed, epoch)``; call
    :meth:`set_epoch` before each epoch for a new order.
    """

    def __init__(self, dataset: TrajectoryWindows, batch_size: int, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False):
        if int(batch_size) != batch_size or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.groups = dataset.batch_groups()
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches: list[list[int]] = []
        for key in sorted(self.groups):
            idx = self.groups[key]
            if self.shuffle:
                idx = rng.permutation(idx)
            for i in range(0, len(idx), self.batch_size):
                batch = idx[i:i + self.batch_size]
                if self.drop_last and len(batch) < self.batch_size:
                    continue
                batches.append([int(j) for j in batch])
        if self.shuffle:
            order = rng.permutation(len(batches))
            batches = [batches[i] for i in order]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._batches())

    def __len__(self) -> int:
        n = 0
        for idx in self.groups.values():
            n += len(idx) // self.batch_size if self.drop_last else -(-len(idx) // self.batch_size)
        return n


def collate_windows(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack a list of :class:`TrajectoryWindows` items into a batch.

    Tensors are stacked along a new first axis, ints become an int64 tensor, strings stay
    lists. Raises ValueError if tensors of one key differ in shape (windows of different
    molecules: batch with :class:`EqualBasisBatchSampler`).
    """
    if not items:
        raise ValueError("collate_windows: empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        first = values[0]
        if isinstance(first, torch.Tensor):
            shapes = {tuple(v.shape) for v in values}
            if len(shapes) > 1:
                raise ValueError(f"collate_windows: '{key}' has shapes {sorted(shapes)} in one "
                                 "batch; batch windows with EqualBasisBatchSampler")
            out[key] = torch.stack(values)
        elif isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            out[key] = torch.tensor([int(v) for v in values], dtype=torch.int64)
        else:
            out[key] = list(values)
    return out
