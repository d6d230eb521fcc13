"""Training from a dataset store (``rtml train``): reads only the Zarr store."""

from rtml.train._baselines import (BASELINE_MODELS, fit_linear, load_model, open_store_groups,
                                   train_baseline, trajectory_splits)
from rtml.train._train import TrainConfig, train_rtml

__all__ = ["BASELINE_MODELS", "train_baseline", "fit_linear", "trajectory_splits",
           "open_store_groups", "load_model", "TrainConfig", "train_rtml"]
