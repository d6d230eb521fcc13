"""Which system at which level of theory: a molecule, its geometry, basis, functional and grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtml.chem._ladder import MoleculeSpec, build_mole

__all__ = ["SystemSpec"]


@dataclass
class SystemSpec:
    """One geometry of a molecule at one level of theory: what a ground state depends on.

    Attributes
    ----------
    molecule : MoleculeSpec
    positions_angstrom : (n_atoms, 3) array or None
        Geometry override (sampled geometry); default the spec's equilibrium.
    basis, xc : str or None
        Overrides of the molecule's defaults.
    grid_level : int
        PySCF DFT grid level (0-9).
    geometry_id : str
        Identifier of the geometry sample (``"eq"`` for the equilibrium).
    """

    molecule: MoleculeSpec
    positions_angstrom: np.ndarray | None = None
    basis: str | None = None
    xc: str | None = None
    grid_level: int = 3
    geometry_id: str = "eq"

    @property
    def positions(self) -> np.ndarray:
        """(n_atoms, 3) float positions, Å."""
        if self.positions_angstrom is None:
            return np.asarray(self.molecule.positions_angstrom, dtype=float)
        return np.asarray(self.positions_angstrom, dtype=float)

    @property
    def basis_name(self) -> str:
        return self.basis or self.molecule.basis

    @property
    def xc_name(self) -> str:
        """Functional name, lower case (``"hf"`` for Hartree-Fock)."""
        return (self.xc or self.molecule.xc).lower()

    def mole(self, verbose: int = 0):
        """The built PySCF ``Mole`` of this geometry and basis (:func:`rtml.chem.build_mole`)."""
        return build_mole(self.molecule, basis=self.basis_name, positions_angstrom=self.positions,
                          verbose=verbose)

    def hash_dict(self) -> dict:
        """The system's part of a provenance hash (molecule, geometry, level of theory)."""
        return {
            "molecule": self.molecule.name,
            "symbols": list(self.molecule.symbols),
            "positions_angstrom": self.positions.tolist(),
            "charge": self.molecule.charge,
            "multiplicity": self.molecule.multiplicity,
            "basis": self.basis_name,
            "xc": self.xc_name,
            "grid_level": self.grid_level,
        }
