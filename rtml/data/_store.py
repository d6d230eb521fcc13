r"""The rtml dataset store: all trajectories of a study in one chunked Zarr v3 store.

:func:`assemble_store` copies trajectory HDF5 files (:mod:`rtml.data._hdf5`) into a Zarr
v3 directory store, one group per molecule, and :func:`store_info` summarises one.
Reading is :func:`rtml.data.open_dataset` (xarray) and :class:`rtml.data.TrajectoryWindows`
(PyTorch).

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

Every array carries ``dimension_names`` (read by xarray as dims), ``units`` and
``long_name`` attributes; the group attribute ``coordinates`` names the variables xarray
should treat as coordinates (everything except rho, fock, dipole, energy, field).

``fock`` is the AO Fock matrix F[P(t)] of each frame without the field term (complex
Hermitian), as the engine accepted it (see :mod:`rtml.data._hdf5`); ``rho_ground`` and
``fock_ground`` are the SCF ground state P0 of the trajectory's geometry and F0 = F[P0]
(same Fock build), so ``fock - fock_ground`` is the two-electron change of each frame. A
group stores ``fock`` only if all its trajectories have it (group attribute ``has_fock``):
the first file of a group decides, and a later file that disagrees (a file without Fock
frames, e.g. an imported NWChem one, for a group that has them, or the reverse) is an
:class:`~rtml._errors.InputError`. ``rho_ground``/``fock_ground`` are NaN for files without
a recorded ground state; a group written by an older rtml without these two arrays gets
them on its next append (NaN for its earlier rows).

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

Appending and atomicity
-----------------------
A new store is built at ``.{name}.tmp-{pid}`` beside ``store_path`` and renamed into place,
so ``store_path`` is either absent or complete. Appending to an existing store (under an
exclusive ``flock`` on its directory) never rewrites committed rows: a trajectory whose
(``traj_id``, ``inputs_sha256``) pair is already committed is skipped; new ones are written
into rows ``n_committed, n_committed + 1, ...`` of arrays grown along ``traj`` (growing
rewrites only ``zarr.json``), and after each trajectory's data is written the group
attribute ``n_committed`` is advanced. Readers use only rows ``< n_committed``; an
interrupted append leaves uncommitted rows that the next append overwrites. The ``index``
group and the dataset card are rebuilt after the groups are committed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from rtml._errors import InputError
from rtml.data import _hdf5
from rtml.units import UNITS

log = logging.getLogger("rtml.data")

STORE_FORMAT_NAME = "rtml-dataset"
STORE_FORMAT_VERSION = 1

#: Allowed storage dtypes of ``rho``.
RHO_DTYPES = ("complex128", "complex64")

#: Zstandard level used for every array (see the module docstring for the measurement).
ZSTD_LEVEL = 3

AO_ORDER_CONVENTION = (
    "PySCF AO order; spherical p shells are (px, py, pz) = m (+1, -1, 0); d and higher "
    "shells run m = -l..l"
)
DIPOLE_ORIGIN_CONVENTION = (
    "dipole about the centre of nuclear charge of each geometry (dipole_origin, bohr); "
    "mu = -Tr(P D) + sum_A Z_A (R_A - O)"
)
DENSITY_CONVENTION = (
    "rho is the AO density matrix P(t); n_spin = 1: total density (Tr PS = N), "
    "n_spin = 2: alpha and beta densities"
)

#: Root-group name of the index table (a molecule may not use it).
INDEX_GROUP = "index"

#: Index columns: (name, numpy kind) -- ``str`` or an integer dtype.
INDEX_COLUMNS = (
    ("traj_id", str), ("molecule", str), ("row", "int64"), ("n_basis", "int64"),
    ("n_spin", "int64"), ("n_time", "int64"), ("geometry_id", str), ("field_kind", str),
    ("field_spec", str), ("inputs_sha256", str), ("source_file", str),
)

#: Data variables; every other array of a molecule group is a coordinate.
DATA_VARS = ("rho", "fock", "dipole", "energy", "field")

# (name, dims, dtype, units, long_name); "rho" dtype is set per store. Dims: traj, time,
# spin, ao_i, ao_j, atom, ao, xyz.
_PER_TRAJ = (
    ("rho", ("traj", "time", "spin", "ao_i", "ao_j"), None, UNITS["density"],
     "AO density matrix P(t) (n_spin=1: total; 2: alpha, beta)"),
    ("dipole", ("traj", "time", "xyz"), "float64", UNITS["dipole"],
     "total dipole (electrons + nuclei) about dipole_origin"),
    ("energy", ("traj", "time"), "float64", UNITS["energy"],
     "molecular energy E[P(t)] (electronic + nuclear repulsion), without the field term"),
    ("field", ("traj", "time", "xyz"), "float64", UNITS["field"],
     "applied electric field E(t) (zero for a delta kick, applied before the first frame)"),
    ("traj_id", ("traj",), str, "", "stable trajectory id {molecule}/{geometry_id}/{file stem}"),
    ("geometry_id", ("traj",), str, "", "geometry sample id (eq: equilibrium)"),
    ("field_kind", ("traj",), str, "", "field type: none, kick, gaussian, resonant"),
    ("field_spec", ("traj",), str, "", "canonical field spec string (rtml.fields)"),
    ("field_amplitude", ("traj",), "float64", "atomic_unit_of_electric_field",
     "E0 (kick: kick strength kappa, field x time)"),
    ("field_omega", ("traj",), "float64", UNITS["frequency"], "carrier frequency (NaN: none)"),
    ("field_polarization", ("traj", "xyz"), "float64", "1", "unit polarisation vector"),
    ("field_t0", ("traj",), "float64", UNITS["time"], "Gaussian pulse centre (NaN: none)"),
    ("field_sigma", ("traj",), "float64", UNITS["time"], "Gaussian pulse width (NaN: none)"),
    ("field_duration", ("traj",), "float64", UNITS["time"], "resonant drive length (NaN: none)"),
    ("kick_strength", ("traj",), "float64", "atomic_unit_of_electric_field*atomic_unit_of_time",
     "delta-kick strength kappa (0: no kick)"),
    ("positions", ("traj", "atom", "xyz"), "float64", UNITS["positions"],
     "Cartesian nuclear positions"),
    ("dipole_origin", ("traj", "xyz"), "float64", UNITS["dipole_origin"],
     "origin of the dipole operator (centre of nuclear charge)"),
    ("overlap", ("traj", "ao_i", "ao_j"), "float64", UNITS["overlap"], "AO overlap S"),
    ("core_hamiltonian", ("traj", "ao_i", "ao_j"), "float64", UNITS["core_hamiltonian"],
     "AO core Hamiltonian h = T + V_nuc"),
    ("rho_ground", ("traj", "spin", "ao_i", "ao_j"), "float64", UNITS["density"],
     "SCF ground-state AO density P0 of the geometry (idempotent; NaN: not recorded)"),
    ("fock_ground", ("traj", "spin", "ao_i", "ao_j"), "float64", UNITS["energy"],
     "F0 = F[P0], ground-state AO Fock matrix, same Fock build as fock (NaN: not recorded)"),
    ("ground_state_energy", ("traj",), "float64", UNITS["energy"],
     "SCF ground-state energy (NaN: not recorded)"),
    ("ground_state_dipole", ("traj", "xyz"), "float64", UNITS["dipole"],
     "SCF ground-state dipole about dipole_origin (NaN: not recorded)"),
    ("inputs_sha256", ("traj",), str, "", "SHA-256 of all inputs of the trajectory (provenance)"),
    ("source_file", ("traj",), str, "", "HDF5 file the trajectory was assembled from"),
    ("provenance", ("traj",), str, "", "provenance of the trajectory file (JSON)"),
)

#: The optional per-trajectory array: present in a group iff all its trajectories have it;
#: dtype, chunks and shards as ``rho``.
_FOCK_VAR = ("fock", ("traj", "time", "spin", "ao_i", "ao_j"), None, UNITS["energy"],
             "AO Fock matrix F[P(t)] without the field term (n_spin=2: alpha, beta), as "
             "accepted by the propagator for the frame")

# Static (per-group) arrays: name, dims, dtype, units, long_name.
_STATIC = (
    ("time", ("time",), "float64", UNITS["time"], "time of each saved frame"),
    ("atomic_numbers", ("atom",), "int64", "1", "nuclear charges Z"),
    ("basis_atom_index", ("ao",), "int64", "1", "0-based atom of each AO (PySCF AO order)"),
    ("basis_angular_momentum", ("ao",), "int64", "1", "angular momentum l of each AO"),
    ("basis_magnetic_quantum", ("ao",), "int64", "1",
     "real-spherical-harmonic m of each AO; p shells (px, py, pz) = m (+1, -1, 0)"),
)

#: Group attributes that every file of a molecule must share (besides the arrays).
_GROUP_SCALARS = ("n_basis", "n_spin", "n_atoms", "n_time", "n_electrons", "charge",
                  "multiplicity", "xc", "basis", "dt", "save_every", "propagator")


# --------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """What the assembler needs to know about one trajectory file before writing it."""

    path: Path
    molecule: str
    scalars: dict[str, Any]          # _GROUP_SCALARS
    time: np.ndarray
    atomic_numbers: np.ndarray
    basis_labels: tuple[np.ndarray, np.ndarray, np.ndarray]
    geometry_id: str
    inputs_sha256: str
    provenance: dict
    traj_id: str = ""
    has_fock: bool = False


def _scan(path: Path) -> _Source:
    """Read a trajectory file's attributes and small arrays (not the density)."""
    with _hdf5.open_trajectory_file(path) as f:
        _hdf5._check_format(path, f)
        missing = [a for a in _hdf5.ROOT_ATTRS if a not in f.attrs]
        if missing:
            raise InputError(f"{path}: missing root attribute(s) {', '.join(missing)}")
        attrs = {k: _hdf5._decode_scalar(f.attrs[k]) for k in f.attrs}
        needed = ("dynamics/time", "geometry/atomic_numbers", "geometry/positions",
                  "basis/atom_index", "basis/angular_momentum", "basis/magnetic_quantum")
        arrays = {}
        for name in needed:
            if name not in f:
                raise InputError(f"{path}: missing dataset {name!r}")
            arrays[name] = f[name][()]
        shape = f["dynamics/density_real"].shape if "dynamics/density_real" in f else None
        has_fock = "dynamics/fock_real" in f and "dynamics/fock_imag" in f
    if shape is None or len(shape) != 4:
        raise InputError(f"{path}: missing or malformed dataset 'dynamics/density_real'")
    provenance = _hdf5._from_json(path, "provenance", attrs["provenance"])
    molecule = str(attrs["molecule"])
    if (not molecule or "/" in molecule or molecule.startswith((".", "__"))
            or molecule == INDEX_GROUP):
        raise InputError(f"{path}: molecule name {molecule!r} cannot name a store group")
    scalars = {
        "n_basis": int(shape[-1]), "n_spin": int(shape[1]),
        "n_atoms": int(len(arrays["geometry/atomic_numbers"])), "n_time": int(shape[0]),
        "n_electrons": int(attrs["n_electrons"]), "charge": int(attrs["charge"]),
        "multiplicity": int(attrs["multiplicity"]), "xc": str(attrs["xc"]),
        "basis": str(attrs["basis"]), "dt": float(attrs["dt"]),
        "save_every": int(attrs["save_every"]), "propagator": str(attrs["propagator"]),
    }
    geometry_id = attrs.get("geometry_id")
    if geometry_id is None:  # older files: name the geometry by its coordinates
        digest = hashlib.sha256(np.ascontiguousarray(arrays["geometry/positions"],
                                                     dtype="<f8").tobytes()).hexdigest()
        geometry_id = f"pos-{digest[:12]}"
    inputs_sha = provenance.get("inputs_sha256") if isinstance(provenance, dict) else None
    if not inputs_sha:  # no input hash recorded: fall back to the file's bytes
        inputs_sha = "file-" + _file_sha256(path)
    src = _Source(
        path=path, molecule=molecule, scalars=scalars,
        time=np.asarray(arrays["dynamics/time"], dtype=np.float64),
        atomic_numbers=_hdf5._to_int(path, "geometry/atomic_numbers",
                                     arrays["geometry/atomic_numbers"]),
        basis_labels=tuple(_hdf5._to_int(path, n, arrays[n]) for n in (
            "basis/atom_index", "basis/angular_momentum", "basis/magnetic_quantum")),
        geometry_id=str(geometry_id), inputs_sha256=str(inputs_sha),
        provenance=provenance if isinstance(provenance, dict) else {},
        has_fock=has_fock,
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
    time: np.ndarray
    atomic_numbers: np.ndarray
    basis_labels: tuple[np.ndarray, np.ndarray, np.ndarray]
    has_fock: bool = False


def _check_against(src: _Source, ref: _GroupRef, origin: str) -> None:
    """Raise :class:`InputError` naming ``src.path`` if it does not fit the group."""
    mol = src.molecule
    for key in ("n_basis", "n_spin", "n_atoms", "n_time"):
        if src.scalars[key] != ref.scalars[key]:
            raise InputError(f"{src.path}: {key} = {src.scalars[key]} but molecule group "
                             f"'{mol}' has {key} = {ref.scalars[key]} ({origin}); a group "
                             "holds one molecule, one basis and one time grid")
    if not np.array_equal(src.atomic_numbers, ref.atomic_numbers):
        raise InputError(f"{src.path}: atoms {src.atomic_numbers.tolist()} differ from "
                         f"molecule group '{mol}' ({ref.atomic_numbers.tolist()}, {origin})")
    if not all(np.array_equal(a, b) for a, b in zip(src.basis_labels, ref.basis_labels)):
        raise InputError(f"{src.path}: AO labels (atom, l, m) differ from molecule group "
                         f"'{mol}' ({origin})")
    if not np.array_equal(src.time, ref.time):
        raise InputError(f"{src.path}: time grid differs from molecule group '{mol}' "
                         f"({origin}); a group holds one time grid")
    if src.has_fock != ref.has_fock:
        raise InputError(f"{src.path}: {'has' if src.has_fock else 'lacks'} Fock frames "
                         f"(dynamics/fock_*) but molecule group '{mol}' "
                         f"{'does not store' if src.has_fock else 'stores'} them ({origin}); "
                         "a group stores fock only if all its trajectories have it")
    for key in _GROUP_SCALARS:
        if src.scalars[key] != ref.scalars[key]:
            raise InputError(f"{src.path}: {key} = {src.scalars[key]!r} but molecule group "
                             f"'{mol}' has {key} = {ref.scalars[key]!r} ({origin})")


def _field_columns(field_spec: dict) -> dict[str, Any]:
    """Per-trajectory field columns from a file's ``field_spec`` JSON dict."""
    nan = float("nan")
    kind = str(field_spec.get("kind", "unknown"))
    try:
        from rtml.fields import field_from_json

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


def _row_values(src: _Source, traj, rho_dtype: np.dtype) -> dict[str, Any]:
    """Values of every per-trajectory array for one trajectory (``traj`` as read)."""
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
    shape = np.shape(traj.density)[1:]

    def ground(value):
        return np.full(shape, nan) if value is None else np.asarray(value, dtype=np.float64)

    values.update(
        rho=np.asarray(traj.density).astype(rho_dtype, copy=False),
        fock=None if traj.fock is None else np.asarray(traj.fock).astype(rho_dtype, copy=False),
        rho_ground=ground(traj.ground_state_density),
        fock_ground=ground(traj.ground_state_fock),
        dipole=traj.dipole, energy=traj.energy, field=traj.field,
        traj_id=src.traj_id, geometry_id=src.geometry_id,
        kick_strength=float(kick), positions=traj.positions_angstrom,
        dipole_origin=traj.dipole_origin_bohr, overlap=traj.overlap,
        core_hamiltonian=traj.core_hamiltonian,
        ground_state_energy=nan if gs_energy is None else float(gs_energy),
        ground_state_dipole=gs_dipole, inputs_sha256=src.inputs_sha256,
        source_file=str(src.path.resolve()),
        provenance=json.dumps(traj.provenance, sort_keys=True, default=str),
    )
    return values


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
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=ZSTD_LEVEL, checksum=False)]


