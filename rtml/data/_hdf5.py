r"""The rtml trajectory file: one HDF5 file per :class:`~rtml.data.Trajectory`.

On-disk schema (``format = "rtml-trajectory"``, ``format_version = 1``)
-----------------------------------------------------------------------
The rows of :data:`rtml.data._schema.DATASETS` and :data:`~rtml.data._schema.ROOT_ATTRIBUTES`
are the schema; this module writes and reads them in a loop. Every dataset is float64, the
integer-valued ones included, and carries the attributes ``units`` and ``description``.
``nbf`` is the number of AOs, in PySCF AO order (for l=1: px, py, pz).

{DATASETS_TABLE}

Datasets marked * are optional (``required=False`` in the schema): written when the
:class:`~rtml.data.Trajectory` has them (the rtml engine always does; files imported from
NWChem do not) and read back as ``None`` when absent. ``fock_real``/``fock_imag`` are the
AO Fock matrix F[P(t)] of each frame without the field term (complex Hermitian: exact
exchange of Im P gives an imaginary antisymmetric part), as accepted by the engine's step
for that time point: a full build or the linear-response corrector's prediction, within
its tolerance of a fresh build (``carry_model`` false in the root ``settings``, as the
workflow makes datasets), or, with the engine's default ``carry_model``, possibly that
model's prediction from a build several steps back (its commutator with P within the
tolerance, the matrix itself ~1e-3 of its change from F0); ``ground_state/density`` is the SCF density P0 of the
geometry (from the converged orbitals, idempotent) and ``ground_state/fock`` F0 = F[P0]
with the same Fock build as the dynamics.

The density is stored as :math:`P(t) = \mathrm{Re}\,P + i\,\mathrm{Im}\,P`, one frame per
HDF5 chunk (chunk shape ``(1, n_spin, nbf, nbf)``) so that a frame, or a block of frames,
is read without touching the rest of the file. The Fock matrix (every ``frame_chunks``
dataset of the schema) is stored and chunked the same way.

Compression: none. Measured (``OMP_NUM_THREADS=1``, best of 3 writes including fsync, on a
shared 2-core machine, two runs) on a synthetic 66-AO, 1000-frame closed-shell trajectory
(unitary evolution of an idempotent density; 2 x 34.8 MB of float64): unfiltered
0.19-0.23 s, 70.0 MB; gzip-4 + shuffle 1.9-3.0 s (10-14x slower), 63.7 MB (-9%);
gzip-1 + shuffle 1.6 s, 64.3 MB; lzf + shuffle 1.2 s, 67.6 MB. The mantissas of a
propagated density are incompressible noise, so the rule "no compression if it costs more
than 2x the write time" applies: density datasets are chunked one frame per chunk but
unfiltered (see ``_DENSITY_COMPRESSION``).

Root attributes: ``molecule, n_atoms, n_electrons, n_basis, n_steps, n_spin, dt,
save_every, charge, multiplicity, xc, basis, propagator`` (scalars), ``field_spec`` and
``provenance`` (JSON strings), ``dipole_origin`` (3 floats, bohr), ``units`` (JSON string
of :data:`rtml.units.UNITS` plus a ``"note"`` on the conventions), ``format`` and
``format_version``, then one attribute per ``Trajectory.extra_attrs`` entry: numpy arrays
and scalars are stored as themselves, dicts, lists, tuples and ``None`` as JSON strings
(read back as dicts, lists, lists and ``None``).
"""


from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import h5py
import numpy as np

from rtml._errors import InputError
from rtml.data._schema import (DATASETS, FORMAT_NAME, FORMAT_VERSION, ROOT_ATTRIBUTE_NAMES,
                               ROOT_ATTRIBUTES, UNITS_NOTE, Dataset, dataset, datasets_table,
                               evaluate_shape)
from rtml.data._frames import FrameBlocks
from rtml.data._trajectory import Trajectory
from rtml.units import UNITS

__doc__ = __doc__.replace("{DATASETS_TABLE}", datasets_table())

#: Filter settings for the density datasets (``None``: no compression; see module doc).
_DENSITY_COMPRESSION: dict[str, Any] | None = None

_ATTRIBUTES = {a.name: a for a in ROOT_ATTRIBUTES}
_RECORD_FIELDS = frozenset(f.name for f in fields(Trajectory))


def units_attr() -> str:
    """The ``units`` root attribute: JSON of :data:`rtml.units.UNITS` plus a ``note``."""
    return json.dumps({**UNITS, "note": UNITS_NOTE}, sort_keys=True)


