r"""Shell structure of a PySCF AO basis and its map onto e3nn irreps.

AO-order convention (verified numerically in ``tests/model/test_density_codec.py``)
-----------------------------------------------------------------------------------
PySCF orders the spherical AOs of a shell by real-harmonic index ``m``:

======  ===============================  =========================================
l       PySCF order                      e3nn 0.6 order of ``Irreps("1x{l}{p}")``
======  ===============================  =========================================
0       s                                s
1       (px, py, pz), m = (+1, -1, 0)    (x, y, z)
2       (dxy, dyz, dz2, dxz, dx2-y2),    (xz, xy, y^2 - (x^2+z^2)/2, yz,
        m = -2..2                        sqrt(3)/2 (z^2 - x^2)) -- y is e3nn's polar axis
======  ===============================  =========================================

The change of basis is an orthogonal matrix :math:`U_l` per angular momentum,

.. math::

    \phi^{e3nn}_{\mu} = \sum_m (U_l)_{\mu m}\, \phi^{pyscf}_m ,

with :math:`U_0 = U_1 = 1` (no permutation for p) and, for d,

.. math::

    U_2 = \begin{pmatrix}
        0 & 0 & 0 & 1 & 0\\
        1 & 0 & 0 & 0 & 0\\
        0 & 0 & -1/2 & 0 & -\sqrt3/2\\
        0 & 1 & 0 & 0 & 0\\
        0 & 0 & \sqrt3/2 & 0 & -1/2
    \end{pmatrix}

(rows: e3nn components; columns: dxy, dyz, dz2, dxz, dx2-y2). ``U_2`` is **not** a
permutation: e3nn's l=2 basis mixes dz2 and dx2-y2. With it, a rotation (or improper
rotation) :math:`R` of the molecule acts on AO matrices as

.. math::

    P' = R_{ao} P R_{ao}^T, \qquad
    R_{ao} = \bigoplus_{\text{shells } s} U_{l_s}^T D^{l_s}(R)\, U_{l_s},

where :math:`D^{l}(R)` is e3nn's ``Irreps("1x{l}{p}").D_from_matrix(R)`` (computed in
float64 by :func:`wigner_D_from_matrix`) with parity
:math:`p = (-1)^l` (an AO of angular momentum l has parity :math:`(-1)^l`). The test
compares this with PySCF overlaps and densities computed at rotated geometries.

A *shell* here is one contracted function of one angular momentum on one atom (PySCF
``bas`` entries with ``nctr > 1`` give several shells). Shells are read off the per-AO
metadata stored in the dataset (``basis_atom_index``, ``basis_angular_momentum``,
``basis_magnetic_quantum``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import NamedTuple

import numpy as np
import torch
from e3nn import o3

#: Highest angular momentum with a known PySCF -> e3nn change of basis.
LMAX_SUPPORTED = 2


def pyscf_m_order(l: int) -> tuple[int, ...]:
    """Real-harmonic m of the AOs of one PySCF spherical shell, in PySCF order.

    Parameters
    ----------
    l : int
        Angular momentum.

    Returns
    -------
    tuple of int, length 2l+1
        ``(+1, -1, 0)`` for p (px, py, pz), ``(0,)`` for s, ``(-l, ..., l)`` otherwise.
    """
    if l == 1:
        return (1, -1, 0)
    return tuple(range(-l, l + 1))


def pyscf_to_e3nn(l: int) -> np.ndarray:
    r"""Orthogonal change of basis :math:`U_l` from PySCF real harmonics to e3nn's order.

    Parameters
    ----------
    l : int
        Angular momentum, 0 <= l <= 2.

    Returns
    -------
    ndarray, shape (2l+1, 2l+1), float64
        ``U`` with ``x_e3nn = U @ x_pyscf`` for the AO coefficients of one shell.

    Raises
    ------
    ValueError
        If l is negative or above :data:`LMAX_SUPPORTED`.
    """
    if l in (0, 1):
        return np.eye(2 * l + 1)
    if l == 2:
        h = math.sqrt(3.0) / 2.0
        return np.array([
            [0.0, 0.0, 0.0, 1.0, 0.0],   # xz            <- dxz
            [1.0, 0.0, 0.0, 0.0, 0.0],   # xy            <- dxy
            [0.0, 0.0, -0.5, 0.0, -h],   # y^2-(x^2+z^2)/2
            [0.0, 1.0, 0.0, 0.0, 0.0],   # yz            <- dyz
            [0.0, 0.0, h, 0.0, -0.5],    # (z^2-x^2) sqrt(3)/2
        ])
    raise ValueError(f"angular momentum l={l} is not supported (0 <= l <= {LMAX_SUPPORTED})")


def ao_parity(l: int) -> str:
    """e3nn parity letter of an AO shell of angular momentum l: ``'e'`` or ``'o'``."""
    return "e" if l % 2 == 0 else "o"


@contextlib.contextmanager
def float64_default():
    """Temporarily make float64 torch's default dtype (e3nn builds constants in it)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def wigner_D_from_matrix(irreps, rotation):
    r"""``o3.Irreps(irreps).D_from_matrix(rotation)`` accurate to float64 round-off.

    e3nn 0.6 builds the so(3) generators in torch's *default* dtype, so under a float32
    default ``D_from_matrix`` of a float64 matrix is only float32-accurate (~1e-7). This
    computes in float64 and casts to ``rotation.dtype``.

    Parameters
    ----------
    irreps : str or o3.Irreps
    rotation : Tensor, shape (..., 3, 3)
        Orthogonal matrices (det -1 applies parity).

    Returns
    -------
    Tensor, shape (..., irreps.dim, irreps.dim), dtype of ``rotation``
    """
    with float64_default():
        d = o3.Irreps(irreps).D_from_matrix(rotation.double())
    return d.to(rotation.dtype)


