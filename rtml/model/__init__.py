"""Models of density-matrix dynamics.

- :class:`RTMLModel`: the exact unitary step of RT-TDDFT in the Löwdin basis
  (:mod:`rtml.model._physics`) with a learned, O(3)-equivariant two-electron response ΔG[ΔP]:
  exact Clebsch-Gordan irreps of the density blocks (:func:`decompose_density`), a
  shell-pair codec (:class:`DensityEncoder`/:class:`DensityDecoder`), equivariant message
  passing between atoms and atom pairs (:class:`TokenInteraction`), and per-channel gates from
  Mamba dynamics with FiLM on the e3nn geometry embedding (:class:`MambaDynamics`, or
  :class:`MLPDynamics` as the memoryless ablation). :func:`propagate_model` runs it as an
  engine.
- Baselines: :class:`PersistenceModel`, :class:`LinearPropagator` (ridge map in the Löwdin
  basis); :func:`load_model` loads any trained model directory.

All models map P(t_k) and the field to P(t_{k+1}) (complex AO densities, atomic units,
PySCF AO order; geometry in Å) and expose ``one_step(traj)`` / ``rollout_trajectory(traj)``
on a :class:`TrajectoryData` for the evaluation.
"""

from rtml.model._baselines import (LinearFit, LinearPropagator, PersistenceModel, fit_linear,
                                   fit_ridge_map, load_baseline)
from rtml.model._basis_layout import BasisLayout, Shell, pyscf_to_e3nn
from rtml.model._density_codec import (DensityDecoder, DensityEncoder, DensityIrreps,
                                       DensityLatent, decompose_density, recompose_density)
from rtml.model._dynamics import MambaDynamics, MLPDynamics, make_dynamics, mamba_ssm_available
from rtml.model._geometry import GeometryEncoder, GeometryFeatures
from rtml.model._loading import load_model
from rtml.model._hermitian import hermitian_to_real, real_to_hermitian
from rtml.model._physics import (apply_coulomb_exchange, coulomb_exchange_operators,
                                 exponential_step, lowdin_transforms, stationary_fock)
from rtml.model._engine import model_sha256, propagate_model
from rtml.model._rtml import (ModelConfig, MoleculeSystem, RTMLModel, RTMLPropagator, TokenInteraction,
                              build_system, load_rtml, midpoint_fields, stack_systems,
                              system_from_trajectories)

__all__ = [
    "RTMLModel", "ModelConfig", "MoleculeSystem", "RTMLPropagator", "TokenInteraction", "load_rtml",
    "build_system", "stack_systems", "propagate_model", "model_sha256", "system_from_trajectories", "midpoint_fields", "apply_coulomb_exchange",
    "coulomb_exchange_operators", "exponential_step", "lowdin_transforms", "stationary_fock",
    "GeometryEncoder", "GeometryFeatures", "BasisLayout", "Shell", "pyscf_to_e3nn",
    "DensityEncoder", "DensityDecoder", "DensityIrreps", "DensityLatent", "decompose_density",
    "recompose_density", "MambaDynamics", "MLPDynamics", "make_dynamics",
    "mamba_ssm_available",
    "PersistenceModel", "LinearPropagator", "LinearFit", "fit_ridge_map", "fit_linear",
    "load_baseline",
    "load_model",
    "hermitian_to_real", "real_to_hermitian",
]
