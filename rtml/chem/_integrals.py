r"""One-electron matrices, the dipole origin and AO metadata of a built PySCF molecule.

Every trajectory, ground state and model in rtml measures dipoles about one documented origin,
the centre of nuclear charge :math:`\mathbf O = \sum_A Z_A\mathbf R_A / \sum_A Z_A` (bohr),
with the AO dipole integrals :math:`D^k_{\mu\nu} = \langle\mu|r_k - O_k|\nu\rangle` (PySCF
``int1e_r``). Atomic units, PySCF AO order (spherical functions, p as x, y, z).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from pyscf import scf

__all__ = ["OneElectronMatrices", "one_electron_matrices", "centre_of_nuclear_charge",
           "dipole_integrals", "nuclear_dipole", "basis_metadata"]


class OneElectronMatrices(NamedTuple):
    """Time-independent one-electron data of one geometry (atomic units).

    Attributes
    ----------
    overlap : (nao, nao) S
    hcore : (nao, nao) core Hamiltonian h = T + V_nuc
    dipole_ints : (3, nao, nao) <mu|r - O|nu>
    dipole_origin : (3,) O, the centre of nuclear charge, bohr
    nuclear_dipole : (3,) sum_A Z_A (R_A - O) (zero about this origin, kept for clarity)
    """

    overlap: np.ndarray
    hcore: np.ndarray
    dipole_ints: np.ndarray
    dipole_origin: np.ndarray
    nuclear_dipole: np.ndarray


def centre_of_nuclear_charge(mol) -> np.ndarray:
    r"""Centre of nuclear charge :math:`\mathbf O = \sum_A Z_A\mathbf R_A / \sum_A Z_A`, (3,) bohr."""
    charges = mol.atom_charges().astype(float)
    return charges @ mol.atom_coords(unit="Bohr") / charges.sum()


def dipole_integrals(mol, origin) -> np.ndarray:
    r""":math:`D^k_{\mu\nu} = \langle\mu|r_k - O_k|\nu\rangle`, (3, nao, nao), about ``origin`` (bohr)."""
    with mol.with_common_origin(np.asarray(origin, dtype=float)):
        return mol.intor_symmetric("int1e_r", comp=3)


def nuclear_dipole(mol, origin) -> np.ndarray:
    r""":math:`\sum_A Z_A(\mathbf R_A - \mathbf O)`, (3,) e*bohr, about ``origin`` (bohr)."""
    charges = mol.atom_charges().astype(float)
    return charges @ (mol.atom_coords(unit="Bohr") - origin)


def one_electron_matrices(mol) -> OneElectronMatrices:
    """Overlap, core Hamiltonian and dipole integrals about the centre of nuclear charge."""
    origin = centre_of_nuclear_charge(mol)
    return OneElectronMatrices(overlap=mol.intor_symmetric("int1e_ovlp"),
                               hcore=scf.hf.get_hcore(mol),
                               dipole_ints=dipole_integrals(mol, origin),
                               dipole_origin=origin,
                               nuclear_dipole=nuclear_dipole(mol, origin))


def basis_metadata(mol) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom index, angular momentum l and real-harmonic m of every AO, in PySCF order.

    PySCF orders spherical p functions (px, py, pz), i.e. m = (+1, -1, 0); d and higher
    shells run m = -l..l. Returns three (nao,) int arrays.
    """
    atom, ang, mag = [], [], []
    for shell in range(mol.nbas):
        l = mol.bas_angular(shell)
        ms = [1, -1, 0] if l == 1 else list(range(-l, l + 1))
        for _ in range(mol.bas_nctr(shell)):
            atom += [mol.bas_atom(shell)] * len(ms)
            ang += [l] * len(ms)
            mag += ms
    return np.array(atom), np.array(ang), np.array(mag)
