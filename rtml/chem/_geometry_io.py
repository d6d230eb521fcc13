"""Reading and writing molecular geometries (XYZ / extended XYZ) through ASE.

Positions are in Ångström on disk and in memory (``positions_angstrom``); convert to
bohr with :data:`rtml.units.ANGSTROM_BOHR` only where a calculation needs it.

The comment line of an extended-XYZ file carries ``key=value`` pairs, e.g.::

    name=h2o charge=0 multiplicity=1 basis=6-31G xc=pbe0 source="..." pbc="F F F"

which come back as the ``info`` dict (ints as ``int``, floats as ``float``, everything
else as ``str``/``bool``); a ``key=value`` whose key is not in :data:`INFO_KEYS` is kept
but logged as a warning (a misspelt ``multiplicty=3`` would otherwise be ignored). Plain XYZ
files (free-text comment line) are read too.

:func:`read_geometry` checks the first frame line by line before ASE parses it, so a bad
file is named with the line at fault: the atom count (line 1), the comment line and its
``Properties`` (line 2), then each atom line (enough columns, numbers where numbers belong,
a known element, finite positions).
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable

import ase
import ase.io
import numpy as np
from ase.data import atomic_numbers
from ase.io.extxyz import key_val_str_to_dict, parse_properties

from rtml._errors import InputError

log = logging.getLogger("rtml.chem")

#: File suffixes handled by :func:`read_geometry` / :func:`write_geometry`.
GEOMETRY_SUFFIXES = (".xyz", ".extxyz")

#: Atoms closer than this (Å) are refused: no molecule has them (the shortest bond, H2's,
#: is 0.74 Å), and PySCF stops on them with a traceback ("Ill geometry").
MIN_ATOM_DISTANCE_ANGSTROM = 0.1

#: Comment-line keys rtml reads (``charge``, ``multiplicity``, ``basis``, ``xc``, ``source``:
#: :func:`rtml.chem.spec_from_geometry`; ``sample_id``, ``id``: :func:`read_matching_geometry`)
#: or writes for people to read (``name``; ``kind``, ``description``, ``seed``: ``rtml
#: sample-geometries``). ASE itself takes ``Properties``, ``Lattice`` and ``pbc``.
INFO_KEYS = ("name", "charge", "multiplicity", "basis", "xc", "source", "id", "sample_id",
             "kind", "description", "seed")

#: The columns of an atom line when the comment line names no ``Properties``.
_DEFAULT_PROPERTIES = "species:S:1:pos:R:3"
#: What a column read by each of ASE's converters must hold (the others accept anything).
_COLUMN_KINDS = {float: "a real number", int: "an integer"}


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
        InputError: the file is missing or empty; a line of its first frame is malformed
            (the message names the file and the line: not text, no atom count, too few
            atom lines or columns, a value of the wrong type, an unknown element, a
            non-finite position); or two atoms are closer than
            :data:`MIN_ATOM_DISTANCE_ANGSTROM`.
    """
    path = Path(path)
    _check_suffix(path)
    if not path.is_file():
        raise InputError(f"cannot read geometry file '{path}': no such file")
    frame = _first_frame(path, _text_lines(path))
    try:
        atoms = ase.io.read(io.StringIO("".join(frame)), index=0, format="extxyz")
    except Exception as exc:  # ASE raises many types (XYZError, ValueError, ...)
        raise InputError(f"cannot read geometry file '{path}', lines 1-{len(frame)}: "
                         f"{_one_line(exc)}") from None
    positions = np.array(atoms.get_positions(), dtype=np.float64)
    symbols = list(atoms.get_chemical_symbols())
    check_atom_distances(symbols, positions, f"geometry file '{path}'")
    info = {str(k): _plain(v) for k, v in atoms.info.items()}
    _warn_unknown_keys(path, frame[1], info)
    return symbols, positions, info


def _line_error(path: Path, line: int, problem: str) -> InputError:
    """The error for a problem at 1-based ``line`` of geometry file ``path``."""
    return InputError(f"cannot read geometry file '{path}', line {line}: {problem}")


