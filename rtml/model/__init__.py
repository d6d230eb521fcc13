"""Models of density-matrix dynamics.

- :class:`RTMLModel`: e3nn geometry encoder (:class:`GeometryEncoder`), variable-basis
  density codec (:class:`DensityEncoder`/:class:`DensityDecoder`, exact Clebsch-Gordan
  change of basis :func:`decompose_density`/:func:`recompose_density` underneath), field
  encoding (:class:`FieldEncoder`), Mamba dynamics with FiLM (:class:`MambaDynamics`, or
  :class:`MLPDynamics` as the ablation) and the physics projection
  (:func:`project_density`).
- Baselines: :class:`PersistenceModel`, :class:`LinearPropagator`.

All models map P(t_k) and the field to P(t_{k+1}) (complex AO densities, atomic units,
PySCF AO order; geometry in Å) and expose ``one_step(traj)`` / ``rollout_trajectory(traj)``
on a :class:`TrajectoryData` for the evaluation.
"""

from rtml.model._baselines import LinearFit, LinearPropagator, PersistenceModel, load_baseline
from rtml.model._basis_layout import BasisLayout, Shell, pyscf_to_e3nn
from rtml.model._density_codec import (DensityDecoder, DensityEncoder, DensityIrreps,
                                       DensityLatent, decompose_density, recompose_density)
from rtml.model._dynamics import MambaDynamics, MLPDynamics, make_dynamics, mamba_ssm_available
from rtml.model._field import FieldEncoder
from rtml.model._geometry import GeometryEncoder, GeometryFeatures
from rtml.model._hermitian import hermitian_to_real, real_to_hermitian
from rtml.model._projection import (hermiticity_penalty, idempotency_penalty, project_density,
                                    trace_penalty)
from rtml.model._rtml import (ModelConfig, MoleculeBatch, RTMLModel, RTMLPropagator, TrajectoryData,
                              load_rtml, n_per_spin_tensor)

__all__ = [
    "RTMLModel", "ModelConfig", "MoleculeBatch", "RTMLPropagator", "TrajectoryData", "load_rtml",
    "n_per_spin_tensor",
    "GeometryEncoder", "GeometryFeatures", "BasisLayout", "Shell", "pyscf_to_e3nn",
    "DensityEncoder", "DensityDecoder", "DensityIrreps", "DensityLatent", "decompose_density",
    "recompose_density", "FieldEncoder", "MambaDynamics", "MLPDynamics", "make_dynamics",
    "mamba_ssm_available", "project_density", "hermiticity_penalty", "trace_penalty",
    "idempotency_penalty",
    "PersistenceModel", "LinearPropagator", "LinearFit", "load_baseline",
    "hermitian_to_real", "real_to_hermitian",
]
