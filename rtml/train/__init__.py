"""Training from a dataset store (``rtml train``): reads only the Zarr store.

``load_model`` is re-exported from :mod:`rtml.model` (where it lives) for old callers.
"""

from rtml.model._loading import load_model
from rtml.train._baselines import BASELINE_MODELS, train_baseline
from rtml.train._train import TrainConfig, train_rtml

__all__ = ["BASELINE_MODELS", "train_baseline", "load_model", "TrainConfig", "train_rtml"]
