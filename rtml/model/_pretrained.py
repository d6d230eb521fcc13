"""Pretrained models shipped with the package (``rtml models``; ``rtml propagate --engine
model`` without ``--model``).

Each lives in ``rtml/model/pretrained/<name>/``: a model directory (an ensemble,
:mod:`rtml.model._ensemble`, or one ``model.pt``) with its model card, ``card.json`` (the
data, settings, hashes and measured metrics; ``MODEL_CARD.md`` is its human-readable form).
``$RTML_PRETRAINED=DIR`` makes rtml look for them in ``DIR`` instead (a site's own models).
The card's ``check`` entry names a tiny trajectory (molecule, field, dt, steps, grid) and
the one-step error the shipped weights give on it, which the tests reproduce.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from rtml._errors import InputError

__all__ = ["pretrained_root", "PRETRAINED_ROOT", "DEFAULT_PRETRAINED", "PretrainedModel", "pretrained_models",
           "pretrained_model", "resolve_model_dir"]

#: Where the shipped models are (unless ``$RTML_PRETRAINED`` names another directory).
PRETRAINED_ROOT = Path(__file__).parent / "pretrained"
#: The model ``rtml propagate --engine model`` uses when ``--model`` is not given.
DEFAULT_PRETRAINED = "ladder-medium"
CARD_FILE = "card.json"


@dataclass(frozen=True)
class PretrainedModel:
    """A shipped model: its name, directory and card (``card.json`` as a dict)."""

    name: str
    path: Path
    card: dict

    @property
    def size_mb(self) -> float:
        """Size on disk of every file of the model, MB."""
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file()) / 1e6


def pretrained_root() -> Path:
    """``$RTML_PRETRAINED`` if set, else :data:`PRETRAINED_ROOT`."""
    return Path(os.environ.get("RTML_PRETRAINED") or PRETRAINED_ROOT)


def pretrained_models() -> list[PretrainedModel]:
    """Every shipped model with a readable card, by name."""
    out = []
    root = pretrained_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            card = d / CARD_FILE
            if d.is_dir() and card.is_file():
                out.append(PretrainedModel(d.name, d, json.loads(card.read_text())))
    return out


def pretrained_model(name: str = DEFAULT_PRETRAINED) -> PretrainedModel:
    """The shipped model ``name``.

    Raises:
        InputError: no such shipped model (the message lists those there are).
    """
    for model in pretrained_models():
        if model.name == name:
            return model
    have = ", ".join(m.name for m in pretrained_models()) or "none"
    raise InputError(f"no pretrained model '{name}' is shipped with this rtml (shipped: {have})")


def resolve_model_dir(model) -> Path:
    """The directory of ``--model``: None -> the default shipped model; a path that exists ->
    itself; otherwise the name of a shipped model."""
    if model is None:
        return pretrained_model().path
    if Path(model).exists():
        return Path(model)
    if "/" not in str(model) and any(m.name == str(model) for m in pretrained_models()):
        return pretrained_model(str(model)).path
    raise InputError(f"--model '{model}' is neither a model directory nor a shipped pretrained "
                     "model (rtml models lists them)")
