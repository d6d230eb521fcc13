r"""The rtml dataset store: all trajectories of a study in one chunked Zarr v3 store.

:func:`assemble_store` copies trajectory HDF5 files (:mod:`rtml.data._hdf5`) into a Zarr
v3 directory store, one group per molecule, appending to an existing store under a lock,
and rebuilds its index. :func:`rtml.data.store_info` summarises a store; the dataset card
(:mod:`rtml.data._card`) is written beside it. Reading is :func:`rtml.data.open_dataset`
(xarray) and :class:`rtml.data.TrajectoryWindows` (PyTorch); plain xarray reads it too
(``xr.open_zarr(STORE, group="lih")``, ``xr.open_datatree(STORE, engine="zarr")``), without
warnings, through the consolidated metadata.

On-disk layout (``format = "rtml-dataset"``, ``format_version = 2``)
----------------------------------------------------------------------
::

    STORE.README.md              dataset card (schema, units, counts, how to open it)
    STORE/                       root group: CF/ACDD attributes, provenance, history,
                                 consolidated metadata of every group and array
      index/                     one row per committed trajectory, all molecules
        traj_id, molecule, row, n_basis, n_spin, n_time, geometry_id, field_kind,
        field_spec, inputs_sha256, source_file, source_sha256        (n_rows,)
      lih/                       one group per molecule (fixed basis, atoms, time grid)
        rho                      (traj_id, time, spin, ao_i, ao_j)  complex128 | complex64
        fock (optional)          (traj_id, time, spin, ao_i, ao_j)  same dtype as rho, hartree
        dipole, field            (traj_id, time, xyz)               float64
        energy                   (traj_id, time)                    float64
        traj_id                  (traj_id,)                         string, the dim's labels
        time, step               (time,)                            float64, int64
        xyz, spin                (xyz,), (spin,)                    string labels
        geometry_id, field_kind, field_spec, inputs_sha256,
        source_file, source_sha256, provenance  (traj_id,)          string
        field_amplitude, field_omega, field_t0, field_sigma, field_duration,
        kick_strength, ground_state_energy   (traj_id,)             float64 (NaN: n/a)
        field_polarization, dipole_origin, ground_state_dipole  (traj_id, xyz)
        positions                (traj_id, atom, xyz)               float64, angstrom
        overlap, core_hamiltonian (traj_id, ao_i, ao_j)             float64
        rho_ground, fock_ground  (traj_id, spin, ao_i, ao_j)        float64 (NaN: not recorded)
        atomic_numbers           (atom,)                            int64
        ao_i_atom, ao_i_l, ao_i_m (ao_i,); ao_j_atom, ao_j_l, ao_j_m (ao_j,)  int64

Labels. ``traj_id``, ``time``, ``xyz`` (x, y, z) and ``spin`` (total, or alpha and beta)
are dimension coordinates: ``ds.sel(traj_id="lih/eq/t00-kick_0.001_z", time=0.6,
xyz="z")`` works in plain xarray. ``time`` is exact: frame ``k`` was propagated for
``step[k]`` steps and ``time[k] = step[k] * dt`` is computed in decimal from ``dt``'s
shortest representation and rounded once to float64 (:func:`_frame_steps`), so it is the
float a user types (0.6, not 0.6000000000000001). The basis labels of each AO (atom, l, m)
are coordinates on both AO axes of the matrices (``ao_i_l``, ``ao_j_l``, ...).
``source_file`` is the file's path relative to the directory holding the store (where a
workflow keeps its results), never an absolute path of the producing machine, and
``source_sha256`` the SHA-256 of its bytes.

The arrays are the rows of :data:`rtml.data._schema.PER_TRAJECTORY` and
:data:`~rtml.data._schema.STATIC`: one per quantity of the trajectory file schema, plus the
columns computed here from a file's metadata (ids, field parameters, provenance) and the
axis labels computed from a group's scalars (``step``, ``xyz``, ``spin``). Every array
carries ``dimension_names`` (read by xarray as dims), ``units`` and ``long_name``
attributes; the group attribute ``coordinates`` names the variables xarray should treat as
coordinates (everything except rho, fock, dipole, energy, field and the dimension
coordinates).

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
written into rows ``n, n + 1, ...`` of arrays grown along ``traj_id`` (growing rewrites only
``zarr.json``), and all of them are committed at once, by one write of the root attributes
(the commit record of :mod:`rtml.data._commit`, with the counts and ``dataset_sha256``). An
append is all or nothing: one that fails or is killed before that write commits nothing,
and the rows it wrote are overwritten (or trimmed) by the next. The groups' ``n_committed``
attributes, the ``index`` group, the consolidated metadata and the dataset card are
rewritten after the commit, in that order. The consolidated metadata is the view of plain
readers: every array then has exactly the committed rows. The commit write drops it, so a
process killed before it is rewritten leaves a store that plain xarray opens with a warning
(and rows to trim by ``n_committed``) until the next assembly; an append killed before its
commit leaves the previous view in place. rtml itself never reads the consolidated copy.

Snakemake touches ``.snakemake_timestamp`` inside every ``directory()`` output after the
job: that file is not a Zarr node, and through the consolidated metadata no reader lists
the directory, so it is harmless (and rtml ignores it).
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
import warnings
from dataclasses import dataclass, field as dc_field
from datetime import datetime, timezone
from decimal import Decimal
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
from rtml.data._card import card_path, check_card_path, write_card
from rtml.data._commit import (INDEX_ROWS_ATTR, committed_counts, dataset_sha256,
                               index_from_groups, read_index)
from rtml.data._schema import (AO_ORDER_CONVENTION, DATASETS, DENSITY_CONVENTION,
                               DIPOLE_ORIGIN_CONVENTION, GROUP_OPTIONAL, GROUP_SCALARS,
                               INDEX_COLUMNS, INDEX_GROUP, PER_TRAJECTORY, RHO_DTYPES,
                               SPIN_LABELS, STATIC, STORE_FORMAT_NAME, STORE_FORMAT_VERSION,
                               TRAJ_DIM, UNITS_NOTE, ZSTD_LEVEL, Variable, check_is_store,
                               dataset, evaluate_shape, strings)
from rtml.data._validate import validate_trajectory
from rtml.fields import field_from_json
from rtml.units import UNITS

log = logging.getLogger("rtml.data")

#: File quantities read before any write: the static arrays' sources, and the positions that
#: name a geometry when the file does not.
_STATIC_SOURCES = tuple(dict.fromkeys(v.attr for v in STATIC if v.source is not None))
_SCANNED = _STATIC_SOURCES + ("positions_angstrom",)


# --------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """What the assembler needs to know about one trajectory file before writing it."""

    path: Path
    molecule: str
    scalars: dict[str, Any]          # GROUP_SCALARS
    static: dict[str, np.ndarray]    # sources of the STATIC arrays, by file attribute
    geometry_id: str
    inputs_sha256: str
    provenance: dict
    traj_id: str = ""
    has: dict[str, bool] = dc_field(default_factory=dict)  # GROUP_OPTIONAL in the file
    steps: np.ndarray | None = None   # the frames' propagation steps (_frame_steps)
    file_sha256: str | None = None    # SHA-256 of the file's bytes, once computed


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
    file_sha = None
    if not inputs_sha:  # no input hash recorded: fall back to the file's bytes
        file_sha = _file_sha256(path)
        inputs_sha = "file-" + file_sha
    static = {attr: header.arrays[attr] for attr in _STATIC_SOURCES}
    steps, static["time"] = _frame_steps(static["time"], scalars["dt"], path)
    src = _Source(
        path=path, molecule=molecule, scalars=scalars, static=static,
        geometry_id=str(geometry_id), inputs_sha256=str(inputs_sha),
        provenance=prov if isinstance(prov, dict) else {},
        has={v.name: all(n in header.shapes for n in v.source.h5_names)
             for v in GROUP_OPTIONAL},
        steps=steps, file_sha256=file_sha,
    )
    src.traj_id = f"{molecule}/{src.geometry_id}/{path.stem}"
    return src


def _frame_steps(time: np.ndarray, dt: float, path: Path) -> tuple[np.ndarray, np.ndarray]:
    r"""Integer step and exact time of each saved frame.

    .. math:: n_k = \mathrm{round}(t_k / \Delta t), \qquad
              t_k^{\rm exact} = \mathrm{fl}(n_k \cdot \Delta t_{10})

    with :math:`\Delta t_{10}` the shortest decimal that reads back as ``dt`` (0.2) and the
    product rounded once to float64, so a frame's time is the float a user types (0.6)
    rather than the accumulated 0.6000000000000001.

    Args:
        time: (n_time,) saved times of a file, a.u.
        dt: the propagation step, a.u.

    Returns:
        ``(step, time)``: (n_time,) int64 and (n_time,) float64.

    Raises:
        InputError: a time farther from its multiple of ``dt`` than the ``time_grid`` check
            allows (naming ``path``).
    """
    time = np.asarray(time, dtype=np.float64)
    step = np.rint(time / dt).astype(np.int64)
    dt_decimal = Decimal(repr(float(dt)))
    exact = np.array([float(n * dt_decimal) for n in step.tolist()], dtype=np.float64)
    tol = 1e-6 * dt + 4 * np.finfo(float).eps * float(np.max(np.abs(time), initial=0.0))
    off = np.abs(time - exact)
    if off.size and float(off.max()) > tol:
        k = int(np.flatnonzero(off > tol)[0])
        raise InputError(f"{path}: saved time t[{k}] = {float(time[k])!r} is not a multiple of "
                         f"dt = {float(dt)!r} (off by {off[k]:.1e}); the store labels frames by "
                         "step")
    return step, exact


def _static_values(src: _Source) -> dict[str, np.ndarray]:
    """The STATIC arrays of a new molecule group of ``src``, by name: copied from the file
    (``time`` made exact), and the axis labels ``step``, ``xyz``, ``spin``."""
    labels = {"step": src.steps,
              "xyz": np.array(["x", "y", "z"], dtype=object),
              "spin": np.array(SPIN_LABELS[src.scalars["n_spin"]], dtype=object)}
    return {var.name: labels[var.name] if var.source is None else src.static[var.attr]
            for var in STATIC}


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
    for d in DATASETS:
        if not d.store.static:
            continue
        spec = d.store
        got, want = src.static[d.attr], ref.static[d.attr]
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


def _row_values(src: _Source, traj, rho_dtype: np.dtype, names: Container[str],
                base: Path) -> dict[str, Any]:
    """Values of the per-trajectory arrays ``names`` for one trajectory (``traj`` as read):
    the computed columns, and the file quantities (NaN for an optional one it lacks).
    ``source_file`` is relative to ``base``, the directory holding the store."""
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
        source_file=os.path.relpath(src.path.resolve(), base.resolve()),
        source_sha256=src.file_sha256 or _file_sha256(src.path),
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
    dimension coordinates (``traj_id``, ``time``, ``xyz``, ``spin``)."""
    return " ".join(v.name for v in PER_TRAJECTORY + STATIC
                    if not v.data and v.dims != (v.name,))


