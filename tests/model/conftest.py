"""Shared fixtures of the model tests: fixed seeds, both float dtypes, ``assert_equivariant``.

Test modules get the helpers as fixtures (``conftest`` is not importable by name: other
test folders have their own). Modules with e3nn constants must be *built* in float64
(``rtml.model.float64_default()``) and copied down (``as_dtype``) for
float32; a float32-built module is not float64-accurate after ``.double()``.
"""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from e3nn import o3

from rtml.model import float64_default, wigner_D_from_matrix

#: Equivariance tolerance per dtype (relative to max(1, max |expected|)).
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}
COMPLEX = {torch.float64: torch.complex128, torch.float32: torch.complex64}


@pytest.fixture(autouse=True)
def _fixed_seeds():
    """Every test starts from the same random state; one torch thread (shared machine)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(params=[torch.float64, torch.float32], ids=["float64", "float32"])
def dtype(request) -> torch.dtype:
    """Run a test in float64 and in float32 (tolerances in :data:`TOLERANCE`)."""
    return request.param


@pytest.fixture
def tol(dtype) -> float:
    """Equivariance tolerance of ``dtype``: 1e-10 (float64), 1e-5 (float32)."""
    return TOLERANCE[dtype]


@pytest.fixture
def as_dtype():
    """``as_dtype(module, dtype)``: a copy of a float64-built module in ``dtype``."""
    return lambda module, dtype: copy.deepcopy(module).to(dtype)


@pytest.fixture(name="assert_equivariant")
def assert_equivariant_fixture():
    """The :func:`assert_equivariant` helper."""
    return assert_equivariant


@pytest.fixture(name="random_rotations")
def random_rotations_fixture():
    """The :func:`random_rotations` helper."""
    return random_rotations


def random_rotations(n: int = 2) -> list[torch.Tensor]:
    """``n`` random float64 O(3) matrices; every second one is improper (det -1)."""
    with float64_default():
        return [o3.rand_matrix() * (1 if i % 2 == 0 else -1) for i in range(n)]


def _apply(spec, rotation: torch.Tensor, translation: torch.Tensor, x):
    if spec is None:
        return x
    if isinstance(spec, str) and spec == "cartesian_points":
        return x @ rotation.to(x.dtype).T + translation.to(x.dtype)
    if isinstance(spec, (str, o3.Irreps)):
        return x @ wigner_D_from_matrix(spec, rotation).to(x.dtype).T
    return spec(rotation, x)


def assert_equivariant(func, args, specs_in, specs_out, *, atol: float,
                       rotations=None, translation: bool = True) -> float:
    """Check ``func(*g args) == g func(*args)`` for random rotations, parity and translation.

    Parameters
    ----------
    func : callable
        Returns a tensor or a tuple of tensors.
    args : sequence
        Inputs.
    specs_in, specs_out : sequence
        One per input/output: ``None`` (invariant), an irreps string or ``o3.Irreps`` (acts
        on the last axis with ``D(R)``), ``"cartesian_points"`` (``x R^T + t``; outputs
        get no ``t``), or a callable ``(R, x) -> g x`` (R float64).
    atol : float
        Tolerance on ``max |got - expected| / max(1, max |expected|)``.
    rotations : list of Tensor (3, 3), optional
        Default: one proper and one improper random rotation.
    translation : bool
        Translate ``"cartesian_points"`` inputs by a random vector.

    Returns
    -------
    float
        The largest relative error seen.
    """
    rotations = random_rotations() if rotations is None else rotations
    out = func(*args)
    out = out if isinstance(out, tuple) else (out,)
    assert len(out) == len(specs_out), f"{len(out)} outputs but {len(specs_out)} specs"
    worst = 0.0
    for r in rotations:
        t = torch.randn(3, dtype=torch.float64) if translation else torch.zeros(3, dtype=torch.float64)
        got = func(*[_apply(s, r, t, a) for s, a in zip(specs_in, args)])
        got = got if isinstance(got, tuple) else (got,)
        zero = torch.zeros(3, dtype=torch.float64)
        for i, (s, y, y_rot) in enumerate(zip(specs_out, out, got)):
            want = _apply(s, r, zero, y)
            err = ((y_rot - want).abs().max() / max(1.0, want.abs().max().item())).item()
            worst = max(worst, err)
            assert err <= atol, (f"output {i} not equivariant (det R = {torch.det(r).item():+.0f}): "
                                 f"relative error {err:.3e} > {atol:.1e}")
    return worst