def _fill(dtype) -> Any:
    if dtype is str:
        return ""
    kind = np.dtype(dtype).kind
    return {"f": np.nan, "c": complex(np.nan, np.nan), "i": 0}[kind]


def _create_group(root, src: _Source, rho_dtype: np.dtype, chunk_mib: float):
    """Create the molecule group of ``src`` with zero trajectories and its static arrays."""
    s = src.scalars
    dims = {"traj": 0, "time": s["n_time"], "spin": s["n_spin"], "ao_i": s["n_basis"],
            "ao_j": s["n_basis"], "atom": s["n_atoms"], "ao": s["n_basis"], "xyz": 3}
    frame_bytes = s["n_spin"] * s["n_basis"] ** 2 * rho_dtype.itemsize
    ct, shard_t = time_chunking(s["n_time"], frame_bytes, chunk_mib)
    coords = [name for name, *_ in _PER_TRAJ + _STATIC if name not in DATA_VARS]
    attrs = {
        "molecule": src.molecule, **s, "rho_dtype": rho_dtype.name, "has_fock": src.has_fock,
        "chunk_mib": float(chunk_mib), "n_committed": 0,
        "units": {**UNITS, "note": _hdf5.UNITS_NOTE},
        "dipole_origin_convention": DIPOLE_ORIGIN_CONVENTION,
        "ao_order_convention": AO_ORDER_CONVENTION,
        "density_convention": DENSITY_CONVENTION,
        "coordinates": " ".join(c for c in coords if c != "time"),
    }
    g = root.create_group(src.molecule, overwrite=True, attributes=attrs)
    comp = _compressors()
    for spec in _PER_TRAJ + ((_FOCK_VAR,) if src.has_fock else ()):
        _create_per_traj_array(g, spec, dims, rho_dtype, ct, shard_t)
    static_values = {"time": src.time, "atomic_numbers": src.atomic_numbers,
                     "basis_atom_index": src.basis_labels[0],
                     "basis_angular_momentum": src.basis_labels[1],
                     "basis_magnetic_quantum": src.basis_labels[2]}
    for name, dnames, dtype, units, long_name in _STATIC:
        data = np.asarray(static_values[name], dtype=dtype)
        a = g.create_array(name, shape=data.shape, chunks=data.shape or (1,), dtype=dtype,
                           fill_value=_fill(dtype), compressors=comp,
                           dimension_names=list(dnames),
                           attributes={"units": units, "long_name": long_name})
        a[...] = data
    return g


