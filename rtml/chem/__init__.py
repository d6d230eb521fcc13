"""Molecules: the ladder, geometry I/O, PySCF ``Mole`` construction and geometry sampling.

Positions are in Ångström (``positions_angstrom``, shape (natm, 3)); everything handed
to PySCF is built with ``unit='Angstrom'``, spherical basis functions and no symmetry.

Examples:
    >>> from rtml.chem import load_molecule, build_mole, sample_geometries
    >>> spec = load_molecule("h2o")
    >>> build_mole(spec).nao
    13
    >>> [s.id for s in sample_geometries(spec, 1)]
    ['eq']
"""

from rtml.chem._geometry_io import read_geometry, write_geometry
from rtml.chem._ladder import (
    LADDER,
    MoleculeSpec,
    build_mole,
    ladder,
    load_molecule,
    molecules_dir,
    save_molecule,
    spec_from_geometry,
)
from rtml.chem._sampling import (
    KINDS,
    GeometrySample,
    NormalModes,
    normal_modes,
    sample_geometries,
)


def __getattr__(name):
    # imported lazily so that ``python -m rtml.chem._optimize`` does not import it twice
    if name == "optimize_ladder_geometry":
        from rtml.chem._optimize import optimize_ladder_geometry

        return optimize_ladder_geometry
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "LADDER",
    "KINDS",
    "MoleculeSpec",
    "GeometrySample",
    "NormalModes",
    "molecules_dir",
    "load_molecule",
    "ladder",
    "spec_from_geometry",
    "save_molecule",
    "build_mole",
    "read_geometry",
    "write_geometry",
    "normal_modes",
    "sample_geometries",
    "optimize_ladder_geometry",
]