def _create_group(root, src: _Source, rho_dtype: np.dtype, chunk_mib: float):
    """Create the molecule group of ``src`` with zero trajectories and its static arrays."""
    s = src.scalars
    dims = {TRAJ_DIM: 0, "time": s["n_time"], "spin": s["n_spin"], "ao_i": s["n_basis"],
            "ao_j": s["n_basis"], "atom": s["n_atoms"], "xyz": 3}
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
    values = _static_values(src)
    for var in STATIC:
        dtype = _zarr_dtype(var, rho_dtype)
        data = np.asarray(values[var.name], dtype=object if dtype is str else dtype)
        a = g.create_array(var.name, shape=data.shape, chunks=data.shape or (1,),
                           dtype=dtype, fill_value=_fill(dtype),
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
        a_attrs["coordinates"] = _coordinates()
    return g.create_array(var.name, shape=shape, chunks=chunks, dtype=dtype,
                          fill_value=_fill(dtype), compressors=_compressors(),
                          dimension_names=list(var.dims), attributes=a_attrs, **kwargs)


def _add_missing_arrays(g) -> None:
    """Give a group written before a per-trajectory array was added to the schema the
    arrays it lacks, filled with NaN for its existing rows."""
    missing = [var for var in PER_TRAJECTORY if var.if_absent != "group" and var.name not in g]
    if not missing:
        return
    ga = g.attrs.asdict()
    rho = g["rho"]
    dims = {TRAJ_DIM: rho.shape[0], "time": ga["n_time"], "spin": ga["n_spin"],
            "ao_i": ga["n_basis"], "ao_j": ga["n_basis"], "atom": ga["n_atoms"], "xyz": 3}
    for var in missing:
        _create_per_traj_array(g, var, dims, rho.dtype, rho.chunks[1], rho.shards[1])
    g.attrs["coordinates"] = _coordinates()
    log.info("group '%s': added %s (NaN for its %d earlier rows)", ga.get("molecule"),
             ", ".join(var.name for var in missing), dims[TRAJ_DIM])


def _group_ref(g) -> _GroupRef:
    attrs = g.attrs.asdict()
    return _GroupRef(
        scalars={k: attrs[k] for k in GROUP_SCALARS},
        static={var.attr: np.asarray(g[var.name][...]) for var in STATIC
                if var.source is not None},
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
    rewritten. The dataset card is (re)written beside the store, ``STORE.README.md``. See
    the module docstring for the layout, chunking and commit protocol.

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
            an rtml store (or a store of another format version), a file at the card's path
            that is not an rtml dataset card, a bad ``dtype`` or ``chunk_mib``.
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
        remove_stale_temporaries(store_path.parent, card_path(store_path).name)
    check_card_path(card_path(store_path))
    if (store_path.exists() or store_path.is_symlink()) and not empty_dir:
        check_is_store(store_path)
        return _append(store_path, sources, dtype, chunk_mib, progress, allow_static)
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
            return _append(store_path, sources, dtype, chunk_mib, False, allow_static)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    with _locked(store_path):  # a concurrent append may rewrite the card meanwhile
        write_card(store_path)
    summary["store"] = str(store_path)
    return summary


def _append(store_path: Path, sources: list[_Source], dtype: str | None, chunk_mib: float,
            progress, allow_static: bool) -> dict[str, Any]:
    """Append ``sources`` to the existing store at ``store_path`` under its lock, then
    rewrite its card."""
    with _locked(store_path):
        summary = _assemble_into(store_path, sources, dtype, chunk_mib, progress, False,
                                 allow_static=allow_static)
        write_card(store_path)
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
    """Validate, write and commit ``sources`` into the store directory ``path`` (a new
    store's temporary, or the locked store), then rewrite the copies for plain readers."""
    name = name or path.name
    if created:
        path.mkdir()
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.update_attributes(_new_root_attrs())
    else:
        # the commit record and the arrays as they are, never the consolidated copy
        root = zarr.open_group(str(path), mode="r+", zarr_format=3, use_consolidated=False)
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
                         _reporter(progress, n_add, name), path.parent)

    # -- commit: one write of the root attributes; then the copies for plain readers
    index = index_from_groups(root, counts, read_index(root))
    _commit(root, rattrs, counts, index, plan, rho_dtype,
            entry=f"+{n_add} trajectories ({n_skip} already present) from "
                  f"{len(sources)} file(s)")
    for mol, n in counts.items():
        if root[mol].attrs.get("n_committed") != n:
            root[mol].attrs["n_committed"] = n
    _write_index(root, index)
    _consolidate(path)
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
                rho_dtype: np.dtype, chunk_mib: float, reporter, base: Path) -> dict[str, int]:
    """Write the planned trajectories into rows ``committed[m], ...`` of their groups
    (creating new groups, growing the arrays; the other groups are trimmed of rows an
    interrupted append left) without committing them. ``base``: the directory holding the
    store (``source_file`` is relative to it).

    Returns the counts after the commit to come, ``{molecule: rows}``, store order.
    """
    counts = dict(committed)
    for mol in committed:
        if mol not in plan:
            _fit_rows(root[mol], committed[mol])
    done = 0
    with reporter as report:
        for mol, srcs in plan.items():
            if mol in committed:
                g = root[mol]
            else:  # listed in the root at the commit
                g = _create_group(root, srcs[0], rho_dtype, chunk_mib)
            _add_missing_arrays(g)
            row = counts.get(mol, 0)
            counts[mol] = row + len(srcs)
            arrays = _fit_rows(g, counts[mol])
            for src in srcs:
                traj = _hdf5.read_trajectory(src.path)
                values = _row_values(src, traj, rho_dtype, arrays, base)
                _concurrently(a.async_array.setitem(row, values[var])
                              for var, a in arrays.items())
                row += 1
                done += 1
                if report is not None:
                    report(done)
    return counts