def _create_per_traj_array(g, spec, dims: dict[str, int], rho_dtype: np.dtype, ct: int,
                           shard_t: int):
    """Create one per-trajectory array of group ``g`` (``spec``: a row of _PER_TRAJ)."""
    name, dnames, dtype, units, long_name = spec
    shape = tuple(dims[d] for d in dnames)
    chunks = (1,) + shape[1:]
    kwargs: dict[str, Any] = {}
    if name in ("rho", "fock"):
        dtype = rho_dtype
        chunks = (1, ct) + shape[2:]
        kwargs["shards"] = (1, shard_t) + shape[2:]
    a_attrs = {"units": units, "long_name": long_name}
    if name in DATA_VARS:
        a_attrs["coordinates"] = " ".join(n for n, *_ in _PER_TRAJ if n not in DATA_VARS)
    return g.create_array(name, shape=shape, chunks=chunks, dtype=dtype,
                          fill_value=_fill(dtype), compressors=_compressors(),
                          dimension_names=list(dnames), attributes=a_attrs, **kwargs)


def _add_missing_arrays(g) -> None:
    """Give a group written by an older rtml the per-trajectory arrays it lacks
    (``rho_ground``, ``fock_ground``), filled with NaN for its existing rows."""
    missing = [spec for spec in _PER_TRAJ if spec[0] not in g]
    if not missing:
        return
    ga = g.attrs.asdict()
    rho = g["rho"]
    dims = {"traj": rho.shape[0], "time": ga["n_time"], "spin": ga["n_spin"],
            "ao_i": ga["n_basis"], "ao_j": ga["n_basis"], "atom": ga["n_atoms"],
            "ao": ga["n_basis"], "xyz": 3}
    for spec in missing:
        _create_per_traj_array(g, spec, dims, rho.dtype, rho.chunks[1], rho.shards[1])
    coords = [name for name, *_ in _PER_TRAJ + _STATIC if name not in DATA_VARS]
    g.attrs["coordinates"] = " ".join(c for c in coords if c != "time")
    log.info("group '%s': added %s (NaN for its %d earlier rows)", ga.get("molecule"),
             ", ".join(spec[0] for spec in missing), dims["traj"])