# --------------------------------------------------------------------------- writing


def write_trajectory(path: str | os.PathLike, traj: Trajectory) -> Path:
    """Write ``traj`` to one HDF5 file at ``path``, atomically.

    The file is written to ``.{name}.tmp-{pid}`` in the destination directory, closed,
    fsynced and moved over ``path`` with :func:`os.replace`. On any error the temporary
    file is removed and the error re-raised, so ``path`` is either the complete new file
    or untouched (a previous file there survives a failed write).

    Args:
        path: destination file (conventionally ``*.h5``); its directory must exist.
        traj: the trajectory; array shapes must agree (see the module docstring).

    Returns:
        The destination as a :class:`pathlib.Path`.

    Raises:
        InputError: inconsistent array shapes or an ``extra_attrs`` entry that cannot be
            stored (reserved name, unsupported type).
    """
    path = Path(path)
    dims = _check_shapes(traj)
    attrs = _root_attrs(traj, dims)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            for name, value in attrs.items():
                f.attrs[name] = value
            for entry in DATASETS:
                value = getattr(traj, entry.attr)
                if value is not None:  # else an optional dataset the trajectory lacks
                    _write_dataset(f, entry, value)
            f.flush()
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise
    return path


def _write_dataset(f: h5py.File, entry: Dataset, value) -> None:
    """Create the HDF5 dataset(s) of one schema entry and fill them; a
    :class:`~rtml.data.FrameBlocks` value is copied one block of frames at a time."""
    shape = np.shape(value)
    dsets = []
    for name, description in zip(entry.h5_names, entry.h5_descriptions):
        kwargs: dict[str, Any] = {}
        if entry.frame_chunks:
            kwargs["chunks"] = (1,) + shape[1:]
            kwargs.update(_DENSITY_COMPRESSION or {})
        dset = f.create_dataset(name, shape=shape, dtype=np.float64, **kwargs)
        dset.attrs["units"] = entry.units
        dset.attrs["description"] = description
        dsets.append(dset)
    start = 0
    for block in value.blocks() if isinstance(value, FrameBlocks) else (value,):
        for dset, data in zip(dsets, _stored_parts(entry, block)):  # one part in memory
            if data.ndim == 0:
                dset[()] = data
            else:
                dset[start:start + len(data)] = data
        start += len(block) if np.ndim(block) else 0


def _stored_parts(entry: Dataset, value) -> Iterator[np.ndarray]:
    """The float64 arrays stored for a quantity: (Re, Im) of a complex one, else itself."""
    parts = (np.real, np.imag) if entry.kind == "complex" else (np.asarray,)
    for part in parts:
        yield np.ascontiguousarray(part(value), dtype=np.float64)


def _check_shapes(traj: Trajectory) -> dict[str, int]:
    """Return the dimensions of ``traj``; raise :class:`InputError` if arrays disagree."""
    density = np.shape(traj.density)
    if len(density) != 4 or density[2] != density[3]:
        raise InputError(f"trajectory {traj.molecule!r}: density must have shape "
                         f"(n_steps, n_spin, nbf, nbf), got {density}")
    dims = {"n_steps": density[0], "n_spin": density[1], "n_basis": density[2],
            "n_atoms": len(np.asarray(traj.atomic_numbers))}
    if dims["n_spin"] not in (1, 2):
        raise InputError(f"trajectory {traj.molecule!r}: n_spin must be 1 or 2, "
                         f"got {dims['n_spin']}")
    for entry in DATASETS:
        value = getattr(traj, entry.attr)
        if value is None and not entry.required:
            continue
        expected = evaluate_shape(entry.shape, dims)
        if np.shape(value) != expected:
            raise InputError(f"trajectory {traj.molecule!r}: {entry.attr} has shape "
                             f"{np.shape(value)}, expected {expected} ({entry.h5_names[0]})")
    for attribute in (a for a in ROOT_ATTRIBUTES if a.kind == "vector"):
        got = np.shape(getattr(traj, attribute.source))
        if got != attribute.shape:
            raise InputError(f"trajectory {traj.molecule!r}: {attribute.source} must have "
                             f"shape {attribute.shape}, got {got}")
    return dims


