"""``rtml excitations``: LR-TDDFT excitation energies of a molecule's equilibrium."""

from __future__ import annotations

from rtml.chem import SystemSpec, load_molecule
from rtml.tddft import converged_ground_state, excitation_energies
from rtml.units import HARTREE_EV


def cmd_excitations(args) -> int:
    """Print the LR-TDDFT (full, not TDA) excitation energies and oscillator strengths."""
    spec = load_molecule(args.molecule)
    system = SystemSpec(molecule=spec, basis=args.basis, xc=args.xc, grid_level=args.grid_level)
    gs = converged_ground_state(system)
    exc = excitation_energies(gs, nstates=args.nstates)
    print(f"# {spec.name} {system.xc_name}/{system.basis_name}: full LR-TDDFT (not TDA)")
    print(f"# {'state':>5} {'eV':>10} {'Hartree':>10} {'f':>8}")
    for i, (e, f) in enumerate(zip(exc.energies, exc.oscillator_strengths), start=1):
        print(f"  S{i:<4d} {e * HARTREE_EV:10.4f} {e:10.6f} {f:8.4f}")
    return 0