def _fit_rows(g, n: int) -> dict[str, Any]:
    """Grow or trim every per-trajectory array of group ``g`` to ``n`` rows (trimming drops
    the rows of an interrupted append; only ``zarr.json`` files and those rows' chunks
    change). Returns the arrays by name."""
    arrays = {var.name: g[var.name] for var in PER_TRAJECTORY if var.name in g}
    _concurrently(a.async_array.resize((n,) + a.shape[1:])
                  for a in arrays.values() if a.shape[0] != n)
    return arrays


def _consolidate(path: Path) -> None:
    """Write the consolidated metadata of the store at ``path`` (the view of plain readers:
    one read opens every group without listing directories)."""
    with warnings.catch_warnings():
        # zarr notes that consolidated metadata is not in the v3 spec yet (xarray reads it),
        # and names the files in the store that are not Zarr nodes (a Snakemake timestamp)
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message="Object at .* is not recognized",
                                category=UserWarning)
        zarr.consolidate_metadata(str(path), zarr_format=3)


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
    # one write of the root's zarr.json (which zarr replaces atomically): ``attrs.update``
    # would write it once per key, and a kill between the keys left ``n_committed`` new
    # beside an old ``dataset_sha256``
    root.update_attributes({
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
    """Remove what a killed assembly leaves inside the store: the ``*.partial`` files zarr
    writes before renaming them into place (called under the store's lock: no writer is
    active)."""
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
