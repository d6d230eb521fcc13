"""Loading a trained model directory (``model.pt``), whichever kind of model it holds."""

from __future__ import annotations

from pathlib import Path

import torch

from rtml._errors import InputError
from rtml.model._baselines import load_baseline
from rtml.model._ensemble import check_members_agree, ensemble_members, is_ensemble
from rtml.model._rtml import RTMLPropagator, load_rtml

__all__ = ["load_model"]


def load_model(model_dir):
    """Load ``model_dir/model.pt`` into a model object; returns ``(model, state)``.

    Dispatches on ``state["model"]``: ``"rtml"`` -> :func:`rtml.model._rtml.load_rtml`,
    anything else -> :func:`rtml.model._baselines.load_baseline` (persistence, linear).
    An ensemble directory (:mod:`rtml.model._ensemble`) gives one
    :class:`~rtml.model.RTMLPropagator` of all members and the first member's state, with
    ``"members"`` (their directories) added.
    Every returned model has ``one_step(traj)`` and ``rollout_trajectory(traj)``.
    """
    if is_ensemble(model_dir):
        return _load_ensemble(model_dir)
    path = Path(model_dir) / "model.pt"
    if not path.is_file():
        raise InputError(f"no trained model at '{path}'")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated or foreign file: torch raises several kinds, none clear
        raise InputError(f"'{path}' is not a readable model file (damaged, or not written by "
                         "rtml train); retrain the model") from None
    if not isinstance(state, dict):
        raise InputError(f"'{path}' is not an rtml model file (it holds a {type(state).__name__})")
    if state.get("model") == "rtml":
        return load_rtml(state), state
    return load_baseline(state), state


def _load_ensemble(model_dir):
    members = ensemble_members(model_dir)
    loaded = [load_model(m) for m in members]
    states = [state for _, state in loaded]
    check_members_agree(states, [str(m) for m in members])
    if states[0].get("model") != "rtml":
        raise InputError(f"ensemble '{model_dir}' holds {states[0].get('model')} models; ensembles "
                         "are of trained rtml models")
    models = [model for propagator, _ in loaded for model in propagator.members]
    return RTMLPropagator(models), {**states[0], "members": [str(m) for m in members]}
