"""Deterministic, geometry-disjoint train/val/test assignment (no torch needed).

:func:`assign_splits` is shared by :class:`rtml.data.TrajectoryWindows` and
:func:`rtml.data.trajectory_splits`.
"""

from __future__ import annotations

import hashlib
import math
from typing import Iterable, Sequence

from rtml._errors import InputError

SPLITS = ("train", "val", "test")


def _unit_interval(text: str) -> float:
    """A stable number in [0, 1) from ``text`` (SHA-256, not Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        f = tuple(float(x) for x in fractions)
    except (TypeError, ValueError):
        raise InputError(f"fractions must be 3 numbers (train, val, test), "
                         f"got {fractions!r}") from None
    if len(f) != 3 or any(not math.isfinite(x) or x < 0 for x in f) or sum(f) <= 0:
        raise InputError(f"fractions must be 3 non-negative numbers (train, val, test) with a "
                         f"positive sum, got {fractions!r}")
    total = sum(f)
    return (f[0] / total, f[1] / total, f[2] / total)


def assign_splits(geometries: Iterable[tuple[str, str]], fractions=(0.8, 0.1, 0.1),
                  seed: int = 0) -> dict[tuple[str, str], str]:
    """Assign each ``(molecule, geometry_id)`` to ``"train"``, ``"val"`` or ``"test"``.

    Each key gets ``u = sha256(f"{seed}:{molecule}/{geometry_id}")`` mapped to [0, 1) and
    goes to train if ``u < f_train``, val if ``u < f_train + f_val``, else test
    (fractions normalised to sum 1). The assignment of a geometry does not depend on the
    other geometries, so adding geometries later does not move existing ones, except for
    this guarantee: a molecule with at least 2 geometries gets at least one train geometry
    (the smallest ``u``) and, if ``f_test > 0``, at least one test geometry (the largest
    ``u`` among val, else among train).

    Returns:
        ``{(molecule, geometry_id): split}``.
    """
    f_train, f_val, f_test = _check_fractions(fractions)
    by_mol: dict[str, set[str]] = {}
    for mol, geo in geometries:
        by_mol.setdefault(str(mol), set()).add(str(geo))
    out: dict[tuple[str, str], str] = {}
    for mol, geos in by_mol.items():
        u = {g: _unit_interval(f"{seed}:{mol}/{g}") for g in sorted(geos)}
        split = {g: "train" if x < f_train else "val" if x < f_train + f_val else "test"
                 for g, x in u.items()}
        if len(geos) >= 2:
            if f_train > 0 and "train" not in split.values():
                split[min(u, key=u.get)] = "train"
            if f_test > 0 and "test" not in split.values():
                pool = [g for g in u if split[g] == "val"] or [g for g in u if split[g] == "train"]
                split[max(pool, key=u.get)] = "test"
        out.update({(mol, g): s for g, s in split.items()})
    return out
