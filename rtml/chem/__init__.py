"""Molecules and their chemistry setup: the ladder, geometry I/O, PySCF ``Mole`` and SCF
construction, one-electron matrices and the dipole origin, geometry sampling, and DFT grids
that turn with the molecule (:func:`molecule_frame_grids`).

Positions are in Ångström (``positions_angstrom``, shape (natm, 3)); everything handed
to PySCF is built with ``unit='Angstrom'``, spherical basis functions and no symmetry.
A :class:`SystemSpec` names one geometry at one level of theory; dipoles are measured about
the centre of nuclear charge (:func:`one_electron_matrices`, bohr).

Examples:
    >>> from rtml.chem import load_molecule, build_mole, sample_geometries
    >>> spec = load_molecule("h2o")
    >>> build_mole(spec).nao
    13
    >>> [s.id for s in sample_geometries(spec, 1)]
    ['eq']
"""

from rtml.chem._geometry_io import read_geometry, read_matching_geometry, write_geometry
from rtml.chem._integrals import (
    OneElectronMatrices,
    basis_metadata,
    centre_of_nuclear_charge,
    dipole_integrals,
    nuclear_dipole,
    one_electron_matrices,
)
from rtml.chem._grids import molecule_frame, molecule_frame_grids
from rtml.chem._ladder import (
    LADDER,
    MoleculeSpec,
    build_mole,
    build_mole_from_atoms,
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
    bond_angle_deg,
    canonical_basis,
    distinct_angles,
    distinct_bonds,
    finite_difference_hessian,
    normal_modes,
    sample_geometries,
)
from rtml.chem._scf import (
    SCF_CONV_TOL,
    SCF_CONV_TOL_GRAD,
    check_functional,
    converged_scf,
    is_hartree_fock,
    make_scf,
)
from rtml.chem._system import SystemSpec


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
    "build_mole_from_atoms",
    "read_geometry",
    "read_matching_geometry",
    "write_geometry",
    "normal_modes",
    "sample_geometries",
    "distinct_bonds",
    "distinct_angles",
    "bond_angle_deg",
    "canonical_basis",
    "finite_difference_hessian",
    "optimize_ladder_geometry",
    "SystemSpec",
    "SCF_CONV_TOL",
    "SCF_CONV_TOL_GRAD",
    "is_hartree_fock",
    "check_functional",
    "make_scf",
    "converged_scf",
    "OneElectronMatrices",
    "one_electron_matrices",
    "centre_of_nuclear_charge",
    "dipole_integrals",
    "nuclear_dipole",
    "basis_metadata",
]
