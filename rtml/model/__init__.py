"""Models of density dynamics: baselines (persistence, linear propagator).

Every model maps P(t_k) and the field at both ends of a step to P(t_{k+1}) and rolls out
from an initial density (``step`` / ``rollout``, complex AO densities, atomic units).
"""

from rtml.model._baselines import LinearFit, LinearPropagator, PersistenceModel, load_baseline
from rtml.model._hermitian import hermitian_to_real, real_to_hermitian

__all__ = ["PersistenceModel", "LinearPropagator", "LinearFit", "load_baseline",
           "hermitian_to_real", "real_to_hermitian"]
