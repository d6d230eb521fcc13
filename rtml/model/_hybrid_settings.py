"""Settings of the hybrid engine (:mod:`rtml.model._hybrid`), without torch: the command
line reads its defaults."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtml._errors import InputError


@dataclass
class HybridSettings:
    """When the hybrid engine hands back to the RT engine (relative to the dynamics' size s).

    Attributes
    ----------
    error_tol : float
        Estimated trajectory error, relative to s, that the model's steps may add in all:
        each model step adds the coherence times ε/s, measured at the anchors; once it is
        spent the engine finishes the trajectory. 0.1 is the valid horizon's threshold.
    spread_tol : float
        Ensemble spread accumulated over a model segment, Σσ_k / s, that ends it.
    max_model_steps : int
        Model steps between anchors at most.
    anchor_steps : int
        Engine steps per anchor.
    calibration_steps : int
        Engine steps of the first anchor, with a free model run beside them: how much of the
        model's per-step error adds up over the dynamics (its coherence) is measured there.
    physics_tol : float
        |Tr P' - N| and max|P' - P'†| that end a model segment (a unitary step keeps them
        to rounding; more means the model's numbers went wrong).
    """

    error_tol: float = 0.1
    spread_tol: float = 0.02
    max_model_steps: int = 500
    anchor_steps: int = 4
    calibration_steps: int = 100
    physics_tol: float = 1e-8

    def __post_init__(self):
        for name in ("error_tol", "spread_tol", "physics_tol"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"hybrid {name.replace('_', '-')} must be a positive number, "
                                 f"got {value}")
        for name in ("max_model_steps", "anchor_steps", "calibration_steps"):
            value = getattr(self, name)
            if int(value) != value or value < 1:
                raise InputError(f"hybrid {name.replace('_', '-')} must be a positive integer, "
                                 f"got {value}")
