"""Evaluation of trained models against RT-TDDFT references and baselines (``rtml evaluate``)."""

from rtml.evaluate._metrics import (dipole_from_density, mean_squared_error, peak_shifts,
                                    physics_compliance, relative_error_curve, spectrum_overlap,
                                    valid_horizon)
from rtml.evaluate._run import evaluate, evaluate_models, evaluate_trajectory

__all__ = ["evaluate", "evaluate_models", "evaluate_trajectory", "mean_squared_error",
           "relative_error_curve", "valid_horizon", "physics_compliance", "dipole_from_density",
           "spectrum_overlap", "peak_shifts"]