def _group_ref(g) -> _GroupRef:
    attrs = g.attrs.asdict()
    return _GroupRef(
        scalars={k: attrs[k] for k in _GROUP_SCALARS},
        time=np.asarray(g["time"][...]),
        atomic_numbers=np.asarray(g["atomic_numbers"][...]),
        basis_labels=tuple(np.asarray(g[n][...]) for n in (
            "basis_atom_index", "basis_angular_momentum", "basis_magnetic_quantum")),
        has_fock="fock" in g,
    )


def _strings(values) -> list[str]:
    return [str(v) for v in np.asarray(values).reshape(-1)]


# --------------------------------------------------------------------------- assembly


def assemble_store(trajectory_paths: Iterable[str | os.PathLike], store_path: str | os.PathLike,
                   *, dtype: str | None = "complex128", chunk_mib: float = 1.0,
                   progress: Callable[[int], None] | bool | None = None) -> dict[str, Any]:
    """Copy trajectory HDF5 files into the Zarr dataset store at ``store_path``.

    A new store is built beside ``store_path`` and renamed into place. With an existing
    store, only trajectories whose (``traj_id``, ``inputs_sha256``) pair is not committed
    yet are appended; committed rows and their chunk files are never rewritten. See the
    module docstring for the layout, chunking and commit protocol.

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

    Returns:
        ``{"store", "created", "added", "skipped", "molecules": {name: {"added",
        "skipped", "n_trajectories"}}}``.

    Raises:
        InputError: no or unreadable files, a file whose nbf, atoms, AO labels, time grid or
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
    if (store_path.exists() or store_path.is_symlink()) and not empty_dir:
        _check_is_store(store_path)
        with _locked(store_path):
            return _assemble_into(store_path, sources, dtype, chunk_mib, progress, False)
    if not store_path.parent.is_dir():
        raise InputError(f"output directory '{store_path.parent}' does not exist")
    tmp = store_path.with_name(f".{store_path.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        summary = _assemble_into(tmp, sources, dtype, chunk_mib, progress, True,
                                 name=store_path.name)
        try:
            os.rename(tmp, store_path)  # atomic; also replaces an empty directory
        except OSError:
            if not store_path.exists():
                raise
            # another process created the store meanwhile: append to it instead
            shutil.rmtree(tmp, ignore_errors=True)
            log.info("%s appeared while assembling; appending to it", store_path)
            _check_is_store(store_path)
            with _locked(store_path):
                return _assemble_into(store_path, sources, dtype, chunk_mib, False, False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["store"] = str(store_path)
    return summary


def _check_is_store(store_path: Path) -> None:
    meta = store_path / "zarr.json"
    if not store_path.is_dir() or not meta.is_file():
        raise InputError(f"'{store_path}' exists and is not an rtml dataset store")
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        attrs = {}
    if attrs.get("format") != STORE_FORMAT_NAME:
        raise InputError(f"'{store_path}' exists and is not an rtml dataset store "
                         f"(format attribute {attrs.get('format')!r})")
    if int(attrs.get("format_version", 0)) > STORE_FORMAT_VERSION:
        raise InputError(f"'{store_path}': unsupported rtml-dataset format_version "
                         f"{attrs.get('format_version')!r} (this rtml writes "
                         f"{STORE_FORMAT_VERSION})")


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
    import asyncio

    from zarr.core.sync import sync

    coroutines = list(coroutines)

    async def _all():
        await asyncio.gather(*coroutines)

    if coroutines:
        sync(_all())


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _assemble_into(path: Path, sources: list[_Source], dtype: str | None, chunk_mib: float,
                   progress, created: bool, name: str | None = None) -> dict[str, Any]:
    import zarr

    from rtml import __version__
    from rtml.data._hdf5 import read_trajectory

    name = name or path.name
    if created:
        path.mkdir()
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(_new_root_attrs())
    else:
        root = zarr.open_group(str(path), mode="r+", zarr_format=3)
    rattrs = root.attrs.asdict()
    store_dtype = rattrs.get("rho_dtype")
    if store_dtype is None:
        store_dtype = dtype or "complex128"
    elif dtype is not None and dtype != store_dtype:
        raise InputError(f"store '{path}' holds rho as {store_dtype}; cannot append as {dtype}")
    rho_dtype = np.dtype(store_dtype)
    molecules: list[str] = list(rattrs.get("molecules", []))

    # -- plan: what is committed, what each file adds (all checks before any write)
    groups: dict[str, Any] = {}
    refs: dict[str, tuple[_GroupRef, str]] = {}
    committed: dict[str, int] = {}
    known: dict[str, str] = {}  # traj_id -> inputs_sha256 (committed or planned)
    for mol in molecules:
        g = root[mol]
        groups[mol] = g
        n = int(g.attrs["n_committed"])
        committed[mol] = n
        refs[mol] = (_group_ref(g), f"in store '{name}'")
        if n:
            ids = _strings(g["traj_id"][:n])
            shas = _strings(g["inputs_sha256"][:n])
            known.update(zip(ids, shas))
    plan: dict[str, list[_Source]] = {}
    skipped: dict[str, int] = {}
    for src in sources:
        mol = src.molecule
        if mol not in refs:
            refs[mol] = (_GroupRef(src.scalars, src.time, src.atomic_numbers, src.basis_labels,
                                   src.has_fock), f"from {src.path}")
        _check_against(src, *refs[mol])
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
    n_add = sum(len(v) for v in plan.values())
    n_skip = sum(skipped.values())
    log.info("assemble %s: %d new trajector%s, %d already present", path.name, n_add,
             "y" if n_add == 1 else "ies", n_skip)

    # -- write: one group at a time, commit after each trajectory
    if progress is None:
        from rtml._progress import Progress

        bar = Progress(max(n_add, 1), f"assemble {name}", unit="trajectories")
        report = bar
    else:
        bar = None
        report = progress if callable(progress) else None
    done = 0
    try:
        for mol, srcs in plan.items():
            if mol not in groups:
                first = srcs[0]
                groups[mol] = _create_group(root, first, rho_dtype, chunk_mib)
                committed[mol] = 0
                molecules.append(mol)
                root.attrs["molecules"] = molecules  # listed once its arrays exist
            g = groups[mol]
            _add_missing_arrays(g)
            names = [var for var, *_ in _PER_TRAJ] + (["fock"] if "fock" in g else [])
            arrays = {var: g[var] for var in names}
            row = committed[mol]
            target = row + len(srcs)
            # grow (or trim leftovers of an interrupted append); only zarr.json changes
            _concurrently(a.async_array.resize((target,) + a.shape[1:])
                          for a in arrays.values() if a.shape[0] != target)
            for src in srcs:
                traj = read_trajectory(src.path)
                values = _row_values(src, traj, rho_dtype)
                _concurrently(a.async_array.setitem(row, values[var])
                              for var, a in arrays.items())
                row += 1
                g.attrs["n_committed"] = row  # the commit
                committed[mol] = row
                done += 1
                if report is not None:
                    report(done)
    finally:
        if bar is not None:
            bar.close()

    # -- index, root attributes, dataset card
    index = _rebuild_index(root, molecules, committed)
    now = _utc_now()
    entry = (f"{now} rtml {__version__} dataset assemble: +{n_add} trajectories "
             f"({n_skip} already present) from {len(sources)} file(s)")
    history = str(rattrs.get("history", "")).strip()
    dataset_hash = hashlib.sha256("\n".join(
        f"{t} {s}" for t, s in sorted(zip(index["traj_id"], index["inputs_sha256"]))
    ).encode()).hexdigest()
    from rtml._provenance import provenance

    prov = provenance(dataset_hash, zarr_version=zarr.__version__)
    source_versions = dict(rattrs.get("source_software", {}))
    for srcs in plan.values():
        for src in srcs:
            for key in ("rtml_version", "rtml_git_commit", "pyscf_version", "engine"):
                if key in src.provenance:
                    vals = set(source_versions.get(key, []))
                    vals.add(str(src.provenance[key]))
                    source_versions[key] = sorted(vals)
    counts = {m: committed[m] for m in molecules}
    root.attrs.update({
        "history": (history + "\n" + entry).strip(),
        "date_modified": now,
        "molecules": molecules,
        "n_trajectories": int(sum(counts.values())),
        "n_trajectories_per_molecule": counts,
        "rho_dtype": rho_dtype.name,
        "dataset_sha256": dataset_hash,
        "provenance": prov,
        "source_software": source_versions,
    })
    _write_card(path, root, name or path.name)
    per_mol = {m: {"added": len(plan.get(m, [])), "skipped": skipped.get(m, 0),
                   "n_trajectories": committed[m]}
               for m in list(dict.fromkeys(molecules + list(skipped)))}
    return {"store": str(path), "created": created, "added": n_add, "skipped": n_skip,
            "molecules": per_mol}


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
        "units": {**UNITS, "note": _hdf5.UNITS_NOTE},
        "ao_order_convention": AO_ORDER_CONVENTION,
        "dipole_origin_convention": DIPOLE_ORIGIN_CONVENTION,
        "density_convention": DENSITY_CONVENTION,
        "commit_protocol": ("rows of a molecule group beyond its n_committed attribute are "
                            "uncommitted and must be ignored"),
    }


def _rebuild_index(root, molecules: list[str], committed: dict[str, int]) -> dict[str, list]:
    """Rewrite the ``index`` group from the committed rows of every molecule group.

    Rows already in the previous index are reused (committed rows never change); rows past
    them are read from the group arrays.
    """
    old: dict[str, list] = {}
    try:
        ig = root[INDEX_GROUP]
        old = {name: list(np.asarray(ig[name][...])) for name, _ in INDEX_COLUMNS}
    except (KeyError, FileNotFoundError):
        old = {}
    cols: dict[str, list] = {name: [] for name, _ in INDEX_COLUMNS}
    for mol in molecules:
        g = root[mol]
        n = committed[mol]
        s = g.attrs.asdict()
        have = []
        if old:
            have = [i for i, m in enumerate(old["molecule"]) if str(m) == mol
                    and int(old["row"][i]) < n]
            have.sort(key=lambda i: int(old["row"][i]))
            if [int(old["row"][i]) for i in have] != list(range(len(have))):
                have = []
        k = len(have)
        fresh = {}
        if k < n:
            for name in ("traj_id", "geometry_id", "field_kind", "field_spec",
                         "inputs_sha256", "source_file"):
                fresh[name] = _strings(g[name][k:n])
        for j in range(n):
            if j < k:
                for name, _ in INDEX_COLUMNS:
                    cols[name].append(old[name][have[j]])
                continue
            for name in fresh:
                cols[name].append(fresh[name][j - k])
            cols["molecule"].append(mol)
            cols["row"].append(j)
            cols["n_basis"].append(s["n_basis"])
            cols["n_spin"].append(s["n_spin"])
            cols["n_time"].append(s["n_time"])
    ig = root.create_group(INDEX_GROUP, overwrite=True,
                           attributes={"description": "one row per committed trajectory; "
                                       "row is the trajectory's position in its molecule group"})
    n_rows = len(cols["traj_id"])
    for name, kind in INDEX_COLUMNS:
        data = (np.array([str(v) for v in cols[name]], dtype=object) if kind is str
                else np.asarray(cols[name], dtype=kind))
        a = ig.create_array(name, shape=(n_rows,), chunks=(max(n_rows, 1),),
                            dtype=str if kind is str else kind, fill_value=_fill(
                                str if kind is str else kind),
                            compressors=_compressors(), dimension_names=["row_index"])
        if n_rows:
            a[:] = data
    return {name: [str(v) if kind is str else int(v) for v in cols[name]]
            for name, kind in INDEX_COLUMNS}


# --------------------------------------------------------------------------- info and card


def _dir_size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                pass
    return total


def store_info(store_path: str | os.PathLike) -> dict[str, Any]:
    """Summary of a dataset store: molecules, sizes, dtypes, chunk/shard shapes, provenance.

    Returns a JSON-ready dict ``{"store", "format_version", "rho_dtype", "size_bytes",
    "n_trajectories", "molecules": {name: {...}}, "provenance", "history", ...}``.

    Raises:
        InputError: ``store_path`` is not an rtml dataset store.
    """
    import zarr

    path = Path(store_path)
    _check_is_store(path)
    root = zarr.open_group(str(path), mode="r", zarr_format=3)
    attrs = root.attrs.asdict()
    mols = {}
    for mol in attrs.get("molecules", []):
        g = root[mol]
        ga = g.attrs.asdict()
        rho = g["rho"]
        n = int(ga["n_committed"])
        mols[mol] = {
            "n_trajectories": n,
            "n_geometries": len(set(_strings(g["geometry_id"][:n]))) if n else 0,
            "n_basis": ga["n_basis"], "n_spin": ga["n_spin"], "n_atoms": ga["n_atoms"],
            "n_electrons": ga["n_electrons"], "n_time": ga["n_time"], "dt": ga["dt"],
            "save_every": ga["save_every"], "xc": ga["xc"], "basis": ga["basis"],
            "propagator": ga["propagator"], "rho_dtype": ga["rho_dtype"],
            "has_fock": "fock" in g,
            "has_ground_state": "rho_ground" in g,
            "rho_chunk_shape": list(rho.chunks), "rho_shard_shape": list(rho.shards or ()),
            "rho_chunk_mib": float(np.prod(rho.chunks) * rho.dtype.itemsize / 2 ** 20),
            "size_bytes": _dir_size(path / mol),
        }
    return {
        "store": str(path),
        "format": attrs.get("format"), "format_version": attrs.get("format_version"),
        "rho_dtype": attrs.get("rho_dtype"),
        "n_trajectories": int(sum(m["n_trajectories"] for m in mols.values())),
        "size_bytes": _dir_size(path),
        "codec": f"zstd level {ZSTD_LEVEL}",
        "molecules": mols,
        "date_created": attrs.get("date_created"), "date_modified": attrs.get("date_modified"),
        "dataset_sha256": attrs.get("dataset_sha256"),
        "provenance": attrs.get("provenance", {}),
        "source_software": attrs.get("source_software", {}),
        "history": attrs.get("history", ""),
    }


def _write_card(path: Path, root, name: str) -> None:
    """Write ``README.md`` (the dataset card) into the store directory, atomically."""
    text = dataset_card(name, root)
    tmp = path / f".README.md.tmp-{os.getpid()}"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path / "README.md")


def dataset_card(name: str, root) -> str:
    """The Markdown dataset card of the store ``root`` named ``name``."""
    attrs = root.attrs.asdict()
    prov = attrs.get("provenance", {})
    example = (attrs.get("molecules") or ["lih"])[0]
    lines = [
        f"# {attrs.get('title', 'rtml dataset')}: `{name}`",
        "",
        str(attrs.get("summary", "")),
        "",
        f"- format: `{STORE_FORMAT_NAME}` version {STORE_FORMAT_VERSION} (Zarr v3 directory "
        "store), conventions " + str(attrs.get("Conventions", "")),
        f"- created {attrs.get('date_created')}, modified {attrs.get('date_modified')}",
        f"- trajectories: {attrs.get('n_trajectories', 0)}; dataset SHA-256 "
        f"`{attrs.get('dataset_sha256', '')}` (of the sorted traj_id + inputs_sha256 pairs)",
        f"- rho dtype: {attrs.get('rho_dtype')}; compression zstd level {ZSTD_LEVEL}",
        "",
        "## Contents",
        "",
        "| molecule | trajectories | geometries | nbf | n_spin | atoms | electrons | frames "
        "| dt (a.u.) | save every | xc | basis | rho chunk | rho shard | fock |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mol in attrs.get("molecules", []):
        g = root[mol]
        ga = g.attrs.asdict()
        n = int(ga["n_committed"])
        n_geo = len(set(_strings(g["geometry_id"][:n]))) if n else 0
        rho = g["rho"]
        lines.append(
            f"| {mol} | {n} | {n_geo} | {ga['n_basis']} | {ga['n_spin']} | {ga['n_atoms']} | "
            f"{ga['n_electrons']} | {ga['n_time']} | {ga['dt']:g} | {ga['save_every']} | "
            f"{ga['xc']} | {ga['basis']} | {tuple(rho.chunks)} | {tuple(rho.shards or ())} | "
            f"{'yes' if 'fock' in g else 'no'} |")
    lines += [
        "",
        "## Units and conventions",
        "",
        "- Positions are in Ångström; everything else is in atomic units (Hartree, bohr, "
        "a.u. of time, e·bohr, a.u. of field). Each array states its unit in its `units` "
        "attribute.",
        f"- AO order: {AO_ORDER_CONVENTION}.",
        f"- Density: {DENSITY_CONVENTION}.",
        f"- Dipole: {DIPOLE_ORIGIN_CONVENTION}.",
        "- Field: E(t) couples in the length gauge, H(t) = F[P] + E(t)·r (electron charge "
        "-1). A delta kick is applied as an exact unitary before the first frame; its "
        "stored field values are zero and `kick_strength` holds kappa.",
        "",
        "## Schema (each molecule group)",
        "",
        "| array | dims | dtype | units | description |",
        "|---|---|---|---|---|",
    ]
    schema = _PER_TRAJ[:1] + (_FOCK_VAR,) + _PER_TRAJ[1:] + _STATIC
    for var, dims, dtype, units, long_name in schema:
        dt = (attrs.get("rho_dtype") if var in ("rho", "fock")
              else ("string" if dtype is str else dtype))
        role = "data" if var in DATA_VARS else "coord"
        lines.append(f"| `{var}` ({role}) | ({', '.join(dims)}) | {dt} | {units or '-'} "
                     f"| {long_name} |")
    lines += [
        "",
        "Group attributes: molecule, n_basis, n_spin, n_atoms, n_time, n_electrons, charge, "
        "multiplicity, xc, basis, dt, save_every, propagator, rho_dtype, has_fock, units, "
        "conventions, "
        "and **`n_committed`**: only rows `< n_committed` along `traj` are valid (an "
        "interrupted append leaves rows beyond it, overwritten by the next append).",
        "",
        "`fock` (optional) is present only in groups whose trajectories all recorded their "
        "frames' Fock matrix (group attribute `has_fock`; files imported from NWChem have "
        "none): F[P(t)] without the field term, as accepted by the propagator. "
        "`rho_ground`/`fock_ground` are the geometry's SCF ground state P0 and F0 = F[P0] "
        "(same Fock build), NaN where not recorded; `fock - fock_ground` is the "
        "two-electron change of each frame.",
        "",
        "`rho` (and `fock`) is sharded one trajectory per shard (one file per trajectory), "
        "with inner "
        "chunks along time of at most the chunk size given at assembly; every other "
        "per-trajectory array is chunked one trajectory per chunk.",
        "",
        "The root group `index` is a table of all committed trajectories (1-D arrays: "
        + ", ".join(f"`{c}`" for c, _ in INDEX_COLUMNS) + ").",
        "",
        "## How to open it",
        "",
        "```python",
        "import rtml.data as rd",
        f"ds = rd.open_dataset('{name}', molecule='{example}')   # xarray.Dataset, dask-backed",
        f"all_groups = rd.open_dataset('{name}')          # dict: molecule -> Dataset",
        f"index = rd.open_index('{name}')                 # pandas.DataFrame",
        "",
        "# PyTorch: time windows, geometry-disjoint splits, batches of equal basis size",
        "from torch.utils.data import DataLoader",
        f"train = rd.TrajectoryWindows('{name}', window=32, stride=16, split='train')",
        "loader = DataLoader(train, batch_sampler=rd.EqualBasisBatchSampler(train, 16),",
        "                    num_workers=2, collate_fn=rd.collate_windows)",
        "```",
        "",
        "Plain xarray works too (trim to `n_committed` yourself):",
        "",
        "```python",
        "import xarray as xr",
        f"ds = xr.open_zarr('{name}', group='{example}', consolidated=False)",
        "ds = ds.isel(traj=slice(0, ds.attrs['n_committed']))",
        "```",
        "",
        "## Provenance",
        "",
    ]
    for key in ("rtml_version", "rtml_git_commit", "pyscf_version", "numpy_version",
                "zarr_version", "python_version"):
        if key in prov:
            lines.append(f"- assembled with {key.replace('_', ' ')}: {prov[key]}")
    for key, values in sorted(attrs.get("source_software", {}).items()):
        lines.append(f"- trajectories produced with {key.replace('_', ' ')}: "
                     f"{', '.join(values)}")
    lines += ["", "## History", ""]
    lines += [f"- {h}" for h in str(attrs.get("history", "")).splitlines() if h.strip()]
    lines.append("")
    return "\n".join(lines)
