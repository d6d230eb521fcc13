"""Ensembles of trained rtml models: a directory of members and the file that lists them.

An ensemble directory holds ``ensemble.json``::

    {"format": 1, "members": ["member-0", "member-1", ...]}

and one trained model directory (``model.pt``, ``rtml train``) per member, named relative to
it. Members share the model config, the dataset and the split (``rtml train --members N``
trains them with the same ``--seed`` and initial-weight seeds ``--init-seed`` + k), so the
ensemble's test split is every member's. :func:`rtml.model.load_model` loads an ensemble as
one :class:`rtml.model.RTMLPropagator` whose step uses the members' mean ΔG'
(:func:`rtml.model.rollout_members`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from rtml._atomic import atomic_write_text
from rtml._errors import InputError

__all__ = ["ENSEMBLE_FILE", "is_ensemble", "ensemble_members", "write_ensemble", "ensemble_sha256",
           "MEMBER_DIR"]

#: The file that makes a directory an ensemble.
ENSEMBLE_FILE = "ensemble.json"
#: Name of member k's directory inside an ensemble written by ``rtml train --members``.
MEMBER_DIR = "member-{k}"
#: Keys of a member's model.pt that every member must share.
_SHARED = ("model", "config", "dataset_sha256", "split")


def is_ensemble(model_dir) -> bool:
    """Whether ``model_dir`` is an ensemble directory (holds ``ensemble.json``)."""
    return (Path(model_dir) / ENSEMBLE_FILE).is_file()


def ensemble_members(model_dir) -> list[Path]:
    """The member directories of the ensemble at ``model_dir``, in order.

    Raises:
        InputError: unreadable ``ensemble.json``, or a member without ``model.pt``.
    """
    path = Path(model_dir) / ENSEMBLE_FILE
    try:
        names = json.loads(path.read_text())["members"]
        if not names or not all(isinstance(n, str) for n in names):
            raise ValueError
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"'{path}' is not a readable ensemble file (expected "
                         '{"format": 1, "members": ["member-0", ...]})') from None
    members = [Path(model_dir) / n for n in names]
    missing = [str(m) for m in members if not (m / "model.pt").is_file()]
    if missing:
        raise InputError(f"ensemble '{model_dir}': member '{missing[0]}' has no model.pt")
    return members


def check_members_agree(states: list[dict], names: list[str]) -> None:
    """Raise :class:`InputError` unless every member state shares config, dataset and split."""
    for key in _SHARED:
        first = states[0].get(key)
        for state, name in zip(states[1:], names[1:]):
            if state.get(key) != first:
                raise InputError(f"ensemble member '{name}' differs from '{names[0]}' in its {key}: "
                                 "members must share the model config, dataset and split")


def write_ensemble(model_dir, member_names: list[str]) -> Path:
    """Write ``model_dir/ensemble.json`` listing ``member_names`` (directories in it)."""
    return atomic_write_text(Path(model_dir) / ENSEMBLE_FILE,
                             json.dumps({"format": 1, "members": list(member_names)}, indent=1) + "\n")


def ensemble_sha256(model_dir) -> str:
    """SHA-256 over the members' ``model.pt`` SHA-256 digests, in order (an ensemble's hash)."""
    digest = hashlib.sha256()
    for member in ensemble_members(model_dir):
        digest.update(hashlib.sha256((member / "model.pt").read_bytes()).hexdigest().encode())
    return digest.hexdigest()
