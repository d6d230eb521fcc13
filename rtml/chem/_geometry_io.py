"""Reading and writing molecular geometries (XYZ / extended XYZ) through ASE.

Positions are in Ångström on disk and in memory (``positions_angstrom``); convert to
bohr with :data:`rtml.units.ANGSTROM_BOHR` only where a calculation needs it.

The comment line of an extended-XYZ file carries ``key=value`` pairs, e.g.::

    name=h2o charge=0 multiplicity=1 basis=6-31G xc=pbe0 source="..." pbc="F F F"

which come back as the ``info`` dict (ints as ``int``, floats as ``float``, everything
else as ``str``/``bool``). Plain XYZ files (free-text comment line) are read too.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import ase
import ase.io
import numpy as np

from rtml._errors import InputError

#: File suffixes handled by :func:`read_geometry` / :func:`write_geometry`.
GEOMETRY_SUFFIXES = (".xyz", ".extxyz")

#: Atoms closer than this (Å) are refused: no molecule has them (the shortest bond, H2's,
#: is 0.74 Å), and PySCF stops on them with a traceback ("Ill geometry").
MIN_ATOM_DISTANCE_ANGSTROM = 0.1


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in GEOMETRY_SUFFIXES:
        raise InputError(
            f"unsupported geometry file '{path}': expected one of {', '.join(GEOMETRY_SUFFIXES)}"
        )


def _one_line(exc: BaseException) -> str:
    """``str(exc)`` squeezed onto one line (falls back to the exception's class name)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def check_atom_distances(symbols, positions_angstrom, where: str) -> None:
    r"""Refuse a geometry with two atoms closer than :data:`MIN_ATOM_DISTANCE_ANGSTROM`.

    :math:`d_{ij} = |\mathbf R_i - \mathbf R_j|` over all pairs i < j.

    Args:
        symbols: element symbols, length natm.
        positions_angstrom: (natm, 3) positions, Å.
        where: what the geometry is, for the message (``"geometry file 'x.xyz'"``).

    Raises:
        InputError: naming the closest pair (1-based indices and symbols) and its distance.
    """
    positions = np.asarray(positions_angstrom, dtype=np.float64)
    first, second = np.triu_indices(len(positions), k=1)
    distances = np.linalg.norm(positions[first] - positions[second], axis=-1)
    too_close = distances < MIN_ATOM_DISTANCE_ANGSTROM
    if not too_close.any():
        return
    k = int(np.argmin(distances))
    i, j = int(first[k]), int(second[k])
    more = int(too_close.sum()) - 1
    also = f" (and {more} more pair{'s' if more > 1 else ''})" if more else ""
    raise InputError(f"{where}: atoms {i + 1} ({symbols[i]}) and {j + 1} ({symbols[j]}) are "
                     f"{distances[k]:.3f} Å apart, closer than {MIN_ATOM_DISTANCE_ANGSTROM} Å"
                     f"{also}")


def _plain(value):
    """Turn numpy scalars/arrays from ASE's parser into plain Python values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def read_geometry(path) -> tuple[list[str], np.ndarray, dict]:
    """Read the first frame of an XYZ / extended-XYZ file.

    Args:
        path : str or Path
            ``.xyz`` or ``.extxyz`` file; positions in Ångström.

    Returns:
        symbols : list of str, length natm
            Element symbols (``"H"``, ``"Li"``, ...).
        positions_angstrom : ndarray, shape (natm, 3), float64
            Cartesian positions in Ångström.
        info : dict
            ``key=value`` pairs from the comment line (``charge``, ``multiplicity``,
            ``basis``, ``xc``, ``source``, ...), with plain Python values.

    Raises:
        InputError: the file is missing, empty, unreadable, holds no atoms or two atoms
            closer than :data:`MIN_ATOM_DISTANCE_ANGSTROM`.
    """
    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise InputError(f"cannot read geometry file '{path}': no such file")
    try:
        atoms = ase.io.read(path, index=0, format="extxyz")
    except StopIteration:
        raise InputError(f"cannot read geometry file '{path}': file is empty") from None
    except Exception as exc:  # ASE raises many types (XYZError, ValueError, IndexError, ...)
        raise InputError(f"cannot read geometry file '{path}': {_one_line(exc)}") from None
    if len(atoms) == 0:
        raise InputError(f"cannot read geometry file '{path}': no atoms")
    positions = np.array(atoms.get_positions(), dtype=np.float64)
    if not np.all(np.isfinite(positions)):
        raise InputError(f"cannot read geometry file '{path}': non-finite positions")
    symbols = list(atoms.get_chemical_symbols())
    check_atom_distances(symbols, positions, f"geometry file '{path}'")
    info = {str(k): _plain(v) for k, v in atoms.info.items()}
    return symbols, positions, info


def read_matching_geometry(spec, path) -> tuple[np.ndarray, str]:
    """Positions (Å, (n_atoms, 3)) and geometry id of a geometry file for molecule ``spec``.

    The file must list the molecule's atoms in the molecule's order. The id is the file's
    ``sample_id`` (``rtml sample-geometries``), else its ``id``, else the file name's stem.
    """
    symbols, positions, info = read_geometry(path)
    if [s.lower() for s in symbols] != [s.lower() for s in spec.symbols]:
        raise InputError(f"geometry '{path}' has atoms {' '.join(symbols)} but "
                         f"{spec.name} has {' '.join(spec.symbols)} (same order required)")
    return positions, str(info.get("sample_id", info.get("id", Path(path).stem)))


def write_geometry(path, symbols, positions_angstrom, info=None) -> Path:
    """Write one frame as extended XYZ, atomically.

    The file is written to a temporary file in the destination directory and moved into
    place with :func:`os.replace`, so readers never see a half-written file.

    Args:
        path : str or Path
            Destination, ``.xyz`` or ``.extxyz``.
        symbols : sequence of str, length natm
        positions_angstrom : array_like, shape (natm, 3)
            Positions in Ångström (written with 8 decimals, i.e. to 1e-8 Å).
        info : dict, optional
            ``key=value`` pairs for the comment line (str, int, float or bool values).

    Returns:
        The destination path.

    Raises:
        InputError: shapes do not match or the directory cannot be written.
    """
    path = Path(path)
    _check_suffix(path)
    symbols = [str(s) for s in symbols]
    positions = np.asarray(positions_angstrom, dtype=np.float64)
    if positions.shape != (len(symbols), 3):
        raise InputError(
            f"positions_angstrom has shape {positions.shape}; expected ({len(symbols)}, 3)"
        )
    try:
        atoms = ase.Atoms(symbols=symbols, positions=positions, pbc=False)
    except Exception as exc:
        raise InputError(f"cannot build atoms for '{path}': {_one_line(exc)}") from None
    atoms.info.update(dict(info or {}))

    directory = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise InputError(f"cannot write geometry file '{path}': {_one_line(exc)}") from None
    try:
        with os.fdopen(fd, "w") as handle:
            ase.io.write(handle, atoms, format="extxyz")
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise InputError(f"cannot write geometry file '{path}': {_one_line(exc)}") from None
        raise
    return path
