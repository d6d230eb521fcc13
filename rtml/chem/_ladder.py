"""The molecule ladder: :class:`MoleculeSpec`, loading specs from XYZ files, building Moles.

The ladder is eight small molecules of increasing size, each stored as one extended-XYZ
file ``molecules/<name>.xyz`` (positions in Ångström; the comment line carries
``name``, ``charge``, ``multiplicity``, ``basis``, ``xc`` and ``source``):

=======  ======  ============  ==========================
name     charge  multiplicity  nbf (6-31G, spherical)
=======  ======  ============  ==========================
h2p      +1      2             4
h2       0       1             4
lih      0       1             11
h2o      0       1             13
nh3      0       1             15
ch4      0       1             17
c2h4     0       1             26
c6h6     0       1             66
=======  ======  ============  ==========================

The geometries are PBE0/6-31G equilibria; see :mod:`rtml.chem._optimize` for how they
were made and how to regenerate them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path

import numpy as np
from ase.data import atomic_numbers
from pyscf import gto
from pyscf.data.elements import ELEMENTS
from pyscf.lib.exceptions import BasisNotFoundError

from rtml._errors import InputError
from rtml.chem._geometry_io import (GEOMETRY_SUFFIXES, _one_line, check_atom_distances,
                                   read_geometry, write_geometry)

log = logging.getLogger("rtml.chem")

#: name -> (ase.build.molecule name of the starting structure, charge, multiplicity)
_LADDER_TABLE: dict[str, tuple[str, int, int]] = {
    "h2p": ("H2", 1, 2),
    "h2": ("H2", 0, 1),
    "lih": ("LiH", 0, 1),
    "h2o": ("H2O", 0, 1),
    "nh3": ("NH3", 0, 1),
    "ch4": ("CH4", 0, 1),
    "c2h4": ("C2H4", 0, 1),
    "c6h6": ("C6H6", 0, 1),
}

#: The ladder, smallest first.
LADDER: tuple[str, ...] = tuple(_LADDER_TABLE)

#: Level of theory used when a geometry file does not name one.
DEFAULT_BASIS = "6-31G"
DEFAULT_XC = "pbe0"

#: Environment variable that overrides :func:`molecules_dir`.
MOLECULES_ENV = "RTML_MOLECULES"


def _atomic_number(symbol: str) -> int:
    try:
        return int(atomic_numbers[symbol])
    except KeyError:
        raise InputError(f"unknown element symbol {symbol!r}") from None


def _check_spin(name: str, n_electrons: int, multiplicity: int) -> None:
    """Raise :class:`InputError` unless ``multiplicity`` is possible for ``n_electrons``.

    Possible means: ``n_electrons >= 1``, ``1 <= multiplicity <= n_electrons + 1`` and
    ``n_electrons`` and ``2S = multiplicity - 1`` have the same parity.
    """
    if n_electrons < 1:
        raise InputError(f"molecule {name!r} has {n_electrons} electrons; charge is too large")
    if multiplicity < 1 or multiplicity - 1 > n_electrons:
        raise InputError(
            f"molecule {name!r}: multiplicity {multiplicity} impossible with "
            f"{n_electrons} electrons"
        )
    if (n_electrons - (multiplicity - 1)) % 2:
        raise InputError(
            f"molecule {name!r}: multiplicity {multiplicity} impossible with {n_electrons} "
            f"electrons (parity mismatch; try multiplicity {2 - n_electrons % 2})"
        )


@dataclasses.dataclass(eq=False)
class MoleculeSpec:
    """One molecule and its default level of theory.

    Attributes:
        name : str
            Short identifier (ladder name or file stem).
        symbols : list of str, length natm
            Element symbols.
        positions_angstrom : ndarray, shape (natm, 3)
            Cartesian positions in Ångström.
        charge : int
            Total charge in units of e.
        multiplicity : int
            Spin multiplicity 2S+1.
        basis : str
            PySCF basis name (used spherical, ``mol.cart = False``).
        xc : str
            PySCF functional name (``"hf"`` means Hartree-Fock).
        source : str
            Where the geometry comes from.
    """

    name: str
    symbols: list[str]
    positions_angstrom: np.ndarray
    charge: int
    multiplicity: int
    basis: str = DEFAULT_BASIS
    xc: str = DEFAULT_XC
    source: str = ""

    def __post_init__(self):
        self.symbols = [str(s) for s in self.symbols]
        self.positions_angstrom = _check_positions(self.positions_angstrom, self.symbols, self.name)
        self.charge = _as_int(self.charge, "charge", self.name)
        self.multiplicity = _as_int(self.multiplicity, "multiplicity", self.name)
        _check_spin(self.name, self.n_electrons, self.multiplicity)

    @property
    def natm(self) -> int:
        """Number of atoms."""
        return len(self.symbols)

    @property
    def atomic_numbers(self) -> np.ndarray:
        """Nuclear charges Z, int array of shape (natm,)."""
        return np.array([_atomic_number(s) for s in self.symbols], dtype=int)

    @property
    def n_electrons(self) -> int:
        """Number of electrons, :math:`N = \\sum_A Z_A - q`."""
        return int(self.atomic_numbers.sum()) - int(self.charge)

    @property
    def spin(self) -> int:
        """PySCF ``mol.spin`` = 2S = N_alpha - N_beta = multiplicity - 1."""
        return self.multiplicity - 1


def _as_int(value, what: str, name: str) -> int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise InputError(f"molecule {name!r}: {what} {value!r} is not an integer") from None
    if not as_float.is_integer() or isinstance(value, bool):
        raise InputError(f"molecule {name!r}: {what} {value!r} is not an integer")
    return int(as_float)


def _check_positions(positions, symbols, name: str) -> np.ndarray:
    """Return ``positions`` as a float64 (natm, 3) array or raise :class:`InputError`
    (wrong shape, non-finite, two atoms closer than
    :data:`~rtml.chem._geometry_io.MIN_ATOM_DISTANCE_ANGSTROM`)."""
    natm = len(symbols)
    try:
        pos = np.array(positions, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("positions_angstrom is not a numeric array") from None
    if pos.shape != (natm, 3):
        raise InputError(f"positions_angstrom has shape {pos.shape}; expected ({natm}, 3)")
    if not np.all(np.isfinite(pos)):
        raise InputError("positions_angstrom contains non-finite values")
    check_atom_distances(symbols, pos, f"molecule {name!r}")
    return pos


def molecules_dir() -> Path:
    """Directory holding the ladder's ``<name>.xyz`` files.

    ``$RTML_MOLECULES`` if set, else ``molecules/`` next to the ``rtml`` package
    (the repository's top-level ``molecules/``).
    """
    env = os.environ.get(MOLECULES_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "molecules"


def spec_from_geometry(name, symbols, positions_angstrom, info=None, source="") -> MoleculeSpec:
    """Make a :class:`MoleculeSpec` from a geometry and its ``info`` dict.

    ``info`` may carry ``charge`` (default 0), ``multiplicity`` (default 1 for an even
    number of electrons, else 2, which is logged), ``basis`` (default ``6-31G``), ``xc``
    (default ``pbe0``) and ``source`` (default: the ``source`` argument).
    """
    info = dict(info or {})
    charge = _as_int(info.get("charge", 0), "charge", name)
    if "multiplicity" in info:
        multiplicity = _as_int(info["multiplicity"], "multiplicity", name)
    else:
        n_electrons = sum(_atomic_number(str(s)) for s in symbols) - charge
        multiplicity = 1 if n_electrons % 2 == 0 else 2
        if multiplicity == 2:
            log.info("molecule %r has an odd number of electrons (%d) and no multiplicity: "
                     "multiplicity 2 (doublet) is assumed; write multiplicity=N on the "
                     "comment line of its .xyz file to choose another", name, n_electrons)
    return MoleculeSpec(
        name=str(name),
        symbols=list(symbols),
        positions_angstrom=positions_angstrom,
        charge=charge,
        multiplicity=multiplicity,
        basis=str(info.get("basis", DEFAULT_BASIS)),
        xc=str(info.get("xc", DEFAULT_XC)),
        source=str(info.get("source", source)),
    )


def load_molecule(name_or_path) -> MoleculeSpec:
    """Load a ladder molecule by name, or any molecule from an XYZ / extended-XYZ file.

    Args:
        name_or_path : str or Path
            A ladder name (see :data:`LADDER`, case-insensitive), read from
            ``molecules_dir() / f"{name}.xyz"``; or a path to an ``.xyz``/``.extxyz``
            file. For a file, the spec's name is the file stem and the comment line's
            ``charge``/``multiplicity``/``basis``/``xc``/``source`` are used when present
            (defaults: 0, 1 or 2 by electron parity, ``6-31G``, ``pbe0``).

    Returns:
        :class:`MoleculeSpec`

    Raises:
        InputError: unknown name, unreadable file or impossible charge/multiplicity.

    Examples:
        >>> load_molecule("h2o").n_electrons
        10
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise InputError(f"molecule must be a name or a path, got {name_or_path!r}")
    text = os.fspath(name_or_path)
    key = text.strip().lower()
    if not isinstance(name_or_path, os.PathLike) and key in _LADDER_TABLE:
        path = molecules_dir() / f"{key}.xyz"
        if not path.is_file():
            raise InputError(
                f"ladder molecule {key!r} has no geometry file '{path}' "
                f"(set ${MOLECULES_ENV} or run 'python -m rtml.chem._optimize {key}')"
            )
        name = key
    elif Path(text).suffix.lower() in GEOMETRY_SUFFIXES:
        path = Path(text)
        name = path.stem
    else:
        raise InputError(
            f"unknown molecule {text!r}; known: {', '.join(LADDER)} "
            f"(or a path to an .xyz/.extxyz file)"
        )
    symbols, positions, info = read_geometry(path)
    return spec_from_geometry(name, symbols, positions, info, source=f"read from {path}")


def ladder() -> list[MoleculeSpec]:
    """All ladder molecules in :data:`LADDER` order."""
    return [load_molecule(name) for name in LADDER]


def save_molecule(spec: MoleculeSpec, path) -> Path:
    """Write ``spec`` as extended XYZ (positions in Å, level of theory in the comment line)."""
    info = {
        "name": spec.name,
        "charge": int(spec.charge),
        "multiplicity": int(spec.multiplicity),
        "basis": spec.basis,
        "xc": spec.xc,
        "source": spec.source,
    }
    return write_geometry(path, spec.symbols, spec.positions_angstrom, info)


def build_mole(spec: MoleculeSpec, basis=None, positions_angstrom=None, verbose=0):
    """Build a PySCF :class:`~pyscf.gto.Mole` for ``spec``.

    Args:
        spec : MoleculeSpec
        basis : str, optional
            Override ``spec.basis``.
        positions_angstrom : array_like, shape (natm, 3), optional
            Override ``spec.positions_angstrom`` (Ångström), e.g. a sampled geometry.
        verbose : int
            PySCF verbosity (0 = silent).

    Returns:
        pyscf.gto.Mole, built, with ``unit='Angstrom'``, ``charge=spec.charge``,
        ``spin=spec.multiplicity - 1``, ``cart=False`` and ``symmetry=False``.

    Raises:
        InputError: wrong positions shape, two atoms at (nearly) the same position,
            impossible charge/multiplicity, unknown basis.
    """
    basis = spec.basis if basis is None else basis
    if positions_angstrom is None:
        positions = spec.positions_angstrom
    else:
        positions = _check_positions(positions_angstrom, spec.symbols, spec.name)
    _check_spin(spec.name, spec.n_electrons, spec.multiplicity)

    mol = gto.Mole()
    mol.atom = [(s, tuple(float(x) for x in r)) for s, r in zip(spec.symbols, positions)]
    mol.unit = "Angstrom"
    mol.charge = int(spec.charge)
    mol.spin = int(spec.multiplicity - 1)
    mol.basis = basis
    mol.cart = False
    mol.symmetry = False
    mol.verbose = verbose
    mol.output = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PySCF suggests basis-set-exchange on a miss
            mol.build(dump_input=False, parse_arg=False)
    except (BasisNotFoundError, KeyError) as exc:  # KeyError: a name PySCF cannot parse
        raise InputError(
            f"unknown basis {basis!r} for molecule {spec.name!r}: {_one_line(exc)}"
        ) from None
    return mol


def build_mole_from_atoms(name, atomic_numbers, positions_angstrom, basis, charge=0,
                          multiplicity=1, verbose=0):
    """:func:`build_mole` for atoms given by atomic number, as a trajectory file or a store
    records them (``atomic_numbers`` (natm,), ``positions_angstrom`` (natm, 3), Å)."""
    symbols = [ELEMENTS[int(z)] for z in atomic_numbers]
    spec = MoleculeSpec(name=str(name), symbols=symbols,
                        positions_angstrom=np.asarray(positions_angstrom, dtype=float),
                        charge=int(charge), multiplicity=int(multiplicity), basis=str(basis),
                        xc=DEFAULT_XC)
    return build_mole(spec, verbose=verbose)