def _root_attrs(traj: Trajectory, dims: dict[str, int]) -> dict[str, Any]:
    """All root attributes of the file, in write order (the schema's first, then extras)."""
    derived = {**dims, "units": units_attr(), "format": FORMAT_NAME,
               "format_version": FORMAT_VERSION}
    attrs = {a.name: _encode(a.kind, getattr(traj, a.source)) if a.source else derived[a.name]
             for a in ROOT_ATTRIBUTES}
    for key, value in traj.extra_attrs.items():
        if key in attrs:
            raise InputError(f"trajectory {traj.molecule!r}: extra_attrs key {key!r} "
                             "is a reserved root attribute")
        attrs[key] = _encode_extra(key, value)
    return attrs


def _encode(kind: str, value: Any) -> Any:
    """A record value as the HDF5 root attribute of schema ``kind``."""
    if kind == "json":
        return _to_json(value)
    if kind == "vector":
        return np.asarray(value, dtype=np.float64)
    return {"str": str, "int": int, "float": float}[kind](value)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _to_json(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True)


def _encode_extra(key: str, value: Any) -> Any:
    """Encode one ``extra_attrs`` value as an HDF5 attribute value."""
    if value is None or isinstance(value, (dict, list, tuple)):
        try:
            return _to_json(value)
        except TypeError as err:
            raise InputError(f"extra_attrs[{key!r}]: {err}") from None
    if isinstance(value, (str, bool, int, float, np.bool_, np.number)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return value
    raise InputError(f"extra_attrs[{key!r}]: cannot store a {type(value).__name__} "
                     "as an HDF5 attribute")


# --------------------------------------------------------------------------- reading


#: What h5py raises when the HDF5 library fails on a damaged file ("truncated file",
#: "wrong B-tree signature", "bad object header version number", ...), by where it failed.
_HDF5_LIBRARY_ERRORS = (OSError, RuntimeError, KeyError)


@contextmanager
def open_trajectory_file(path: str | os.PathLike) -> Iterator[h5py.File]:
    """An existing HDF5 file opened read-only for a ``with`` block.

    An error of the HDF5 library while the file is open or read in the block (a truncated
    or corrupt file) becomes one :class:`InputError` naming the file; an error raised
    outside h5py passes unchanged.

    Raises:
        InputError: the file is missing, not HDF5, or truncated or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such trajectory file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            yield f
    except _HDF5_LIBRARY_ERRORS as err:
        if not _raised_in_h5py(err):
            raise
        raise InputError(f"{path}: not a readable HDF5 trajectory file (truncated or corrupt; "
                         f"HDF5 says: {_hdf5_reason(err)})") from None


def _hdf5_reason(err: BaseException) -> str:
    """The HDF5 library's reason, on one line: the last parenthesis of h5py's message
    ("Can't synchronously read data (wrong B-tree signature)" -> "wrong B-tree signature")."""
    text = " ".join(str(err).strip("'\"").split())
    reason = re.search(r"\(([^()]+)\)$", text)
    return reason.group(1) if reason else text


def _raised_in_h5py(err: BaseException) -> bool:
    """Whether ``err`` was raised inside h5py (its innermost frame is in an h5py module)."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and "h5py" in Path(tb.tb_frame.f_code.co_filename).parts


def read_trajectory(path: str | os.PathLike) -> Trajectory:
    """Read a file written by :func:`write_trajectory` (its exact inverse).

    Integer-valued datasets come back as int64, the density as
    ``density_real + 1j * density_imag`` (complex128), the optional Fock matrix likewise
    (``None`` when the file has none, as do the ground-state arrays), ``field_spec`` and
    ``provenance``
    as dicts, and every root attribute outside the schema as an ``extra_attrs`` entry
    (JSON strings starting with ``{`` or ``[``, and ``"null"``, decoded).

    Raises:
        InputError: missing file, not HDF5, not an rtml trajectory (``format`` attribute),
            a newer ``format_version``, or a missing dataset/attribute.
    """
    path = Path(path)
    with open_trajectory_file(path) as f:
        attrs = _read_attrs(path, f)
        values = {entry.attr: _read_dataset(path, f, entry) for entry in DATASETS}
    values.update({a.source: decode_attribute(path, a.name, attrs[a.name])
                   for a in ROOT_ATTRIBUTES if a.source})
    return Trajectory(
        **{k: v for k, v in values.items() if k in _RECORD_FIELDS},
        datasets={k: v for k, v in values.items() if k not in _RECORD_FIELDS and v is not None},
        extra_attrs={k: _decode_extra(v) for k, v in attrs.items()
                     if k not in ROOT_ATTRIBUTE_NAMES},
    )


class Header(NamedTuple):
    """What :func:`read_header` reads of a trajectory file."""

    attrs: dict[str, Any]               # every root attribute, as a Python scalar or array
    shapes: dict[str, tuple[int, ...]]  # HDF5 name -> shape, for the schema datasets present
    arrays: dict[str, np.ndarray]       # Trajectory attribute -> value, for those asked for


def read_header(path: str | os.PathLike, arrays: Iterable[str] = ()) -> Header:
    """A trajectory file's root attributes, the shapes of its datasets, and the datasets
    named in ``arrays`` (Trajectory attributes, read as :func:`read_trajectory` reads
    them): what a reader that does not need the frames wants.

    Raises:
        InputError: as :func:`read_trajectory` for the format, the root attributes and the
            datasets asked for.
    """
    path = Path(path)
    with open_trajectory_file(path) as f:
        attrs = _read_attrs(path, f)
        values = {attr: _read_dataset(path, f, dataset(attr)) for attr in arrays}
        shapes = {name: f[name].shape for entry in DATASETS for name in entry.h5_names
                  if stored_dataset(f, name) is not None}
    return Header(attrs, shapes, values)


def stored_dataset(f: h5py.File, name: str) -> h5py.Dataset | None:
    """The dataset ``name`` of an open file; ``None`` when there is none (absent, or a group).

    Unlike ``f.get(name)``, which answers ``None`` for a group the HDF5 library cannot read,
    a damaged file raises here (and :func:`open_trajectory_file` names it corrupt).
    """
    if name not in f:  # the existence check raises on a damaged group
        return None
    obj = f[name]
    return obj if isinstance(obj, h5py.Dataset) else None


def decode_attribute(path: Path, name: str, value: Any) -> Any:
    """The record value of root attribute ``name`` from its HDF5 value (a JSON string is
    parsed, :class:`InputError` naming ``path`` if it is not valid JSON)."""
    kind = _ATTRIBUTES[name].kind
    if kind == "json":
        try:
            return json.loads(value)
        except (TypeError, json.JSONDecodeError):
            raise InputError(f"{path}: root attribute {name!r} is not valid JSON") from None
    if kind == "vector":
        return np.asarray(value, dtype=np.float64)
    return {"str": str, "int": int, "float": float}[kind](value)


def _read_attrs(path: Path, f: h5py.File) -> dict[str, Any]:
    """Every root attribute as a Python value, after checking the format and that the
    schema's attributes are all there."""
    _check_format(path, f)
    missing = [a for a in ROOT_ATTRIBUTE_NAMES if a not in f.attrs]
    if missing:
        raise InputError(f"{path}: missing root attribute(s) {', '.join(missing)}")
    return {k: _decode_scalar(f.attrs[k]) for k in f.attrs}


def _read_dataset(path: Path, f: h5py.File, entry: Dataset) -> np.ndarray | None:
    """One quantity: complex from its (Re, Im) pair, int64 from integer values, ``None``
    for an optional quantity the file does not have."""
    found = [stored_dataset(f, name) is not None for name in entry.h5_names]
    if not all(found):
        if entry.required:
            raise InputError(f"{path}: missing dataset {entry.h5_names[found.index(False)]!r}")
        if any(found):
            raise InputError(f"{path}: {' and '.join(entry.h5_names)} must come together")
        return None
    parts = [f[name][()] for name in entry.h5_names]
    if entry.kind == "complex":
        return parts[0] + 1j * parts[1]
    if entry.kind == "int":
        return _to_int(path, entry.h5_names[0], parts[0])
    return parts[0]


def _check_format(path: Path, f: h5py.File) -> None:
    fmt = _decode_scalar(f.attrs.get("format"))
    if fmt != FORMAT_NAME:
        raise InputError(f"{path}: not an rtml trajectory (format attribute is {fmt!r}, "
                         f"expected {FORMAT_NAME!r})")
    version = _decode_scalar(f.attrs.get("format_version"))
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{path}: unsupported rtml-trajectory format_version {version!r} "
                         f"(this rtml reads <= {FORMAT_VERSION})")


def _decode_scalar(value: Any) -> Any:
    """HDF5 attribute value -> Python value (bytes -> str, numpy scalars -> Python)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _decode_extra(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped == "null" or stripped[:1] in ("{", "["):
            try:
                return json.loads(stripped)
            except json.JSONDecodeError:
                return value
    return value


def _to_int(path: Path, name: str, data: np.ndarray) -> np.ndarray:
    rounded = np.rint(data)
    if not np.array_equal(rounded, data):
        raise InputError(f"{path}: dataset {name!r} must hold integers")
    return rounded.astype(np.int64)
