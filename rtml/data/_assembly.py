r"""The rtml dataset store: all trajectories of a study in one chunked Zarr v3 store.

:func:`assemble_store` copies trajectory HDF5 files (:mod:`rtml.data._hdf5`) into a Zarr
v3 directory store, one group per molecule, appending to an existing store under a lock,
and rebuilds its index. :func:`rtml.data.store_info` summarises a store and writes its
dataset card (:mod:`rtml.data._card`). Reading is :func:`rtml.data.open_dataset` (xarray)
and :class:`rtml.data.TrajectoryWindows` (PyTorch).

On-disk layout (``format = "rtml-dataset"``, ``format_version = 1``)
----------------------------------------------------------------------
::

    STORE/                       root group: CF/ACDD attributes, provenance, history
      README.md                  dataset card (schema, units, counts, how to open it)
      index/                     one row per committed trajectory, all molecules
        traj_id, molecule, row, n_basis, n_spin, n_time, geometry_id,
        field_kind, field_spec, inputs_sha256, source_file           (n_rows,)
      lih/                       one group per molecule (fixed basis, atoms, time grid)
        rho                      (traj, time, spin, ao_i, ao_j)  complex128 | complex64
        fock (optional)          (traj, time, spin, ao_i, ao_j)  same dtype as rho, hartree
        dipole, field            (traj, time, xyz)               float64
        energy                   (traj, time)                    float64
        time                     (time,)                         float64
        traj_id, geometry_id, field_kind, field_spec, inputs_sha256,
        source_file, provenance  (traj,)                         string
        field_amplitude, field_omega, field_t0, field_sigma, field_duration,
        kick_strength, ground_state_energy   (traj,)             float64 (NaN: n/a)
        field_polarization, dipole_origin, ground_state_dipole  (traj, xyz)
        positions                (traj, atom, xyz)               float64, angstrom
        overlap, core_hamiltonian (traj, ao_i, ao_j)             float64
        rho_ground, fock_ground  (traj, spin, ao_i, ao_j)        float64 (NaN: not recorded)
        atomic_numbers           (atom,)                         int64
        basis_atom_index, basis_angular_momentum, basis_magnetic_quantum  (ao,) int64

The arrays are the rows of :data:`rtml.data._schema.PER_TRAJECTORY` and
:data:`~rtml.data._schema.STATIC`: one per quantity of the trajectory file schema, plus the
columns computed here from a file's metadata (ids, field parameters, provenance). Every
array carries ``dimension_names`` (read by xarray as dims), ``units`` and ``long_name``
attributes; the group attribute ``coordinates`` names the variables xarray should treat as
coordinates (everything except rho, fock, dipole, energy, field).

``fock`` is the AO Fock matrix F[P(t)] of each frame without the field term (complex
Hermitian), as the engine accepted it (see :mod:`rtml.data._hdf5`); ``rho_ground`` and
``fock_ground`` are the SCF ground state P0 of the trajectory's geometry and F0 = F[P0]
(same Fock build), so ``fock - fock_ground`` is the two-electron change of each frame. A
group stores ``fock`` only if all its trajectories have it (group attribute ``has_fock``):
the first file of a group decides, and a later file that disagrees (a file without Fock
frames, e.g. an imported NWChem one, for a group that has them, or the reverse) is an
:class:`~rtml._errors.InputError`. ``rho_ground``/``fock_ground`` are NaN for files without
a recorded ground state; a group written by an older rtml without these two arrays gets
them on its next append (NaN for its earlier rows). A quantity added to the schema later
follows the same rules (``if_absent`` of its :class:`~rtml.data._schema.StoreVar`).

Chunks and shards
-----------------
``rho`` (and ``fock``, identically) is stored with the sharding codec: one shard holds one
whole trajectory, shard shape ``(1, n_chunks * ct, n_spin, nbf, nbf)``, split along time into inner chunks
of ``ct`` frames with the full spin/AO extent, ``ct`` chosen so that one chunk is at most
``chunk_mib`` MiB and the chunks tile the trajectory with < ``n_chunks`` frames of padding.
One file per trajectory keeps the file count low and makes an append touch only new files;
the inner chunks let a reader decompress only the frames of a time window. Every other
per-trajectory array is chunked one trajectory per chunk (full extent of the other dims),
so rows of different trajectories never share a chunk and writing one never rewrites
another (concurrent writers to shared chunks race).

Compression: ``ZstdCodec(level=3)`` on every array. Measured on a propagated LiH/6-31G
PBE0 trajectory (601 frames, 1.1 MiB of complex128, 2 cores, OMP_NUM_THREADS=1):
zstd-3 stores 72-82 % of the raw bytes (it finds the P_ij = conj(P_ji) repeats), write
16-21 ms, read 3-4 ms; zstd-1 88-92 %; Blosc(zstd, shuffle, typesize 8) 89-92 %, write
8 ms, read 2 ms; no compression 100 %, read 1.4 ms. zstd-3 saves a fifth of the disk for a
decode cost of ~3 ms per MiB.

Validation, appending and atomicity
-----------------------------------
Every file that would be added is first checked as ``rtml validate`` checks it
(:func:`rtml.data.validate_trajectory`: schema, finite values, Hermiticity, trace,
idempotency, time grid, energy, a response above numerical noise); one that fails stops the
assembly, with one line naming the file and the failed checks, before anything is written.
A trajectory that fails only ``response`` (static although a field acts) is accepted with
``allow_static``.

A new store is built at ``.{name}.tmp-{pid}`` beside ``store_path`` and renamed into place,
so ``store_path`` is either absent or complete; such a temporary left by a killed process
(whose pid no longer runs) is removed by the next assembly. Appending to an existing store
(under an exclusive ``flock`` on its directory) never rewrites committed rows: a trajectory
whose (``traj_id``, ``inputs_sha256``) pair is already committed is skipped; new ones are
written into rows ``n, n + 1, ...`` of arrays grown along ``traj`` (growing rewrites only
``zarr.json``), and all of them are committed at once, by one write of the root attributes
(the commit record of :mod:`rtml.data._commit`, with the counts and ``dataset_sha256``). An
append is all or nothing: one that fails or is killed before that write commits nothing,
and the rows it wrote are overwritten by the next. The groups' ``n_committed`` attributes,
the ``index`` group and the dataset card are rewritten after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field as dc_field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Container, Iterable

import numpy as np
import zarr
from zarr.codecs import ZstdCodec
from zarr.core.sync import sync

from rtml import __version__
from rtml._atomic import remove_stale_temporaries
from rtml._errors import InputError
from rtml._progress import Progress
from rtml._provenance import provenance
from rtml.data import _hdf5
from rtml.data._card import write_card
from rtml.data._commit import (INDEX_ROWS_ATTR, committed_counts, dataset_sha256,
                               index_from_groups, read_index)
from rtml.data._schema import (AO_ORDER_CONVENTION, DATASETS, DENSITY_CONVENTION,
                               DIPOLE_ORIGIN_CONVENTION, GROUP_OPTIONAL, GROUP_SCALARS,
                               INDEX_COLUMNS, INDEX_GROUP, PER_TRAJECTORY, RHO_DTYPES, STATIC,
                               STORE_FORMAT_NAME, STORE_FORMAT_VERSION, UNITS_NOTE, ZSTD_LEVEL,
                               Variable, check_is_store, dataset, evaluate_shape, strings)
from rtml.data._validate import validate_trajectory
from rtml.fields import field_from_json
from rtml.units import UNITS

log = logging.getLogger("rtml.data")

#: File quantities read before any write: the static arrays, and the positions that name a
#: geometry when the file does not.
_SCANNED = tuple(v.attr for v in STATIC) + ("positions_angstrom",)


# --------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """What the assembler needs to know about one trajectory file before writing it."""

    path: Path
    molecule: str
    scalars: dict[str, Any]          # GROUP_SCALARS
    static: dict[str, np.ndarray]    # the STATIC arrays, by name
    geometry_id: str
    inputs_sha256: str
    provenance: dict
    traj_id: str = ""
    has: dict[str, bool] = dc_field(default_factory=dict)  # GROUP_OPTIONAL in the file


def _scan(path: Path) -> _Source:
    """Read a trajectory file's attributes and small arrays (not the frames)."""
    header = _hdf5.read_header(path, _SCANNED)
    density = dataset("density").h5_names[0]
    shape = header.shapes.get(density)
    if shape is None or len(shape) != 4:
        raise InputError(f"{path}: missing or malformed dataset {density!r}")
    attrs = header.attrs
    prov = _hdf5.decode_attribute(path, "provenance", attrs["provenance"])
    molecule = str(attrs["molecule"])
    if (not molecule or "/" in molecule or molecule.startswith((".", "__"))
            or molecule == INDEX_GROUP):
        raise InputError(f"{path}: molecule name {molecule!r} cannot name a store group")
    dims = {"n_basis": int(shape[-1]), "n_spin": int(shape[1]),
            "n_atoms": int(len(header.arrays["atomic_numbers"])), "n_time": int(shape[0])}
    scalars = {key: dims[key] if key in dims else _hdf5.decode_attribute(path, key, attrs[key])
               for key in GROUP_SCALARS}
    geometry_id = attrs.get("geometry_id")
    if geometry_id is None:  # older files: name the geometry by its coordinates
        digest = hashlib.sha256(np.ascontiguousarray(header.arrays["positions_angstrom"],
                                                     dtype="<f8").tobytes()).hexdigest()
        geometry_id = f"pos-{digest[:12]}"
    inputs_sha = prov.get("inputs_sha256") if isinstance(prov, dict) else None
    if not inputs_sha:  # no input hash recorded: fall back to the file's bytes
        inputs_sha = "file-" + _file_sha256(path)
    src = _Source(
        path=path, molecule=molecule, scalars=scalars,
        static={v.name: header.arrays[v.attr] for v in STATIC},
        geometry_id=str(geometry_id), inputs_sha256=str(inputs_sha),
        provenance=prov if isinstance(prov, dict) else {},
        has={v.name: all(n in header.shapes for n in v.source.h5_names)
             for v in GROUP_OPTIONAL},
    )
    src.traj_id = f"{molecule}/{src.geometry_id}/{path.stem}"
    return src


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class _GroupRef:
    """The reference every file of one molecule group must agree with."""

    scalars: dict[str, Any]
    static: dict[str, np.ndarray]
    has: dict[str, bool]


