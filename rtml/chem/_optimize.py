"""Regenerate the ladder's equilibrium geometries (``molecules/<name>.xyz``).

Recipe, per molecule:

1. start from ``ase.build.molecule(<g2 name>)`` (H2+ starts from H2);
2. run PySCF RKS (UKS for open shells) at the molecule's default level, PBE0/6-31G
   (spherical), SCF ``conv_tol = 1e-10``, default DFT grid (level 3);
3. optimise with geomeTRIC through :func:`pyscf.geomopt.geometric_solver.kernel` with
   tight criteria (:data:`CONVERGENCE`, Gaussian "tight" thresholds);
4. move the centre of mass (isotope-averaged masses) to the origin and keep the
   orientation the optimiser returns (|x| < 5e-9 Å is set to exactly 0).

Command line (writes ``molecules_dir()/<name>.xyz`` unless ``--out-dir`` is given)::

    OMP_NUM_THREADS=1 python -m rtml.chem._optimize h2 lih h2o
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pyscf
from ase.build import molecule

from rtml._errors import ConvergenceError, InputError, RtmlError
from rtml.chem._ladder import (
    _LADDER_TABLE,
    DEFAULT_BASIS,
    DEFAULT_XC,
    LADDER,
    MoleculeSpec,
    build_mole,
    molecules_dir,
    save_molecule,
)
from rtml.chem._scf import make_scf

#: geomeTRIC convergence criteria (Gaussian "tight"): Eh, Eh/bohr, Eh/bohr, Å, Å.
CONVERGENCE = {
    "convergence_energy": 1e-8,
    "convergence_grms": 1e-5,
    "convergence_gmax": 1.5e-5,
    "convergence_drms": 4e-5,
    "convergence_dmax": 6e-5,
}

#: SCF convergence threshold on the energy (Eh) during the optimisation.
SCF_CONV_TOL = 1e-10


def starting_spec(name: str, xc: str = DEFAULT_XC, basis: str = DEFAULT_BASIS) -> MoleculeSpec:
    """The ladder molecule ``name`` at its ``ase.build.molecule`` starting geometry."""
    key = str(name).strip().lower()
    if key not in _LADDER_TABLE:
        raise InputError(f"unknown molecule {name!r}; known: {', '.join(LADDER)}")
    ase_name, charge, multiplicity = _LADDER_TABLE[key]
    atoms = molecule(ase_name)
    return MoleculeSpec(
        name=key,
        symbols=atoms.get_chemical_symbols(),
        positions_angstrom=atoms.get_positions(),
        charge=charge,
        multiplicity=multiplicity,
        basis=basis,
        xc=xc,
        source=f"ase.build.molecule({ase_name!r})",
    )


def centre_of_mass_angstrom(mol) -> np.ndarray:
    """Centre of mass of ``mol`` in Å, shape (3,), with isotope-averaged masses.

    .. math:: R = \\sum_A m_A R_A / \\sum_A m_A
    """
    mass = mol.atom_mass_list(isotope_avg=True)
    return mass @ mol.atom_coords(unit="Angstrom") / mass.sum()


def _source_string(spec: MoleculeSpec, restricted: bool, start: str) -> str:
    import geometric  # optional dependency (rtml[optimize]), needed only here

    kind = "RKS" if restricted else "UKS"
    if str(spec.xc).lower() == "hf":
        kind = "RHF" if restricted else "UHF"
    return (
        f"PySCF {pyscf.__version__} {spec.xc.upper()}/{spec.basis} ({kind}) geometry "
        f"optimisation (geomeTRIC {geometric.__version__}, Gaussian-tight criteria, "
        f"SCF conv_tol {SCF_CONV_TOL:g}), start {start}, centre of mass at origin"
    )


def optimize_ladder_geometry(
    name: str,
    xc: str | None = None,
    basis: str | None = None,
    maxsteps: int = 100,
    verbose: int = 0,
) -> MoleculeSpec:
    """Optimise the ladder molecule ``name`` and return its equilibrium :class:`MoleculeSpec`.

    Args:
        name : str
            Ladder name (``h2p``, ``h2``, ..., ``c6h6``).
        xc, basis : str, optional
            Level of theory; default PBE0/6-31G (the ladder's default level).
        maxsteps : int
            Maximum number of geomeTRIC steps.
        verbose : int
            PySCF verbosity of the SCF/gradient objects.

    Returns:
        MoleculeSpec with ``positions_angstrom`` (natm, 3) in Å, centre of mass at the
        origin, and a ``source`` string describing the procedure.

    Raises:
        InputError: unknown name. ConvergenceError: SCF or optimisation not converged.
    """
    # optional dependency (rtml[optimize]): PySCF's solver imports geomeTRIC
    from pyscf.geomopt.geometric_solver import kernel as geometric_kernel

    spec = starting_spec(name, xc=xc or DEFAULT_XC, basis=basis or DEFAULT_BASIS)
    start = spec.source
    mol = build_mole(spec, verbose=verbose)
    mf = make_scf(mol, spec.xc)
    mf.conv_tol = SCF_CONV_TOL
    mf.conv_tol_grad = None  # PySCF default, sqrt(conv_tol)
    try:
        converged, mol_eq = geometric_kernel(mf, maxsteps=maxsteps, **CONVERGENCE)
    except RuntimeError as exc:  # PySCFEngine raises when an SCF does not converge
        raise ConvergenceError(f"geometry optimisation of {spec.name!r} failed: {exc}") from None
    if not converged:
        raise ConvergenceError(
            f"geometry optimisation of {spec.name!r} did not converge in {maxsteps} steps"
        )
    positions = mol_eq.atom_coords(unit="Angstrom") - centre_of_mass_angstrom(mol_eq)
    positions[np.abs(positions) < 5e-9] = 0.0  # symmetry zeros print as 0, not -0
    spec.positions_angstrom = positions
    spec.source = _source_string(spec, mol.spin == 0, start)
    return spec


def main(argv=None) -> int:
    """``python -m rtml.chem._optimize NAME... [--out-dir DIR]``: optimise and write files."""
    parser = argparse.ArgumentParser(
        prog="python -m rtml.chem._optimize",
        description="Re-optimise ladder geometries and write <out-dir>/<name>.xyz",
    )
    parser.add_argument("names", nargs="+", metavar="NAME", help=f"one of {', '.join(LADDER)}")
    parser.add_argument("--out-dir", type=Path, default=None, help="default: molecules_dir()")
    parser.add_argument("--verbose", type=int, default=0, help="PySCF verbosity")
    args = parser.parse_args(argv)
    out_dir = args.out_dir or molecules_dir()
    try:
        for name in args.names:
            t0 = time.perf_counter()
            spec = optimize_ladder_geometry(name, verbose=args.verbose)
            path = save_molecule(spec, out_dir / f"{spec.name}.xyz")
            print(f"{spec.name}: wrote {path} in {time.perf_counter() - t0:.1f} s", flush=True)
    except RtmlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
