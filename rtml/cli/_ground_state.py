"""``rtml ground-state``: the SCF ground state and LR-TDDFT excitations of one geometry."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtml import check_output_path
from rtml.chem import SystemSpec, load_molecule, read_matching_geometry
from rtml.cli._threads import set_threads
from rtml.data import write_ground_state
from rtml.engines import EngineOptions, check_engine
from rtml.tddft import converged_ground_state, excitation_energies, ground_state_record
from rtml.units import HARTREE_EV

log = logging.getLogger("rtml")


def cmd_ground_state(args) -> int:
    """SCF and LR-TDDFT states of one geometry, saved for reuse by ``propagate``."""
    set_threads(args.threads)
    spec = load_molecule(args.molecule)
    positions, geometry_id = (None, "eq") if not args.geometry else read_matching_geometry(spec, args.geometry)
    out = Path(args.output)
    check_output_path(out, args.force)
    system = SystemSpec(molecule=spec, positions_angstrom=positions, basis=args.basis, xc=args.xc,
                        grid_level=args.grid_level, geometry_id=geometry_id)
    guess = EngineOptions(guess_dir=args.guess)
    check_engine("pyscf", guess)
    gs = converged_ground_state(system, scf_max_cycle=args.scf_max_cycle,
                                initial_guess=guess.initial_guess())
    exc = excitation_energies(gs, nstates=args.nstates)
    write_ground_state(out, ground_state_record(system, gs, exc, args.nstates))
    log.info("%s (%s): E = %.10f Ha; %d LR-TDDFT states, lowest %.4f eV, brightest %.4f eV "
             "(f = %.3f)", spec.name, geometry_id, gs.energy, len(exc.energies),
             exc.energies[0] * HARTREE_EV,
             exc.energies[np.argmax(exc.oscillator_strengths)] * HARTREE_EV,
             exc.oscillator_strengths.max())
    print(out)
    return 0
