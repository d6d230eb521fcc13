"""Settings of a training run (:class:`TrainConfig`) and the names of the trainable models.

Kept apart from the training loop so that ``rtml train --help`` and the workflow read the
defaults without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field as dc_field

from rtml._config_options import add_config_options, config_options
from rtml._errors import InputError
from rtml.model import CHECKPOINT_DEFAULTS

__all__ = ["TrainConfig", "BASELINE_MODELS", "NEURAL_MODELS", "add_train_options",
           "train_options", "ADAPT_EPOCHS", "ADAPT_LR", "adapt_config"]

#: ``rtml train --model`` names of the fitted baselines (:mod:`rtml.train._baselines`).
BASELINE_MODELS = ("linear", "persistence")
#: ``rtml train --model`` names of the learned model -> its ``ModelConfig.dynamics``.
NEURAL_MODELS = {"rtml": "mamba", "rtml-mlp": "mlp"}


#: ``rtml adapt`` defaults: fine-tuning epochs and peak learning rate (a fifth of training's:
#: the weights start near a solution; the starting model is kept unless an epoch validates
#: better).
ADAPT_EPOCHS = 6
ADAPT_LR = 1e-3


def _fractions_from_text(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (train, val, test) fractions."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"--split-fractions must be three numbers train,val,test, got '{text}'")
    return values


def _horizons_from_text(text: str) -> tuple[int, ...]:
    """``"16,32,64"`` -> the rollout-loss horizons, steps."""
    try:
        horizons = tuple(int(h) for h in text.split(","))
    except ValueError:
        horizons = ()
    if not horizons or min(horizons) < 1:
        raise InputError(f"--horizons must be positive integers, got '{text}'")
    return horizons


@dataclass
class TrainConfig:
    """Settings of a training run (stored in checkpoints).

    A field whose metadata has a ``help`` is a command-line option of ``rtml train``
    (:func:`add_train_options`; the metadata keys: :mod:`rtml._config_options`).
    """

    epochs: int = dc_field(default=24, metadata={
        "help": "epochs (default %(default)s); each has --frame-batches steps of ΔG "
                "supervision on random frames"})
    batch_size: int = dc_field(default=4, metadata={"help": "trajectories per batch"})
    frame_batches: int = dc_field(default=80, metadata={
        "help": "ΔG-supervision batches (random frames) per epoch"})
    #: frames drawn from each trajectory of a ΔG-supervision batch
    frames_per_trajectory: int = 32
    sequence_epochs: int = dc_field(default=4, metadata={
        "help": "last epochs that also train on whole trajectories and rollouts through the "
                "exact step (horizon curriculum, --horizons)"})
    #: first frames of each trajectory in the teacher-forced whole-trajectory loss
    sequence_frames: int = 1024
    lr: float = dc_field(default=5e-3, metadata={"help": "peak learning rate (AdamW, cosine)"})
    #: AdamW weight decay
    weight_decay: float = 0.0
    #: optimiser steps of the linear learning-rate warm-up before the cosine decay
    warmup_steps: int = 5
    rollout_horizons: tuple = dc_field(default=(16, 32, 64, 128, 256), metadata={
        "flag": "horizons", "parse": _horizons_from_text,
        "help": "rollout-loss horizon curriculum, steps (default %(default)s)"})
    #: rollout-loss batches per sequence epoch
    rollout_batches: int = 2
    #: weight of the rollout loss against the one-step and ΔG losses
    rollout_weight: float = 1.0
    #: rollout horizon (saved frames) of the validation error that picks the best model
    val_horizon: int = 256
    seed: int = dc_field(default=0, metadata={"help": "split and initialisation seed"})
    init_seed: int | None = dc_field(default=None, metadata={
        "type": int, "help": "seed of the initial weights and batch order only (default: --seed); "
                             "ensemble members share --seed (the same split) and differ in this"})
    split_by: str = dc_field(default="geometry", metadata={
        "choices": ("geometry", "molecule"),
        "help": "geometry (default): each molecule's geometries go to train, val or test "
                "(--split-fractions), --held-out-molecules to test only; molecule: the "
                "--held-out-molecules are the test set (zero-shot), the others' geometries "
                "are split train/val"})
    held_out_molecules: tuple = dc_field(default=(), metadata={
        "nargs": "*", "help": "molecules kept out of training (zero-shot test)"})
    fractions: tuple = dc_field(default=(0.8, 0.1, 0.1), metadata={
        "flag": "split_fractions", "parse": _fractions_from_text,
        "help": "train,val,test by geometry"})
    molecules: tuple | None = dc_field(default=None, metadata={
        "nargs": "+", "help": "molecule groups (default all)"})
    shots: int = dc_field(default=0, metadata={
        "help": "train on only this many training trajectories, drawn with --seed from the "
                "training geometries (few-shot; default 0: all)"})
    #: SHA-256 of the model.pt whose weights start the run (``rtml adapt``); None: fresh
    #: weights. Part of the settings, so a checkpoint of another start is not resumed.
    init_model_sha256: str | None = None
    #: :class:`rtml.model.ModelConfig` keyword arguments of the learned model
    model: dict = dc_field(default_factory=dict)

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.shots < 0:
            raise InputError(f"shots must be >= 0 (0: every training trajectory), got {self.shots}")
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

    @property
    def weights_seed(self) -> int:
        """Seed of the weights, the batch order and the global random states."""
        return self.seed if self.init_seed is None else self.init_seed

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


def add_train_options(parser) -> None:
    """Add to an :class:`argparse.ArgumentParser` the ``rtml train`` option of every
    :class:`TrainConfig` field with a ``help`` (``--epochs``, ``--horizons``, ...: the field's
    default, its metadata's help, choices, nargs and flag; see :mod:`rtml._config_options`)."""
    add_config_options(parser, TrainConfig)


def train_options(args) -> dict:
    """``{field name: value}`` of the options :func:`add_train_options` added, from the parsed
    ``args``, in field order: keyword arguments of :class:`TrainConfig` (``--horizons`` and
    ``--split-fractions`` text parsed, word lists as tuples).

    Raises:
        InputError: malformed ``--horizons`` or ``--split-fractions``.
    """
    return config_options(args, TrainConfig)


def adapt_config(pretrained: dict, shots: int, epochs: int = ADAPT_EPOCHS, lr: float = ADAPT_LR,
                 seed: int = 0, fractions=(0.8, 0.1, 0.1), molecules=None,
                 init_model_sha256: str | None = None) -> TrainConfig:
    """Settings of a fine-tuning run (``rtml adapt``) from a trained model's ``model.pt`` dict:
    its model config and training settings, with the given shots, epochs, learning rate,
    seed, split and molecules, split by geometry with nothing held out.

    Raises:
        InputError: ``shots`` < 1 (zero shots is the pretrained model itself).
    """
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise InputError(f"--shots must be >= 1 (0 shots is the pretrained model itself), "
                         f"got {shots!r}")
    base = {k: v for k, v in pretrained.get("train_config", {}).items()
            if k in TrainConfig.__dataclass_fields__}
    base.update(epochs=epochs, lr=lr, shots=shots, seed=seed, fractions=tuple(fractions),
                molecules=None if molecules is None else tuple(molecules), split_by="geometry",
                held_out_molecules=(), model={**CHECKPOINT_DEFAULTS, **pretrained["config"]},
                init_model_sha256=init_model_sha256)
    if "rollout_horizons" in base:  # a tuple, as TrainConfig compares it on resume
        base["rollout_horizons"] = tuple(base["rollout_horizons"])
    return TrainConfig(**base)