def _text_lines(path: Path) -> list[str]:
    """The file's lines (with their ends); :class:`InputError` naming the line of the first
    byte that is not UTF-8 text."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8").splitlines(keepends=True)
    except UnicodeDecodeError as err:
        raise _line_error(path, data[:err.start].count(b"\n") + 1,
                          f"not text (byte 0x{data[err.start]:02x})") from None


def _first_frame(path: Path, lines: list[str]) -> list[str]:
    """The lines of the first frame (atom count, comment, one line per atom), each checked.

    Raises:
        InputError: an empty file, or naming the first line at fault.
    """
    if not any(line.strip() for line in lines):
        raise InputError(f"cannot read geometry file '{path}': file is empty")
    try:
        n_atoms = int(lines[0])
    except ValueError:
        raise _line_error(path, 1, f"expected the number of atoms, got "
                                   f"{lines[0].strip()!r}") from None
    if n_atoms < 1:
        raise _line_error(path, 1, f"no atoms (the atom count is {n_atoms})")
    if len(lines) < 2:
        raise _line_error(path, 2, "the comment line is missing (the file ends after line 1)")
    columns = _atom_columns(path, lines[1])
    if len(lines) < n_atoms + 2:
        raise _line_error(path, len(lines) + 1, f"the file ends after {len(lines) - 2} atom "
                                                f"line(s); line 1 announces {n_atoms}")
    for number, line in enumerate(lines[2:n_atoms + 2], start=3):
        _check_atom_line(path, number, line, columns)
    return lines[:n_atoms + 2]


def _atom_columns(path: Path, comment: str) -> list[tuple[str, Callable[[str], Any]]]:
    """(property name, ASE's converter of its text) of each column of an atom line, from
    the comment line's ``Properties`` (default ``species:S:1:pos:R:3``)."""
    try:
        info = key_val_str_to_dict(comment.strip()) if comment.strip() else {}
        properties, names, _, converters = parse_properties(
            info.get("Properties", _DEFAULT_PROPERTIES))
    except Exception as exc:  # ASE raises ValueError, IndexError, ... on a malformed line
        raise _line_error(path, 2, f"cannot parse the comment line: {_one_line(exc)}") from None
    labels = [name for name in names for _ in range(properties[name][1])]
    return list(zip(labels, converters))


def _check_atom_line(path: Path, number: int, line: str,
                     columns: list[tuple[str, Callable[[str], Any]]]) -> None:
    """Raise :class:`InputError` naming line ``number`` unless it has a value of the right
    type in each column, a known element in ``species`` and finite numbers in ``pos``."""
    values = line.split()
    if len(values) < len(columns):
        layout = " ".join(name for name, _ in columns)
        raise _line_error(path, number, f"expected {len(columns)} columns ({layout}), found "
                                        f"{len(values)}: {line.strip()!r}")
    for (name, convert), value in zip(columns, values):
        if name == "species" and value.capitalize() not in atomic_numbers:
            raise InputError(f"unknown element {value!r} in '{path}', line {number}")
        try:
            parsed = convert(value)
        except ValueError:
            raise _line_error(path, number, f"column {name!r} must be {_COLUMN_KINDS[convert]}, "
                                            f"got {value!r}") from None
        if name == "pos" and not math.isfinite(parsed):
            raise _line_error(path, number, f"position {value!r} is not finite")


def _warn_unknown_keys(path: Path, comment: str, info: dict) -> None:
    """Log one warning naming the ``key=value`` keys of the comment line that rtml does not
    know (bare words of a free-text comment are not keys)."""
    unknown = [key for key in info if key not in INFO_KEYS
               and re.search(rf"(?:^|\s){re.escape(key)}\s*=", comment)]
    if unknown:
        log.warning("geometry file '%s': comment-line key(s) %s not used by rtml (known: %s)",
                    path, ", ".join(map(repr, unknown)), ", ".join(INFO_KEYS))


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
