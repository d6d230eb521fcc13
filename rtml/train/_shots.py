"""Few-shot training: which trajectories a run with ``shots`` > 0 trains on (torch-free)."""

from __future__ import annotations

import numpy as np

from rtml._errors import InputError


def few_shot_selection(train: list, shots: int, seed: int, store) -> list:
    """``shots`` of the training trajectories, drawn without replacement by a generator
    seeded with ``seed`` (a larger ``shots`` with the same seed gives a superset), in store
    order.

    Raises:
        InputError: fewer training trajectories than ``shots``.
    """
    if shots > len(train):
        raise InputError(f"--shots {shots}: '{store}' has only {len(train)} training "
                         "trajectories (its other geometries are validation and test)")
    picked = np.random.default_rng(seed).permutation(len(train))[:shots]
    return [train[k] for k in sorted(int(k) for k in picked)]
