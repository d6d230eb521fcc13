r"""The rtml trajectory file: one HDF5 file per :class:`~rtml.data.Trajectory`.

On-disk schema (``format = "rtml-trajectory"``, ``format_version = 1``)
-----------------------------------------------------------------------
Every dataset is float64, the integer-valued ones included, and carries the attributes
``units`` and ``description``. ``nbf`` is the number of AOs, in PySCF AO order (for l=1:
px, py, pz).

=============================  ==========================  ==========================
dataset                        shape                       units
=============================  ==========================  ==========================
``geometry/positions``         (n_atoms, 3)                angstrom
``geometry/atomic_numbers``    (n_atoms,)                  dimensionless (integers)
``basis/atom_index``           (nbf,)                      dimensionless (integers)
``basis/angular_momentum``     (nbf,)                      dimensionless (integers)
``basis/magnetic_quantum``     (nbf,)                      dimensionless (integers)
``matrices/overlap``           (nbf, nbf)                  dimensionless
``matrices/core_hamiltonian``  (nbf, nbf)                  hartree
``dynamics/density_real``      (n_steps, n_spin, nbf, nbf) electrons
``dynamics/density_imag``      (n_steps, n_spin, nbf, nbf) electrons
``dynamics/field``             (n_steps, 3)                a.u. of electric field
``dynamics/time``              (n_steps,)                  a.u. of time
``dynamics/energy``            (n_steps,)                  hartree
``dynamics/dipole``            (n_steps, 3)                e*bohr
``dynamics/fock_real`` *       (n_steps, n_spin, nbf, nbf) hartree
``dynamics/fock_imag`` *       (n_steps, n_spin, nbf, nbf) hartree
``ground_state/density`` *     (n_spin, nbf, nbf)          electrons
``ground_state/fock`` *        (n_spin, nbf, nbf)          hartree
=============================  ==========================  ==========================

Datasets marked * are optional (:data:`OPTIONAL_DATASETS`): written when the
:class:`~rtml.data.Trajectory` has them (the rtml engine always does; files imported from
NWChem do not) and read back as ``None`` when absent. ``fock_real``/``fock_imag`` are the
AO Fock matrix F[P(t)] of each frame without the field term (complex Hermitian: exact
exchange of Im P gives an imaginary antisymmetric part), as accepted by the engine's step
for that time point (a full build or the linear-response corrector's prediction, within
its tolerance of a fresh build); ``ground_state/density`` is the SCF density P0 of the
geometry (from the converged orbitals, idempotent) and ``ground_state/fock`` F0 = F[P0]
with the same Fock build as the dynamics.

The density is stored as :math:`P(t) = \mathrm{Re}\,P + i\,\mathrm{Im}\,P`, one frame per
HDF5 chunk (chunk shape ``(1, n_spin, nbf, nbf)``) so that a frame, or a block of frames,
is read without touching the rest of the file. The Fock matrix is stored and chunked the
same way.

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
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from rtml._errors import InputError
from rtml.data._trajectory import Trajectory
from rtml.units import UNITS

FORMAT_NAME = "rtml-trajectory"
FORMAT_VERSION = 1

#: Filter settings for the density datasets (``None``: no compression; see module doc).
_DENSITY_COMPRESSION: dict[str, Any] | None = None

#: Conventions recorded beside the UNITS dict in the ``units`` root attribute.
UNITS_NOTE = (
    "positions in angstrom, everything else atomic units; "
    "AO order is PySCF's (p: px,py,pz)"
)

# (dataset, Trajectory attribute, symbolic shape, units, description)
DATASETS: tuple[tuple[str, str, tuple[str | int, ...], str, str], ...] = (
    ("geometry/positions", "positions_angstrom", ("n_atoms", 3), UNITS["positions"],
     "Cartesian nuclear positions"),
    ("geometry/atomic_numbers", "atomic_numbers", ("n_atoms",), "dimensionless",
     "nuclear charges Z (integer-valued, stored as float64)"),
    ("basis/atom_index", "basis_atom_index", ("n_basis",), "dimensionless",
     "0-based atom of each AO, PySCF AO order (integer-valued, stored as float64)"),
    ("basis/angular_momentum", "basis_angular_momentum", ("n_basis",), "dimensionless",
     "angular momentum l of each AO (integer-valued, stored as float64)"),
    ("basis/magnetic_quantum", "basis_magnetic_quantum", ("n_basis",), "dimensionless",
     "real-spherical-harmonic m of each AO; l=1 is (px,py,pz) = m (+1,-1,0) "
     "(integer-valued, stored as float64)"),
    ("matrices/overlap", "overlap", ("n_basis", "n_basis"), UNITS["overlap"],
     "AO overlap S_uv = <u|v>"),
    ("matrices/core_hamiltonian", "core_hamiltonian", ("n_basis", "n_basis"),
     UNITS["core_hamiltonian"], "AO core Hamiltonian h = T + V_nuc"),
    ("dynamics/density_real", "density", ("n_steps", "n_spin", "n_basis", "n_basis"),
     UNITS["density"], "real part of the AO density P(t) (n_spin=1: total; 2: alpha, beta)"),
    ("dynamics/density_imag", "density", ("n_steps", "n_spin", "n_basis", "n_basis"),
     UNITS["density"], "imaginary part of the AO density P(t)"),
    ("dynamics/field", "field", ("n_steps", 3), UNITS["field"],
     "applied electric field E(t) at each saved time (zero for a delta kick)"),
    ("dynamics/time", "time", ("n_steps",), UNITS["time"], "time t of each saved frame"),
    ("dynamics/energy", "energy", ("n_steps",), UNITS["energy"],
     "molecular energy E[P(t)] (electronic + nuclear repulsion), without the field term"),
    ("dynamics/dipole", "dipole", ("n_steps", 3), UNITS["dipole"],
     "total dipole (electrons + nuclei) about the dipole_origin root attribute"),
)

#: Optional datasets (same columns as :data:`DATASETS`): written when the Trajectory
#: attribute is not None, read back as None when absent. ``fock_real``/``fock_imag`` come
#: as a pair.
OPTIONAL_DATASETS: tuple[tuple[str, str, tuple[str | int, ...], str, str], ...] = (
    ("dynamics/fock_real", "fock", ("n_steps", "n_spin", "n_basis", "n_basis"),
     UNITS["energy"], "real part of the AO Fock matrix F[P(t)] without the field term "
     "(n_spin=2: alpha, beta); the matrix the propagator accepted for the frame (full build "
     "or linear-response corrector prediction within its tolerance)"),
    ("dynamics/fock_imag", "fock", ("n_steps", "n_spin", "n_basis", "n_basis"),
     UNITS["energy"], "imaginary part of the AO Fock matrix F[P(t)] (antisymmetric: exact "
     "exchange of Im P)"),
    ("ground_state/density", "ground_state_density", ("n_spin", "n_basis", "n_basis"),
     UNITS["density"], "SCF ground-state AO density P0 of this geometry, from the converged "
     "orbitals (idempotent; n_spin=1: total)"),
    ("ground_state/fock", "ground_state_fock", ("n_spin", "n_basis", "n_basis"),
     UNITS["energy"], "F0 = F[P0], the ground-state AO Fock matrix built with the same Fock "
     "build as the dynamics (no field term)"),
)

#: Per-frame matrices stored as real/imaginary pairs, chunked one frame per chunk.
_COMPLEX_PAIRS = {"dynamics/density_real": ("density", np.real),
                  "dynamics/density_imag": ("density", np.imag),
                  "dynamics/fock_real": ("fock", np.real),
                  "dynamics/fock_imag": ("fock", np.imag)}

#: Datasets holding integer values (stored as float64, read back as int64).
INTEGER_DATASETS = frozenset({
    "geometry/atomic_numbers", "basis/atom_index",
    "basis/angular_momentum", "basis/magnetic_quantum",
})

#: Root attributes every trajectory file has; anything else is an ``extra_attrs`` entry.
ROOT_ATTRS = (
    "molecule", "n_atoms", "n_electrons", "n_basis", "n_steps", "n_spin", "dt",
    "save_every", "charge", "multiplicity", "xc", "basis", "propagator", "field_spec",
    "dipole_origin", "units", "provenance", "format", "format_version",
)

_STR_ATTRS = ("molecule", "xc", "basis", "propagator")
_INT_ATTRS = ("n_atoms", "n_electrons", "n_basis", "n_steps", "n_spin",
              "save_every", "charge", "multiplicity")


def dataset_shape(shape: tuple[str | int, ...], dims: dict[str, int]) -> tuple[int, ...]:
    """Evaluate a symbolic shape from :data:`DATASETS` with ``dims``
    (keys ``n_atoms, n_basis, n_steps, n_spin``)."""
    return tuple(d if isinstance(d, int) else int(dims[d]) for d in shape)


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
            for name, attr, shape, units, description in DATASETS + OPTIONAL_DATASETS:
                data = getattr(traj, attr)
                if data is None:  # an optional dataset the trajectory does not have
                    continue
                if name in _COMPLEX_PAIRS:
                    data = _COMPLEX_PAIRS[name][1](data)
                data = np.ascontiguousarray(data, dtype=np.float64)
                kwargs: dict[str, Any] = {}
                if name in _COMPLEX_PAIRS:
                    kwargs["chunks"] = (1,) + data.shape[1:]
                    kwargs.update(_DENSITY_COMPRESSION or {})
                dset = f.create_dataset(name, data=data, **kwargs)
                dset.attrs["units"] = units
                dset.attrs["description"] = description
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


def _check_shapes(traj: Trajectory) -> dict[str, int]:
    """Return the dimensions of ``traj``; raise :class:`InputError` if arrays disagree."""
    density = np.asarray(traj.density)
    if density.ndim != 4 or density.shape[2] != density.shape[3]:
        raise InputError(f"trajectory {traj.molecule!r}: density must have shape "
                         f"(n_steps, n_spin, nbf, nbf), got {density.shape}")
    dims = {"n_steps": density.shape[0], "n_spin": density.shape[1],
            "n_basis": density.shape[2], "n_atoms": len(np.asarray(traj.atomic_numbers))}
    if dims["n_spin"] not in (1, 2):
        raise InputError(f"trajectory {traj.molecule!r}: n_spin must be 1 or 2, "
                         f"got {dims['n_spin']}")
    optional = {name for name, *_ in OPTIONAL_DATASETS}
    for name, attr, shape, _, _ in DATASETS + OPTIONAL_DATASETS:
        if name in optional and getattr(traj, attr) is None:
            continue
        expected = dataset_shape(shape, dims)
        got = np.shape(getattr(traj, attr))
        if got != expected:
            raise InputError(f"trajectory {traj.molecule!r}: {attr} has shape {got}, "
                             f"expected {expected} ({name})")
    if np.shape(traj.dipole_origin_bohr) != (3,):
        raise InputError(f"trajectory {traj.molecule!r}: dipole_origin_bohr must have "
                         f"shape (3,), got {np.shape(traj.dipole_origin_bohr)}")
    return dims


def _root_attrs(traj: Trajectory, dims: dict[str, int]) -> dict[str, Any]:
    """All root attributes of the file, in write order (reserved first, then extras)."""
    attrs: dict[str, Any] = {
        "molecule": str(traj.molecule),
        "n_atoms": dims["n_atoms"],
        "n_electrons": int(traj.n_electrons),
        "n_basis": dims["n_basis"],
        "n_steps": dims["n_steps"],
        "n_spin": dims["n_spin"],
        "dt": float(traj.dt),
        "save_every": int(traj.save_every),
        "charge": int(traj.charge),
        "multiplicity": int(traj.multiplicity),
        "xc": str(traj.xc),
        "basis": str(traj.basis),
        "propagator": str(traj.propagator),
        "field_spec": _to_json(traj.field_spec),
        "dipole_origin": np.asarray(traj.dipole_origin_bohr, dtype=np.float64),
        "units": units_attr(),
        "provenance": _to_json(traj.provenance),
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
    }
    for key, value in traj.extra_attrs.items():
        if key in attrs:
            raise InputError(f"trajectory {traj.molecule!r}: extra_attrs key {key!r} "
                             "is a reserved root attribute")
        attrs[key] = _encode_extra(key, value)
    return attrs


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


def open_trajectory_file(path: str | os.PathLike) -> h5py.File:
    """Open an existing HDF5 file read-only; :class:`InputError` if missing or not HDF5."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such trajectory file")
    if not h5py.is_hdf5(path):
        raise InputError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise InputError(f"{path}: cannot open HDF5 file ({err})") from None


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
        _check_format(path, f)
        missing = [a for a in ROOT_ATTRS if a not in f.attrs]
        if missing:
            raise InputError(f"{path}: missing root attribute(s) {', '.join(missing)}")
        attrs = {k: _decode_scalar(f.attrs[k]) for k in f.attrs}
        arrays: dict[str, np.ndarray] = {}
        for name, attr, _, _, _ in DATASETS:
            if not isinstance(f.get(name), h5py.Dataset):
                raise InputError(f"{path}: missing dataset {name!r}")
            data = f[name][()]
            if name in INTEGER_DATASETS:
                data = _to_int(path, name, data)
            arrays[name] = data
        for name, *_ in OPTIONAL_DATASETS:
            obj = f.get(name)
            arrays[name] = obj[()] if isinstance(obj, h5py.Dataset) else None
    if (arrays["dynamics/fock_real"] is None) != (arrays["dynamics/fock_imag"] is None):
        raise InputError(f"{path}: dynamics/fock_real and dynamics/fock_imag must come "
                         "together")
    fock = (None if arrays["dynamics/fock_real"] is None
            else arrays["dynamics/fock_real"] + 1j * arrays["dynamics/fock_imag"])

    extra = {k: _decode_extra(v) for k, v in attrs.items() if k not in ROOT_ATTRS}
    return Trajectory(
        molecule=str(attrs["molecule"]),
        atomic_numbers=arrays["geometry/atomic_numbers"],
        positions_angstrom=arrays["geometry/positions"],
        charge=int(attrs["charge"]),
        multiplicity=int(attrs["multiplicity"]),
        basis=str(attrs["basis"]),
        xc=str(attrs["xc"]),
        n_electrons=int(attrs["n_electrons"]),
        basis_atom_index=arrays["basis/atom_index"],
        basis_angular_momentum=arrays["basis/angular_momentum"],
        basis_magnetic_quantum=arrays["basis/magnetic_quantum"],
        overlap=arrays["matrices/overlap"],
        core_hamiltonian=arrays["matrices/core_hamiltonian"],
        density=arrays["dynamics/density_real"] + 1j * arrays["dynamics/density_imag"],
        time=arrays["dynamics/time"],
        field=arrays["dynamics/field"],
        energy=arrays["dynamics/energy"],
        dipole=arrays["dynamics/dipole"],
        dt=float(attrs["dt"]),
        save_every=int(attrs["save_every"]),
        propagator=str(attrs["propagator"]),
        field_spec=_from_json(path, "field_spec", attrs["field_spec"]),
        dipole_origin_bohr=np.asarray(attrs["dipole_origin"], dtype=np.float64),
        provenance=_from_json(path, "provenance", attrs["provenance"]),
        extra_attrs=extra,
        fock=fock,
        ground_state_density=arrays["ground_state/density"],
        ground_state_fock=arrays["ground_state/fock"],
    )


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


def _from_json(path: Path, name: str, value: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, json.JSONDecodeError):
        raise InputError(f"{path}: root attribute {name!r} is not valid JSON") from None


def _to_int(path: Path, name: str, data: np.ndarray) -> np.ndarray:
    rounded = np.rint(data)
    if not np.array_equal(rounded, data):
        raise InputError(f"{path}: dataset {name!r} must hold integers")
    return rounded.astype(np.int64)
