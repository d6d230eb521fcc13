"""Settings of a training run (:class:`TrainConfig`) and the names of the trainable models.

Kept apart from the training loop so that ``rtml train --help`` and the workflow read the
defaults without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

from rtml._errors import InputError

__all__ = ["TrainConfig", "BASELINE_MODELS", "NEURAL_MODELS"]

#: ``rtml train --model`` names of the fitted baselines (:mod:`rtml.train._baselines`).
BASELINE_MODELS = ("linear", "persistence")
#: ``rtml train --model`` names of the learned model -> its ``ModelConfig.dynamics``.
NEURAL_MODELS = {"rtml": "mamba", "rtml-mlp": "mlp"}


@dataclass
class TrainConfig:
    """Settings of a training run (stored in checkpoints)."""

    epochs: int = 24
    batch_size: int = 4
    frame_batches: int = 80
    frames_per_trajectory: int = 32
    sequence_epochs: int = 4
    sequence_frames: int = 1024
    lr: float = 5e-3
    weight_decay: float = 0.0
    warmup_steps: int = 5
    rollout_horizons: tuple = (16, 32, 64, 128, 256)
    rollout_batches: int = 2
    rollout_weight: float = 1.0
    val_horizon: int = 256
    seed: int = 0
    split_by: str = "geometry"
    held_out_molecules: tuple = ()
    fractions: tuple = (0.8, 0.1, 0.1)
    molecules: tuple | None = None
    model: dict = dc_field(default_factory=dict)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.frame_batches < 0 or self.sequence_epochs < 0:
            raise InputError("frame_batches and sequence_epochs must be >= 0, got "
                             f"{self.frame_batches}, {self.sequence_epochs}")
        if self.frame_batches == 0 and self.sequence_epochs == 0:
            raise InputError("frame_batches and sequence_epochs are both 0: no training step would "
                             "run (an untrained model)")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"lr must be a positive number, got {self.lr}")
        if not self.rollout_horizons or min(self.rollout_horizons) < 1:
            raise InputError(f"rollout_horizons must be positive step counts, got {self.rollout_horizons}")

    @classmethod
    def from_window(cls, window: int, **settings) -> TrainConfig:
        """Settings whose rollout curriculum doubles up to a window of ``window`` saved frames.

        ``rollout_horizons`` is (W/2^k, ..., W/4, W/2, W) with every term >= 16 (integer
        halving, so W = 256 gives 16, 32, 64, 128, 256 and W = 100 gives 25, 50, 100), or
        just (W,) when W < 32. The other fields are ``settings``.
        """
        horizons = [window]
        while horizons[0] // 2 >= 16:
            horizons.insert(0, horizons[0] // 2)
        return cls(rollout_horizons=tuple(horizons), **settings)
