"""Real-time TDDFT propagation engines (PySCF), observables and spectra.

Atomic units throughout; AO order is PySCF's. The pieces, from bottom to top:

- :mod:`._fock`: Fock matrices and energies of batches of complex densities, with all
  time-independent data (integrals, grid, AO values on the grid) precomputed once;
- :mod:`._ground_state`: tightly converged RKS/UKS ground states, LR-TDDFT excitations;
- :mod:`._propagators`: Magnus-2, ETRS and Magnus-4 steps in the Löwdin basis;
- :mod:`._response`: the linear response of the Fock matrix, the corrector's cheap model;
- :mod:`._engine`: batched self-consistent propagation with checkpoints;
- :mod:`._record`: the one builder of :class:`rtml.data.Trajectory` records (every engine);
- :mod:`._simulate`: system -> ground state -> resolved fields -> trajectories (PySCF);
- :mod:`._spectrum`: absorption spectra from kicks and a peak finder;
- :mod:`._plot`: plots of those spectra (S in 1/eV) and the figure helpers every rtml plot
  uses (matplotlib, imported when a plot is drawn).

Names resolve on first use (:func:`rtml._lazy.lazy_exports`): a spectrum from a saved dipole
does not import PySCF.
"""

from rtml._lazy import lazy_exports

__all__ = [
    "FockContext", "build_fock_context", "fock_and_energy", "lowdin_orthogonalizer",
    "GroundState", "Excitations",
    "DAVIDSON_TOLERANCES",
    "run_ground_state", "excitation_energies", "electronic_dipole", "ground_state_fock",
    "PROPAGATORS", "exp_hermitian", "step_magnus2", "step_etrs", "PropagationSettings",
    "propagate", "propagate_segment", "apply_kicks", "fock_response", "to_orthonormal",
    "density_to_ao", "fock_to_ao",
    "build_fock_response", "response_size_mb", "xc_kernel", "kernel_context",
    "KERNEL_GRID_COARSENING", "KERNEL_GRID_MIN_LEVEL", "KERNEL_COARSEN_ABOVE",
    "kernel_coarsening", "density_on_grid", "libxc_rows", "block_ao_values",
    "block_point_slices", "Checkpoint", "CheckpointFrames", "PHYSICS_LIMITS", "physics_warnings",
    "PropagationState", "remove_finished_checkpoint", "SimulationInputs", "simulate",
    "prepare_ground_state",
    "converged_ground_state", "resolve_fields", "ground_state_record", "trajectory_record",
    "batch_trajectory_records", "Spectrum", "absorption_spectrum", "find_peaks", "plot_spectrum",
    "agg_pyplot", "draw_spectrum", "figure_record", "save_figure",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "_checkpoint": ["Checkpoint", "CheckpointFrames", "PropagationState",
                    "remove_finished_checkpoint"],
    "_engine": [
        "PHYSICS_LIMITS", "PropagationSettings", "apply_kicks", "density_to_ao", "fock_response",
        "fock_to_ao", "physics_warnings", "propagate", "propagate_segment", "to_orthonormal",
    ],
    "_fock": [
        "FockContext", "block_ao_values", "block_point_slices", "build_fock_context",
        "density_on_grid", "fock_and_energy", "libxc_rows", "lowdin_orthogonalizer",
    ],
    "_ground_state": [
        "DAVIDSON_TOLERANCES", "Excitations", "GroundState", "electronic_dipole",
        "excitation_energies", "ground_state_fock", "run_ground_state",
    ],
    "_propagators": ["PROPAGATORS", "exp_hermitian", "step_etrs", "step_magnus2"],
    "_record": ["trajectory_record"],
    "_response": ["build_fock_response", "response_size_mb", "xc_kernel", "kernel_context",
                  "KERNEL_GRID_COARSENING", "KERNEL_GRID_MIN_LEVEL", "KERNEL_COARSEN_ABOVE",
                  "kernel_coarsening"],
    "_simulate": [
        "SimulationInputs", "batch_trajectory_records", "converged_ground_state",
        "ground_state_record", "prepare_ground_state", "resolve_fields", "simulate",
    ],
    "_plot": ["agg_pyplot", "draw_spectrum", "figure_record", "plot_spectrum", "save_figure"],
    "_spectrum": ["Spectrum", "absorption_spectrum", "find_peaks"],
})
