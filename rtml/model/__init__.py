"""Models of density-matrix dynamics.

- :class:`RTMLModel`: the exact unitary step of RT-TDDFT in the Löwdin basis
  (:mod:`rtml.model._physics`) with a learned, O(3)-equivariant two-electron response ΔG[ΔP]:
  exact Clebsch-Gordan irreps of the density blocks (:func:`decompose_density`), a
  shell-pair codec (:class:`DensityEncoder`/:class:`DensityDecoder`), equivariant message
  passing between atoms and atom pairs (:class:`TokenInteraction`), and per-channel gates from
  Mamba dynamics with FiLM on the e3nn geometry embedding (:class:`MambaDynamics`, or
  :class:`MLPDynamics` as the memoryless ablation). :func:`propagate_model` runs it as an
  engine, :func:`propagate_hybrid` beside the RT engine, which re-anchors it.
- Baselines: :class:`PersistenceModel`, :class:`LinearPropagator` (ridge map in the Löwdin
  basis), :class:`LinearResponsePropagator` (the exact step with ΔG linear in ΔP: J, K and
  the ground-state XC kernel, no network); :func:`load_model` loads any trained model directory, or an ensemble of rtml
  models (:mod:`rtml.model._ensemble`: their mean ΔG' drives one exact step);
  :func:`pretrained_models` lists the models shipped with the package.
- :class:`GroundStateGuess`: the SCF's starting density of a new geometry, learned as the
  correction to PySCF's minao guess with the same equivariant tokens and decoder
  (:func:`guess_density` gives PySCF's ``dm0``; ``rtml train-guess`` fits it).

All models map P(t_k) and the field to P(t_{k+1}) (complex AO densities, atomic units,
PySCF AO order; geometry in Å) and expose ``one_step(traj)`` / ``rollout_trajectory(traj)``
on a :class:`TrajectoryData` for the evaluation.

Names resolve on first use (:func:`rtml._lazy.lazy_exports`): the configuration and its
command-line options do not import torch.
"""

from rtml._lazy import lazy_exports

__all__ = [
    "RTMLModel", "ModelConfig", "MoleculeSystem", "RTMLPropagator", "TokenInteraction",
    "load_rtml", "add_model_options", "model_options", "frame_spacing", "build_system",
    "stack_systems", "propagate_model", "model_sha256", "model_provenance",
    "MODEL_PROPAGATOR_NAME", "system_from_trajectories", "midpoint_fields",
    "apply_coulomb_exchange", "coulomb_exchange_operators", "exponential_step",
    "lowdin_transforms", "stationary_fock", "density_norm", "required_channels", "GeometryEncoder",
    "GeometryFeatures", "RadialBasis", "BasisLayout", "Shell", "pyscf_to_e3nn", "float64_default",
    "wigner_D_from_matrix", "DensityEncoder", "DensityDecoder", "DensityIrreps", "DensityLatent",
    "decompose_density", "recompose_density", "density_irreps", "produced_irreps", "FiLM",
    "MambaDynamics", "MLPDynamics", "make_dynamics", "mamba_ssm_available", "PersistenceModel",
    "LinearPropagator", "LinearFit", "fit_ridge_map", "fit_linear", "load_baseline",
    "lowdin_matrix", "lowdin_vector", "reference_density", "load_model", "hermitian_to_real",
    "real_to_hermitian", "LEARNED", "rollout_members", "teacher_forced_members", "ENSEMBLE_FILE",
    "MEMBER_DIR", "is_ensemble", "ensemble_members", "write_ensemble", "ensemble_sha256",
    "pretrained_root", "PRETRAINED_ROOT", "DEFAULT_PRETRAINED", "PretrainedModel", "pretrained_models",
    "pretrained_model", "resolve_model_dir", "EnsembleStepper", "HybridSettings",
    "propagate_hybrid", "HYBRID_PROPAGATOR_NAME", "engine_system", "model_energy",
    "message_geometry", "GroundStateGuess", "GUESS_FILE", "guess_density",
    "load_guess", "minao_density", "purify_density", "relative_density_error",
    "xc_kernel_operator", "XC_KERNEL_GRID_LEVEL", "LinearResponsePropagator",
    "CHECKPOINT_DEFAULTS", "model_config_from_checkpoint", "trapezoid_step",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "_baselines": [
        "LinearFit", "LinearPropagator", "PersistenceModel", "fit_linear", "fit_ridge_map",
        "load_baseline", "lowdin_matrix", "lowdin_vector", "reference_density",
    ],
    "_basis_layout": ["BasisLayout", "Shell", "float64_default", "pyscf_to_e3nn", "wigner_D_from_matrix"],
    "_density_codec": [
        "DensityDecoder", "DensityEncoder", "DensityIrreps", "DensityLatent",
        "decompose_density", "density_irreps", "produced_irreps", "recompose_density",
    ],
    "_dynamics": ["FiLM", "MambaDynamics", "MLPDynamics", "make_dynamics", "mamba_ssm_available"],
    "_geometry": ["GeometryEncoder", "GeometryFeatures", "RadialBasis"],
    "_loading": ["load_model"],
    "_pretrained": ["pretrained_root", "PRETRAINED_ROOT", "DEFAULT_PRETRAINED", "PretrainedModel", "pretrained_models",
                    "pretrained_model", "resolve_model_dir"],
    "_ensemble": ["ENSEMBLE_FILE", "MEMBER_DIR", "is_ensemble", "ensemble_members", "write_ensemble",
                  "ensemble_sha256"],
    "_hermitian": ["hermitian_to_real", "real_to_hermitian"],
    "_physics": [
        "apply_coulomb_exchange", "coulomb_exchange_operators", "density_norm",
        "exponential_step", "lowdin_transforms", "stationary_fock", "xc_kernel_operator",
        "XC_KERNEL_GRID_LEVEL",
    ],
    "_linear_response": ["LinearResponsePropagator"],
    "_engine": ["MODEL_PROPAGATOR_NAME", "engine_system", "model_energy", "model_provenance",
                "model_sha256", "propagate_model"],
    "_hybrid": ["HYBRID_PROPAGATOR_NAME", "propagate_hybrid"],
    "_hybrid_settings": ["HybridSettings"],
    "_ground_state_guess": ["GroundStateGuess", "GUESS_FILE", "guess_density",
                            "load_guess", "minao_density", "purify_density",
                            "relative_density_error"],
    "_config": ["LEARNED", "ModelConfig", "add_model_options", "model_options",
                "CHECKPOINT_DEFAULTS", "model_config_from_checkpoint"],
    "_rtml": [
        "MoleculeSystem", "RTMLModel", "RTMLPropagator", "TokenInteraction", "build_system",
        "frame_spacing", "load_rtml", "midpoint_fields", "required_channels", "stack_systems",
        "system_from_trajectories", "rollout_members", "teacher_forced_members",
        "EnsembleStepper", "message_geometry", "trapezoid_step",
    ],
})