def _check_against(src: _Source, ref: _GroupRef, origin: str) -> None:
    """Raise :class:`InputError` naming ``src.path`` if it does not fit the group."""
    mol = src.molecule
    for key in ("n_basis", "n_spin", "n_atoms", "n_time"):
        if src.scalars[key] != ref.scalars[key]:
            raise InputError(f"{src.path}: {key} = {src.scalars[key]} but molecule group "
                             f"'{mol}' has {key} = {ref.scalars[key]} ({origin}); a group "
                             "holds one molecule, one basis and one time grid")
    for spec in (d.store for d in DATASETS if d.store.static):
        got, want = src.static[spec.name], ref.static[spec.name]
        if not np.array_equal(got, want):
            raise InputError(f"{src.path}: " + spec.mismatch.format(
                name=spec.name, mol=mol, origin=origin, got=got.tolist(), want=want.tolist()))
    for var in GROUP_OPTIONAL:
        has = src.has[var.name]
        if has != ref.has[var.name]:
            files = var.source.path + ("_*" if var.source.kind == "complex" else "")
            raise InputError(f"{src.path}: {'has' if has else 'lacks'} {var.label} ({files}) "
                             f"but molecule group '{mol}' "
                             f"{'does not store' if has else 'stores'} them ({origin}); "
                             f"a group stores {var.name} only if all its trajectories have it")
    for key in GROUP_SCALARS:
        if src.scalars[key] != ref.scalars[key]:
            raise InputError(f"{src.path}: {key} = {src.scalars[key]!r} but molecule group "
                             f"'{mol}' has {key} = {ref.scalars[key]!r} ({origin})")