class Shell(NamedTuple):
    """One shell of AOs.

    Attributes
    ----------
    atom : int
        0-based atom index.
    l : int
        Angular momentum.
    start, stop : int
        AO range ``[start, stop)`` in PySCF order (``stop - start == 2l+1``).
    rank : int
        0-based rank among the shells with the same (atom, l), in AO order (1s, 2s, ... -> 0, 1).
    z : int
        Nuclear charge of the atom.
    """

    atom: int
    l: int
    start: int
    stop: int
    rank: int
    z: int

    @property
    def slice(self) -> slice:
        """AO slice of the shell."""
        return slice(self.start, self.stop)


class ShellPair(NamedTuple):
    """A sub-block ``P[shell_a, shell_b]`` of the density matrix.

    Attributes
    ----------
    a, b : int
        Shell indices into :attr:`BasisLayout.shells`.
    target : int
        Atom index (node pairs, ``atom(a) == atom(b)``, ``a <= b``) or edge index into
        :attr:`BasisLayout.edge_index` (edge pairs, ``atom(a) < atom(b)``).
    """

    a: int
    b: int
    target: int


@dataclasses.dataclass(frozen=True, eq=False)
class BasisLayout:
    """Shells, atoms and atom pairs of one molecule's AO basis.

    Build with :meth:`from_metadata` (dataset arrays) or :meth:`from_mole` (a PySCF Mole).

    Attributes
    ----------
    shells : tuple of Shell
        All shells, in AO order.
    atomic_numbers : ndarray, shape (n_atoms,), int64
    nbf : int
        Number of AOs.
    edge_index : ndarray, shape (2, n_edges), int64
        Atom pairs (A, B), A < B, in ``np.triu_indices(n_atoms, 1)`` order.
    node_pairs : tuple of ShellPair
        Same-atom shell pairs ``a <= b``, ordered by atom, then a, then b.
    edge_pairs : tuple of ShellPair
        Shell pairs of atom pairs A < B, ordered by edge, then a, then b.
    """

    shells: tuple[Shell, ...]
    atomic_numbers: np.ndarray
    nbf: int
    edge_index: np.ndarray
    node_pairs: tuple[ShellPair, ...]
    edge_pairs: tuple[ShellPair, ...]
    _cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_metadata(cls, atom_index, angular_momentum, magnetic_quantum,
                      atomic_numbers) -> "BasisLayout":
        """Read shells off per-AO metadata in PySCF AO order.

        A new shell starts where the atom or l changes or the m sequence of the current
        shell is complete (so contracted shells of equal l, e.g. 2s and 3s, are separate).

        Parameters
        ----------
        atom_index : array_like, shape (nbf,), int
            0-based atom of each AO (``basis_atom_index``).
        angular_momentum : array_like, shape (nbf,), int
            l of each AO (``basis_angular_momentum``).
        magnetic_quantum : array_like, shape (nbf,), int
            Real-harmonic m of each AO (``basis_magnetic_quantum``; p is (+1, -1, 0)).
        atomic_numbers : array_like, shape (n_atoms,), int
            Nuclear charges.

        Returns
        -------
        BasisLayout

        Raises
        ------
        ValueError
            Inconsistent lengths, atom indices out of range, l > 2, or an m sequence that
            is not PySCF's for its l.
        """
        atom = np.asarray(atom_index, dtype=np.int64).reshape(-1)
        ang = np.asarray(angular_momentum, dtype=np.int64).reshape(-1)
        mag = np.asarray(magnetic_quantum, dtype=np.int64).reshape(-1)
        z = np.asarray(atomic_numbers, dtype=np.int64).reshape(-1)
        if not (len(atom) == len(ang) == len(mag)) or len(atom) == 0:
            raise ValueError(
                f"basis metadata must be non-empty and of equal length, got atom_index "
                f"{len(atom)}, angular_momentum {len(ang)}, magnetic_quantum {len(mag)}")
        n_atoms = len(z)
        if atom.min() < 0 or atom.max() >= n_atoms:
            raise ValueError(f"basis_atom_index must lie in [0, {n_atoms}) for {n_atoms} atoms")
        shells: list[Shell] = []
        counts: dict[tuple[int, int], int] = {}
        i, nbf = 0, len(atom)
        while i < nbf:
            l, a = int(ang[i]), int(atom[i])
            if l < 0 or l > LMAX_SUPPORTED:
                raise ValueError(
                    f"AO {i}: angular momentum l={l} is not supported (0 <= l <= {LMAX_SUPPORTED})")
            stop = i + 2 * l + 1
            want = pyscf_m_order(l)
            if (stop > nbf or np.any(atom[i:stop] != a) or np.any(ang[i:stop] != l)
                    or tuple(int(m) for m in mag[i:stop]) != want):
                raise ValueError(
                    f"AOs {i}..{stop - 1} do not form a PySCF l={l} shell on atom {a}: expected "
                    f"m = {want}, got m = {tuple(int(m) for m in mag[i:stop])}")
            rank = counts.get((a, l), 0)
            counts[(a, l)] = rank + 1
            shells.append(Shell(a, l, i, stop, rank, int(z[a])))
            i = stop
        return cls._from_shells(tuple(shells), z, nbf)

    @classmethod
    def from_mole(cls, mol) -> "BasisLayout":
        """Layout of a built PySCF Mole (spherical basis, ``mol.cart = False``).

        Raises
        ------
        ValueError
            For a Cartesian basis.
        """
        if getattr(mol, "cart", False):
            raise ValueError("BasisLayout needs a spherical basis (mol.cart = False)")
        atom, ang, mag = [], [], []
        for shell in range(mol.nbas):
            l = mol.bas_angular(shell)
            ms = pyscf_m_order(l)
            for _ in range(mol.bas_nctr(shell)):
                atom += [mol.bas_atom(shell)] * len(ms)
                ang += [l] * len(ms)
                mag += list(ms)
        return cls.from_metadata(atom, ang, mag, mol.atom_charges())

    @classmethod
    def _from_shells(cls, shells, z, nbf) -> "BasisLayout":
        n_atoms = len(z)
        edge_index = np.stack(np.triu_indices(n_atoms, 1)).astype(np.int64)
        by_atom: list[list[int]] = [[] for _ in range(n_atoms)]
        for s, sh in enumerate(shells):
            by_atom[sh.atom].append(s)
        node_pairs = tuple(ShellPair(a, b, atm) for atm in range(n_atoms)
                           for i, a in enumerate(by_atom[atm]) for b in by_atom[atm][i:])
        edge_pairs = tuple(ShellPair(a, b, e) for e, (A, B) in enumerate(edge_index.T)
                           for a in by_atom[A] for b in by_atom[B])
        return cls(shells, z, nbf, edge_index, node_pairs, edge_pairs)

    # ------------------------------------------------------------------ properties
    @property
    def n_atoms(self) -> int:
        """Number of atoms."""
        return len(self.atomic_numbers)

    @property
    def n_edges(self) -> int:
        """Number of atom pairs A < B."""
        return self.edge_index.shape[1]

    @property
    def lmax(self) -> int:
        """Highest angular momentum of any shell."""
        return max(s.l for s in self.shells)

    @property
    def max_rank(self) -> int:
        """Highest shell rank (0-based) among same-(atom, l) shells."""
        return max(s.rank for s in self.shells)

    def __repr__(self) -> str:
        ls = "".join("spdfg"[s.l] for s in self.shells)
        return (f"BasisLayout(n_atoms={self.n_atoms}, nbf={self.nbf}, shells='{ls}', "
                f"Z={self.atomic_numbers.tolist()})")

    # ------------------------------------------------------------------ matrices
    def to_e3nn_matrix(self) -> np.ndarray:
        r"""Block-diagonal orthogonal :math:`U = \bigoplus_s U_{l_s}`, shape (nbf, nbf).

        ``c_e3nn = U @ c_pyscf`` for an AO coefficient vector; ``U P U^T`` expresses an AO
        matrix in e3nn's per-shell component order.
        """
        u = np.zeros((self.nbf, self.nbf))
        for sh in self.shells:
            u[sh.slice, sh.slice] = pyscf_to_e3nn(sh.l)
        return u

    def ao_rotation(self, rotation):
        r"""AO representation :math:`R_{ao}` of a (possibly improper) rotation.

        .. math::

            R_{ao} = \bigoplus_s U_{l_s}^T D^{l_s}(R)\, U_{l_s}, \qquad
            P(\text{rotated molecule}) = R_{ao} P R_{ao}^T

        for the positions rotated as :math:`r' = R r`.

        Parameters
        ----------
        rotation : ndarray or torch.Tensor, shape (3, 3)
            Orthogonal matrix acting on Cartesian column vectors.

        Returns
        -------
        ndarray or torch.Tensor, shape (nbf, nbf)
            Same type (and torch dtype) as ``rotation``.
        """
        is_numpy = not isinstance(rotation, torch.Tensor)
        r = torch.as_tensor(np.asarray(rotation, dtype=np.float64)) if is_numpy else rotation
        out = torch.zeros(self.nbf, self.nbf, dtype=r.dtype, device=r.device)
        blocks = {}
        for l in sorted({s.l for s in self.shells}):
            d = wigner_D_from_matrix(f"1x{l}{ao_parity(l)}", r)
            u = torch.as_tensor(pyscf_to_e3nn(l), dtype=r.dtype, device=r.device)
            blocks[l] = u.T @ d @ u
        for sh in self.shells:
            out[sh.start:sh.stop, sh.start:sh.stop] = blocks[sh.l]
        return out.numpy() if is_numpy else out
