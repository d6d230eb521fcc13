"""Evaluation of trained models against RT-TDDFT references and baselines (``rtml evaluate``).

Metric definitions: :mod:`rtml.evaluate._metrics`; aggregation, files and plots:
:mod:`rtml.evaluate._run`; an ensemble's spread against its error:
:mod:`rtml.evaluate._calibration`.
"""

from rtml.evaluate._calibration import (CALIBRATION_BINS, calibration_table, is_monotonic,
                                        plot_calibration, spread_and_error, spread_calibration)
from rtml.evaluate._metrics import (SCALED_L2_WINDOWS, STATIC_ATOL, VALID_HORIZON_THRESHOLD,
                                    dipole_from_density, dipole_nrmse, dynamics_scale,
                                    error_curve_quantiles, is_static, mean_squared_error,
                                    peak_shifts, physics_compliance, relative_error_curve,
                                    rollout_errors_at, scaled_l2, spectrum_nrmse,
                                    spectrum_overlap, valid_horizon)
from rtml.evaluate._plots import HORIZON_MARKER_GID, plot_results
from rtml.evaluate._run import (HORIZONS, TSV_COLUMNS, aggregate, dipole_operator, evaluate,
                                evaluate_models, evaluate_trajectory, reference, tsv_columns,
                                write_calibration, write_metrics)

__all__ = ["evaluate", "evaluate_models", "evaluate_trajectory", "reference", "write_metrics",
           "plot_results", "HORIZON_MARKER_GID", "aggregate", "tsv_columns", "dipole_operator",
           "error_curve_quantiles", "HORIZONS", "TSV_COLUMNS", "mean_squared_error",
           "relative_error_curve", "dynamics_scale", "is_static", "valid_horizon",
           "rollout_errors_at", "scaled_l2", "dipole_nrmse", "spectrum_nrmse",
           "physics_compliance", "dipole_from_density", "spectrum_overlap", "peak_shifts",
           "SCALED_L2_WINDOWS", "STATIC_ATOL", "VALID_HORIZON_THRESHOLD", "CALIBRATION_BINS",
           "calibration_table", "is_monotonic", "plot_calibration", "spread_and_error",
           "spread_calibration", "write_calibration"]