def _field_columns(field_spec: dict) -> dict[str, Any]:
    """Per-trajectory field columns from a file's ``field_spec`` JSON dict."""
    nan = float("nan")
    kind = str(field_spec.get("kind", "unknown"))
    try:
        spec = field_from_json(field_spec).to_spec()  # canonical
    except Exception:  # not an rtml.fields dict (foreign or older file): keep what it says
        spec = field_spec.get("spec") or json.dumps(field_spec, sort_keys=True)

    def num(key):
        value = field_spec.get(key)
        try:
            return nan if value is None else float(value)
        except (TypeError, ValueError):
            return nan

    pol = field_spec.get("polarization", field_spec.get("direction"))
    try:
        pol = np.asarray(pol, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        pol = np.full(3, nan)
    amplitude = num("amplitude")
    if math.isnan(amplitude):
        amplitude = num("strength")
    return {"field_kind": kind, "field_spec": str(spec), "field_amplitude": amplitude,
            "field_omega": num("omega"), "field_polarization": pol, "field_t0": num("t0"),
            "field_sigma": num("sigma"), "field_duration": num("duration")}


def _row_values(src: _Source, traj, rho_dtype: np.dtype,
                names: Container[str]) -> dict[str, Any]:
    """Values of the per-trajectory arrays ``names`` for one trajectory (``traj`` as read):
    the computed columns, and the file quantities (NaN for an optional one it lacks)."""
    nan = float("nan")
    extra = traj.extra_attrs
    values = _field_columns(traj.field_spec if isinstance(traj.field_spec, dict) else {})
    kick = extra.get("kick_strength")
    if kick is None:
        kick = values["field_amplitude"] if values["field_kind"] in ("kick", "delta_kick") else 0.0
    gs_energy = extra.get("ground_state_energy", extra.get("e_ground"))
    gs_dipole = extra.get("ground_state_dipole", extra.get("dipole_ground"))
    try:
        gs_dipole = np.asarray(gs_dipole, dtype=np.float64).reshape(3)
    except (TypeError, ValueError):
        gs_dipole = np.full(3, nan)
    values.update(
        traj_id=src.traj_id, geometry_id=src.geometry_id, kick_strength=float(kick),
        ground_state_energy=nan if gs_energy is None else float(gs_energy),
        ground_state_dipole=gs_dipole, inputs_sha256=src.inputs_sha256,
        source_file=str(src.path.resolve()),
        provenance=json.dumps(traj.provenance, sort_keys=True, default=str),
    )
    for var in PER_TRAJECTORY:
        if var.source is not None and var.name in names:
            values[var.name] = _row_value(var, getattr(traj, var.attr), rho_dtype, traj.dims)
    return values


def _row_value(var: Variable, value, rho_dtype: np.dtype, dims: dict[str, int]) -> np.ndarray:
    """A file quantity as stored in ``var`` (NaN of its shape for ``None``)."""
    if value is None:
        return np.full(evaluate_shape(var.source.shape, dims), np.nan)
    if var.dtype == "rho":
        return np.asarray(value).astype(rho_dtype, copy=False)
    return np.asarray(value, dtype=var.dtype)


# --------------------------------------------------------------------------- layout


def time_chunking(n_time: int, frame_bytes: int, chunk_mib: float) -> tuple[int, int]:
    """Inner chunk length ``ct`` (frames) and shard length along time for ``rho``.

    ``ct`` frames are at most ``chunk_mib`` MiB (at least one frame); the chunks tile
    ``n_time`` with fewer than ``n_chunks`` frames of padding. Returns ``(ct, n_chunks * ct)``.
    """
    max_frames = max(1, int(chunk_mib * 2 ** 20 // max(frame_bytes, 1)))
    n_chunks = -(-max(n_time, 1) // max_frames)
    ct = -(-max(n_time, 1) // n_chunks)
    return ct, n_chunks * ct


def _compressors():
    return [ZstdCodec(level=ZSTD_LEVEL, checksum=False)]


def _zarr_dtype(var: Variable, rho_dtype: np.dtype):
    """The dtype zarr creates ``var`` with: ``str`` for strings, the store's rho dtype."""
    return {"string": str, "rho": rho_dtype}.get(var.dtype, var.dtype)


def _fill(dtype) -> Any:
    if dtype is str:
        return ""
    kind = np.dtype(dtype).kind
    return {"f": np.nan, "c": complex(np.nan, np.nan), "i": 0}[kind]


def _coordinates() -> str:
    """The group attribute ``coordinates``: every array but the data variables and the
    ``time`` dimension coordinate."""
    return " ".join(v.name for v in PER_TRAJECTORY + STATIC
                    if not v.data and v.name != "time")


def _create_group(root, src: _Source, rho_dtype: np.dtype, chunk_mib: float):
    """Create the molecule group of ``src`` with zero trajectories and its static arrays."""
    s = src.scalars
    dims = {"traj": 0, "time": s["n_time"], "spin": s["n_spin"], "ao_i": s["n_basis"],
            "ao_j": s["n_basis"], "atom": s["n_atoms"], "ao": s["n_basis"], "xyz": 3}
    frame_bytes = s["n_spin"] * s["n_basis"] ** 2 * rho_dtype.itemsize
    ct, shard_t = time_chunking(s["n_time"], frame_bytes, chunk_mib)
    attrs = {
        "molecule": src.molecule, **s, "rho_dtype": rho_dtype.name,
        **{f"has_{name}": has for name, has in src.has.items()},
        "chunk_mib": float(chunk_mib), "n_committed": 0,
        "units": {**UNITS, "note": UNITS_NOTE},
        "dipole_origin_convention": DIPOLE_ORIGIN_CONVENTION,
        "ao_order_convention": AO_ORDER_CONVENTION,
        "density_convention": DENSITY_CONVENTION,
        "coordinates": _coordinates(),
    }
    g = root.create_group(src.molecule, overwrite=True, attributes=attrs)
    for var in PER_TRAJECTORY:
        if var.if_absent != "group" or src.has[var.name]:
            _create_per_traj_array(g, var, dims, rho_dtype, ct, shard_t)
    for var in STATIC:
        data = np.asarray(src.static[var.name], dtype=var.dtype)
        a = g.create_array(var.name, shape=data.shape, chunks=data.shape or (1,),
                           dtype=var.dtype, fill_value=_fill(var.dtype),
                           compressors=_compressors(), dimension_names=list(var.dims),
                           attributes={"units": var.units, "long_name": var.long_name})
        a[...] = data
    return g


def _create_per_traj_array(g, var: Variable, dims: dict[str, int], rho_dtype: np.dtype,
                           ct: int, shard_t: int):
    """Create one per-trajectory array of group ``g``: one trajectory per chunk, or for a
    ``frame_chunks`` array one per shard, in inner chunks of ``ct`` frames."""
    shape = tuple(dims[d] for d in var.dims)
    dtype = _zarr_dtype(var, rho_dtype)
    chunks = (1,) + shape[1:]
    kwargs: dict[str, Any] = {}
    if var.frame_chunks:
        chunks = (1, ct) + shape[2:]
        kwargs["shards"] = (1, shard_t) + shape[2:]
    a_attrs = {"units": var.units, "long_name": var.long_name}
    if var.data:
        a_attrs["coordinates"] = " ".join(v.name for v in PER_TRAJECTORY if not v.data)
    return g.create_array(var.name, shape=shape, chunks=chunks, dtype=dtype,
                          fill_value=_fill(dtype), compressors=_compressors(),
                          dimension_names=list(var.dims), attributes=a_attrs, **kwargs)


def _add_missing_arrays(g) -> None:
    """Give a group written by an older rtml the per-trajectory arrays it lacks (today
    ``rho_ground``, ``fock_ground``), filled with NaN for its existing rows."""
    missing = [var for var in PER_TRAJECTORY if var.if_absent != "group" and var.name not in g]
    if not missing:
        return
    ga = g.attrs.asdict()
    rho = g["rho"]
    dims = {"traj": rho.shape[0], "time": ga["n_time"], "spin": ga["n_spin"],
            "ao_i": ga["n_basis"], "ao_j": ga["n_basis"], "atom": ga["n_atoms"],
            "ao": ga["n_basis"], "xyz": 3}
    for var in missing:
        _create_per_traj_array(g, var, dims, rho.dtype, rho.chunks[1], rho.shards[1])
    g.attrs["coordinates"] = _coordinates()
    log.info("group '%s': added %s (NaN for its %d earlier rows)", ga.get("molecule"),
             ", ".join(var.name for var in missing), dims["traj"])


def _group_ref(g) -> _GroupRef:
    attrs = g.attrs.asdict()
    return _GroupRef(
        scalars={k: attrs[k] for k in GROUP_SCALARS},
        static={var.name: np.asarray(g[var.name][...]) for var in STATIC},
        has={var.name: var.name in g for var in GROUP_OPTIONAL},
    )


# --------------------------------------------------------------------------- assembly


def assemble_store(trajectory_paths: Iterable[str | os.PathLike], store_path: str | os.PathLike,
                   *, dtype: str | None = "complex128", chunk_mib: float = 1.0,
                   progress: Callable[[int], None] | bool | None = None,
                   allow_static: bool = False) -> dict[str, Any]:
    """Copy trajectory HDF5 files into the Zarr dataset store at ``store_path``.

    Every file to be added must pass :func:`rtml.data.validate_trajectory` first. A new
    store is built beside ``store_path`` and renamed into place. With an existing store,
    only trajectories whose (``traj_id``, ``inputs_sha256``) pair is not committed yet are
    appended, all at once or none; committed rows and their chunk files are never
    rewritten. See the module docstring for the layout, chunking and commit protocol.

    Args:
        trajectory_paths: rtml trajectory ``.h5`` files (see :func:`rtml.data.write_trajectory`).
        store_path: the store directory (conventionally ``*.zarr``); its parent must exist.
            An empty directory there is replaced by a new store.
        dtype: storage dtype of ``rho``, ``"complex128"`` (exact) or ``"complex64"``.
            ``None``: the existing store's, or complex128 for a new store. Appending with a
            dtype other than the store's is an error.
        chunk_mib: largest inner chunk of ``rho`` in MiB (new molecule groups only).
        progress: ``None`` for a :class:`rtml._progress.Progress` bar/log lines, ``False``
            for silence, or a callable receiving the number of trajectories written.
        allow_static: accept trajectories that fail only the ``response`` check (no
            response above numerical noise although a field acts); refused by default.

    Returns:
        ``{"store", "created", "added", "skipped", "molecules": {name: {"added",
        "skipped", "n_trajectories"}}}``.

    Raises:
        InputError: no or unreadable files, a file that fails validation (the message
            names it and the failed checks), a file whose nbf, atoms, AO labels, time grid or
            settings disagree with its molecule group (the message names the file), a
            ``traj_id`` already in the store with other inputs, an existing path that is not
            an rtml store, a bad ``dtype`` or ``chunk_mib``.
    """
    paths = [Path(p) for p in trajectory_paths]
    if not paths:
        raise InputError("no trajectory files to assemble")
    if dtype is not None and str(dtype) not in RHO_DTYPES:
        raise InputError(f"dtype must be one of {', '.join(RHO_DTYPES)}, got {dtype!r}")
    if not (isinstance(chunk_mib, (int, float)) and math.isfinite(chunk_mib) and chunk_mib > 0):
        raise InputError(f"chunk_mib must be a positive number, got {chunk_mib!r}")
    store_path = Path(store_path)
    sources = [_scan(p) for p in paths]

    empty_dir = (store_path.is_dir() and not store_path.is_symlink()
                 and not any(store_path.iterdir()))
    if store_path.parent.is_dir():
        remove_stale_temporaries(store_path.parent, store_path.name)
    if (store_path.exists() or store_path.is_symlink()) and not empty_dir:
        check_is_store(store_path)
        with _locked(store_path):
            return _assemble_into(store_path, sources, dtype, chunk_mib, progress, False,
                                  allow_static=allow_static)
    if not store_path.parent.is_dir():
        raise InputError(f"output directory '{store_path.parent}' does not exist")
    tmp = store_path.with_name(f".{store_path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = _assemble_into(tmp, sources, dtype, chunk_mib, progress, True,
                                 name=store_path.name, allow_static=allow_static)
        try:
            os.rename(tmp, store_path)  # atomic; also replaces an empty directory
        except OSError:
            if not store_path.exists():
                raise
            # another process created the store meanwhile: append to it instead
            shutil.rmtree(tmp, ignore_errors=True)
            log.info("%s appeared while assembling; appending to it", store_path)
            check_is_store(store_path)
            with _locked(store_path):
                return _assemble_into(store_path, sources, dtype, chunk_mib, False, False,
                                      allow_static=allow_static)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["store"] = str(store_path)
    return summary


@contextlib.contextmanager
def _locked(store_path: Path):
    """Exclusive ``flock`` on the store directory for the duration of an append."""
    fd = os.open(store_path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another process assembling into %s", store_path)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _concurrently(coroutines) -> None:
    """Run zarr ``AsyncArray`` operations concurrently on zarr's event loop (one
    round trip instead of one per array)."""
    coroutines = list(coroutines)

    async def _all():
        await asyncio.gather(*coroutines)

    if coroutines:
        sync(_all())


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _assemble_into(path: Path, sources: list[_Source], dtype: str | None, chunk_mib: float,
                   progress, created: bool, name: str | None = None,
                   allow_static: bool = False) -> dict[str, Any]:
    name = name or path.name
    if created:
        path.mkdir()
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(_new_root_attrs())
    else:
        root = zarr.open_group(str(path), mode="r+", zarr_format=3)
        _remove_leftovers(path)
    rattrs = root.attrs.asdict()
    store_dtype = rattrs.get("rho_dtype")
    if store_dtype is None:
        store_dtype = dtype or "complex128"
    elif dtype is not None and dtype != store_dtype:
        raise InputError(f"store '{path}' holds rho as {store_dtype}; cannot append as {dtype}")
    rho_dtype = np.dtype(store_dtype)

    # -- plan and checks, before any write
    committed = committed_counts(root)
    plan, skipped = _plan(root, committed, sources)
    new = [src for srcs in plan.values() for src in srcs]
    log.debug("validate %d new trajectory file(s)", len(new))
    _validate_all(new, allow_static)
    _check_groups(root, name, committed, sources)
    n_add = sum(len(v) for v in plan.values())
    n_skip = sum(skipped.values())
    log.info("assemble %s: %d new trajector%s, %d already present", name, n_add,
             "y" if n_add == 1 else "ies", n_skip)

    # -- write the new rows, uncommitted
    counts = _write_rows(root, plan, committed, rho_dtype, chunk_mib,
                         _reporter(progress, n_add, name))

    # -- commit: one write of the root attributes; then the copies for plain readers
    index = index_from_groups(root, counts, read_index(root))
    _commit(root, rattrs, counts, index, plan, rho_dtype,
            entry=f"+{n_add} trajectories ({n_skip} already present) from "
                  f"{len(sources)} file(s)")
    for mol, n in counts.items():
        if root[mol].attrs.get("n_committed") != n:
            root[mol].attrs["n_committed"] = n
    _write_index(root, index)
    write_card(path, root, name)
    per_mol = {m: {"added": len(plan.get(m, [])), "skipped": skipped.get(m, 0),
                   "n_trajectories": counts[m]}
               for m in list(dict.fromkeys(list(counts) + list(skipped)))}
    return {"store": str(path), "created": created, "added": n_add, "skipped": n_skip,
            "molecules": per_mol}


def _plan(root, committed: dict[str, int],
          sources: list[_Source]) -> tuple[dict[str, list[_Source]], dict[str, int]]:
    """What each file adds: ``({molecule: new sources}, {molecule: skipped count})``.

    Raises:
        InputError: a file whose ``traj_id`` is committed with other inputs.
    """
    known: dict[str, str] = {}  # traj_id -> inputs_sha256 (committed or planned)
    for mol, n in committed.items():
        if n:
            g = root[mol]
            known.update(zip(strings(g["traj_id"][:n]), strings(g["inputs_sha256"][:n])))
    plan: dict[str, list[_Source]] = {}
    skipped: dict[str, int] = {}
    for src in sources:
        mol = src.molecule
        if src.traj_id in known:
            if known[src.traj_id] != src.inputs_sha256:
                raise InputError(f"{src.path}: trajectory id '{src.traj_id}' is already in "
                                 f"the store with different inputs (inputs_sha256 "
                                 f"{known[src.traj_id][:12]}... vs {src.inputs_sha256[:12]}...); "
                                 "committed trajectories are never replaced: rename the file "
                                 "or assemble a new store")
            skipped[mol] = skipped.get(mol, 0) + 1
            continue
        known[src.traj_id] = src.inputs_sha256
        plan.setdefault(mol, []).append(src)
    return plan, skipped


def _check_groups(root, name: str, committed: dict[str, int], sources: list[_Source]) -> None:
    """:class:`InputError` naming the first file that does not fit its molecule group (the
    store's, or for a new molecule the first file's)."""
    refs = {mol: (_group_ref(root[mol]), f"in store '{name}'") for mol in committed}
    for src in sources:
        if src.molecule not in refs:
            refs[src.molecule] = (_GroupRef(src.scalars, src.static, src.has),
                                  f"from {src.path}")
        _check_against(src, *refs[src.molecule])


def _validate_all(sources: list[_Source], allow_static: bool) -> None:
    """:func:`rtml.data.validate_trajectory` on each file; :class:`InputError` naming the
    first that fails (one that fails only ``response`` passes with ``allow_static``)."""
    for src in sources:
        report = validate_trajectory(src.path)
        failed = report.failed
        if allow_static and [c.name for c in failed] == ["response"]:
            log.warning("%s: static trajectory accepted (allow_static): %s", src.path,
                        failed[0].message)
            continue
        if not failed:
            continue
        if [c.name for c in failed] == ["response"]:
            raise InputError(f"{src.path}: fails check 'response': {failed[0].message}; pass "
                             "--allow-static (allow_static=True) to store static trajectories")
        raise InputError(f"{src.path}: fails validation ({', '.join(c.name for c in failed)}): "
                         f"{failed[0].message}; 'rtml validate {src.path}' shows every check")


def _reporter(progress, n_add: int, name: str):
    """The progress sink of :func:`assemble_store`'s ``progress`` argument: a context
    manager yielding a callable (or None) that receives the number of rows written."""
    if progress is None:
        return contextlib.closing(Progress(max(n_add, 1), f"assemble {name}",
                                           unit="trajectories"))
    return contextlib.nullcontext(progress if callable(progress) else None)


def _write_rows(root, plan: dict[str, list[_Source]], committed: dict[str, int],
                rho_dtype: np.dtype, chunk_mib: float, reporter) -> dict[str, int]:
    """Write the planned trajectories into rows ``committed[m], ...`` of their groups
    (creating new groups, growing or trimming the arrays) without committing them.

    Returns the counts after the commit to come, ``{molecule: rows}``, store order.
    """
    counts = dict(committed)
    done = 0
    with reporter as report:
        for mol, srcs in plan.items():
            if mol in committed:
                g = root[mol]
            else:  # listed in the root at the commit
                g = _create_group(root, srcs[0], rho_dtype, chunk_mib)
            _add_missing_arrays(g)
            arrays = {var.name: g[var.name] for var in PER_TRAJECTORY if var.name in g}
            row = counts.get(mol, 0)
            counts[mol] = row + len(srcs)
            # grow (or trim leftovers of an interrupted append); only zarr.json changes
            _concurrently(a.async_array.resize((counts[mol],) + a.shape[1:])
                          for a in arrays.values() if a.shape[0] != counts[mol])
            for src in srcs:
                traj = _hdf5.read_trajectory(src.path)
                values = _row_values(src, traj, rho_dtype, arrays)
                _concurrently(a.async_array.setitem(row, values[var])
                              for var, a in arrays.items())
                row += 1
                done += 1
                if report is not None:
                    report(done)
    return counts


def _commit(root, rattrs: dict[str, Any], counts: dict[str, int], index: dict[str, list],
            plan: dict[str, list[_Source]], rho_dtype: np.dtype, entry: str) -> None:
    """Commit the rows of ``counts``: one write of the root attributes (the commit record
    of :mod:`rtml.data._commit`, history, provenance)."""
    now = _utc_now()
    history = str(rattrs.get("history", "")).strip()
    digest = dataset_sha256(index)
    source_versions = dict(rattrs.get("source_software", {}))
    for srcs in plan.values():
        for src in srcs:
            for key in ("rtml_version", "rtml_git_commit", "pyscf_version", "engine"):
                if key in src.provenance:
                    vals = set(source_versions.get(key, []))
                    vals.add(str(src.provenance[key]))
                    source_versions[key] = sorted(vals)
    root.attrs.update({
        "history": (history + f"\n{now} rtml {__version__} dataset assemble: {entry}").strip(),
        "date_modified": now,
        "molecules": list(counts),
        "n_committed": dict(counts),
        "n_trajectories": int(sum(counts.values())),
        "n_trajectories_per_molecule": dict(counts),
        "rho_dtype": rho_dtype.name,
        "dataset_sha256": digest,
        "provenance": provenance(digest, zarr_version=zarr.__version__),
        "source_software": source_versions,
    })


def _remove_leftovers(path: Path) -> None:
    """Remove what a killed assembly leaves inside the store: the dataset card's temporary
    and the ``*.partial`` files zarr writes before renaming them into place (called under
    the store's lock: no writer is active)."""
    remove_stale_temporaries(path, "README.md")
    for leftover in path.rglob("*.partial"):
        leftover.unlink(missing_ok=True)
        log.info("removed '%s', left by an interrupted assembly", leftover)


def _new_root_attrs() -> dict[str, Any]:
    now = _utc_now()
    return {
        "format": STORE_FORMAT_NAME,
        "format_version": STORE_FORMAT_VERSION,
        "Conventions": "CF-1.10, ACDD-1.3",
        "title": "rtml RT-TDDFT trajectory dataset",
        "summary": ("Real-time TDDFT trajectories (one-electron AO density matrix P(t), "
                    "dipole, energy and applied field) of small molecules in external "
                    "electric fields, propagated with rtml on PySCF; one group per molecule, "
                    "one row per trajectory, for training machine-learning models."),
        "source": "rtml RT-TDDFT engine (PySCF integrals, grids and XC) trajectory files",
        "keywords": "RT-TDDFT, density matrix, electron dynamics, machine learning",
        "date_created": now,
        "date_modified": now,
        "history": "",
        "molecules": [],
        "n_trajectories": 0,
        "units": {**UNITS, "note": UNITS_NOTE},
        "ao_order_convention": AO_ORDER_CONVENTION,
        "dipole_origin_convention": DIPOLE_ORIGIN_CONVENTION,
        "density_convention": DENSITY_CONVENTION,
        "commit_protocol": ("the root attribute n_committed {molecule: rows} is the commit "
                            "record: rows of a molecule group at or beyond it are uncommitted "
                            "and must be ignored; the groups' n_committed attributes and the "
                            "index group are copies written after it (they may lag, never "
                            "lead)"),
        "n_committed": {},
    }


def _write_index(root, index: dict[str, list]) -> None:
    """Rewrite the ``index`` group from ``index`` (columns of :data:`INDEX_COLUMNS`). Its
    attribute ``n_rows`` marks it complete (see :mod:`rtml.data._commit`): cleared before
    anything is deleted, set after the last column is written."""
    with contextlib.suppress(KeyError):
        root[INDEX_GROUP].attrs[INDEX_ROWS_ATTR] = None
    ig = root.create_group(INDEX_GROUP, overwrite=True,
                           attributes={"description": "one row per committed trajectory; "
                                       "row is the trajectory's position in its molecule group"})
    n_rows = len(index["traj_id"])
    for name, kind in INDEX_COLUMNS:
        dtype = str if kind is str else kind
        a = ig.create_array(name, shape=(n_rows,), chunks=(max(n_rows, 1),), dtype=dtype,
                            fill_value=_fill(dtype), compressors=_compressors(),
                            dimension_names=["row_index"])
        if n_rows:
            a[:] = (np.array(index[name], dtype=object) if kind is str
                    else np.asarray(index[name], dtype=kind))
    ig.attrs[INDEX_ROWS_ATTR] = n_rows
