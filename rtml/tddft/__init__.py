"""Real-time TDDFT propagation engines (PySCF), observables and spectra.

Atomic units throughout; AO order is PySCF's. The pieces, from bottom to top:

- :mod:`._fock`: Fock matrices and energies of batches of complex densities, with all
  time-independent data (integrals, grid, AO values on the grid) precomputed once;
- :mod:`._ground_state`: tightly converged RKS/UKS ground states, LR-TDDFT excitations;
- :mod:`._propagators`: Magnus-2, ETRS and Magnus-4 steps in the Löwdin basis;
- :mod:`._response`: the linear response of the Fock matrix, the corrector's cheap model;
- :mod:`._engine`: batched self-consistent propagation with checkpoints;
- :mod:`._simulate`: molecule + fields -> :class:`rtml.data.Trajectory` records;
- :mod:`._spectrum`: absorption spectra from kicks and a peak finder.
"""

from rtml.tddft._checkpoint import Checkpoint, PropagationState
from rtml.tddft._engine import PropagationSettings, apply_kicks, fock_response, propagate
from rtml.tddft._fock import FockContext, build_fock_context, fock_and_energy
from rtml.tddft._ground_state import (
    Excitations,
    GroundState,
    electronic_dipole,
    excitation_energies,
    ground_state_fock,
    run_ground_state,
)
from rtml.tddft._propagators import PROPAGATORS, exp_hermitian, step_etrs, step_magnus2
from rtml.tddft._simulate import SimulationInputs, basis_metadata, prepare_ground_state, simulate
from rtml.tddft._spectrum import Spectrum, absorption_spectrum, find_peaks

__all__ = [
    "FockContext", "build_fock_context", "fock_and_energy",
    "GroundState", "Excitations", "run_ground_state", "excitation_energies", "electronic_dipole",
    "ground_state_fock",
    "PROPAGATORS", "exp_hermitian", "step_magnus2", "step_etrs",
    "PropagationSettings", "propagate", "apply_kicks", "fock_response", "Checkpoint", "PropagationState",
    "SimulationInputs", "simulate", "prepare_ground_state", "basis_metadata",
    "Spectrum", "absorption_spectrum", "find_peaks",
]
