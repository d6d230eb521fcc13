r"""Schema and physics checks of an rtml trajectory file.

:func:`validate_trajectory` opens a file written by :func:`rtml.data.write_trajectory`
and runs, in order, the checks

==========================  ================================================================
name                        what passes
==========================  ================================================================
``schema``                  every dataset present, float64, shapes consistent; required root
                            attributes present and of the right type; ``n_atoms``,
                            ``n_basis``, ``n_steps``, ``n_spin`` agree with the shapes
``finite``                  no NaN/inf in any dataset
``overlap_symmetric``       :math:`\max|S - S^T|` <= ``atol_hermitian``
``overlap_positive``        :math:`\min \mathrm{eig}(S) > 0`
``hermiticity``             :math:`\max_{t,\sigma}|P_\sigma(t) - P_\sigma(t)^\dagger|`
                            <= ``atol_hermitian``
``electron_count``          :math:`|\mathrm{Tr}(P_\sigma(t) S) - N_\sigma|` <= ``atol_trace``
``idempotency``             :math:`\max|P'_\sigma P'_\sigma - P'_\sigma|` <=
                            ``atol_idempotency`` (Löwdin basis)
``response``                a field acts (``field_spec`` kind not ``none``):
                            :math:`\max_{t\sigma\mu\nu}|P_\sigma(t) - P_\sigma(0)|` >
                            ``atol_response``, above numerical noise (a static
                            trajectory is dead data, see :func:`check_density`)
``time_grid``               :math:`t` strictly increasing, :math:`t_{k+1} - t_k =
                            \Delta t \cdot \mathrm{save\_every}`
``energy_conservation``     field-free: :math:`\max_t|E(t) - E(0)|` < ``atol_energy``
``fock_hermiticity``        only when ``dynamics/fock_*`` are present:
                            :math:`\max_{t\sigma}|F_\sigma(t) - F_\sigma(t)^\dagger| \le`
                            ``rtol_fock_hermitian`` :math:`\cdot\max|F|`
``ground_state_density``    only when ``ground_state/density`` is present: P0 symmetric
                            (``atol_hermitian``), :math:`|\mathrm{Tr}(P_{0\sigma} S) -
                            N_\sigma|` <= ``atol_trace``, idempotent (``atol_idempotency``)
``ground_state_fock``       only when ``ground_state/fock`` is present: F0 symmetric,
                            :math:`\max|F_0 - F_0^T| \le` ``rtol_fock_hermitian``
                            :math:`\cdot\max|F_0|`
==========================  ================================================================

The checks ``schema`` and ``finite`` are loops over the schema
(:data:`rtml.data._schema.DATASETS`, :data:`~rtml.data._schema.ROOT_ATTRIBUTES`), so a
dataset added there is checked for presence, dtype, shape and finiteness without a change
here. The optional datasets are checked by ``schema`` (dtype, shape, both parts of a complex
pair) and ``finite`` when present; a file without them (an imported NWChem file) gets none
of the last three checks.

A schema problem does not stop the run: a check whose datasets or attributes are missing or
malformed is reported as failed with "skipped: ..." naming what it lacked, and the others
still run. The density (and every per-frame dataset) is streamed in blocks of
``block_frames`` frames, so memory stays at a few blocks whatever the trajectory length.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field as dc_field
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from rtml._errors import InputError
from rtml.observables import (electrons_per_spin, hermiticity_error, idempotency_error,
                              overlap_sqrt, trace_error)

from rtml.data._hdf5 import open_trajectory_file, stored_dataset
from rtml.data._schema import (DATASETS, DIMS, FORMAT_NAME, FORMAT_VERSION, ROOT_ATTRIBUTES,
                               dataset, evaluate_shape)

#: (HDF5 name, symbolic shape) of every dataset a file must have, and of the optional ones.
_REQUIRED = tuple((name, d.shape) for d in DATASETS if d.required for name in d.h5_names)
_OPTIONAL = tuple((name, d.shape) for d in DATASETS if not d.required for name in d.h5_names)
#: Optional quantities stored as a (Re, Im) pair: both datasets or neither.
_OPTIONAL_PAIRS = tuple(d.h5_names for d in DATASETS if not d.required and d.kind == "complex")
_INTEGER = frozenset(name for d in DATASETS if d.kind == "int" for name in d.h5_names)
#: Root attributes that must be > 0 besides having their schema type.
_POSITIVE = ("dt",)

_DENSITY = dataset("density").h5_names
_FOCK = dataset("fock").h5_names
_OVERLAP = dataset("overlap").path
_TIME = dataset("time").path
_FIELD = dataset("field").path
_ENERGY = dataset("energy").path
_GROUND_DENSITY = dataset("ground_state_density").path
_GROUND_FOCK = dataset("ground_state_fock").path


class Check(NamedTuple):
    """Outcome of one check: the measured ``value`` against ``tolerance`` (either may be
    ``None`` when the check is not a number against a bound)."""

    name: str
    passed: bool
    value: float | None
    tolerance: float | None
    message: str


@dataclass
class ValidationReport:
    """All checks run on one trajectory file."""

    path: Path
    checks: list[Check] = dc_field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        """The checks that did not pass."""
        return [c for c in self.checks if not c.passed]

    def __getitem__(self, name: str) -> Check:
        """The check called ``name`` (``KeyError`` if it was not run)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def format_lines(self) -> list[str]:
        """A header line with the verdict, then one ``PASS``/``FAIL`` line per check."""
        failed = self.failed
        if failed:
            head = (f"{self.path}: FAILED ({len(failed)} of {len(self.checks)} checks "
                    f"failed: {', '.join(c.name for c in failed)})")
        else:
            head = f"{self.path}: OK ({len(self.checks)} checks passed)"
        width = max((len(c.name) for c in self.checks), default=0)
        return [head] + [f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.message}"
                         for c in self.checks]


@dataclass
class _Context:
    """What the schema check learned: dimensions, usable datasets and attributes."""

    dims: dict[str, int]
    bad: set[str]                 # datasets that are missing or unusable (wrong shape/type)
    attrs: dict[str, Any]         # root attributes that are present and well-typed
    overlap_positive: bool = False
    optional: set[str] = dc_field(default_factory=set)  # optional datasets present


#: A trajectory under a field whose density moves by no more than this (max|P(t) - P(0)|,
#: a.u.) is static: the bound of the ``response`` check (see :func:`validate_trajectory`).
RESPONSE_ATOL = 1e-8


def validate_trajectory(
    path: str | os.PathLike,
    *,
    atol_trace: float = 1e-8,
    atol_hermitian: float = 1e-10,
    atol_idempotency: float = 1e-6,
    atol_energy: float = 1e-5,
    rtol_fock_hermitian: float = 1e-12,
    atol_response: float = RESPONSE_ATOL,
    block_frames: int = 256,
) -> ValidationReport:
    r"""Check an rtml trajectory file against its schema and basic physics.

    Args:
        path: the HDF5 file.
        atol_trace: bound on :math:`|\mathrm{Tr}(P_\sigma S) - N_\sigma|` (electrons).
        atol_hermitian: bound on :math:`\max|P - P^\dagger|` and on :math:`\max|S - S^T|`.
        atol_idempotency: bound on :math:`\max|P'P' - P'|` in the Löwdin basis.
        atol_energy: bound on :math:`\max_t|E(t) - E(0)|` (Hartree), field-free runs only.
        rtol_fock_hermitian: bound on :math:`\max|F - F^\dagger| / \max|F|` of the
            optional Fock matrices (the engine's are Hermitian to ~1e-15 of max|F|).
        atol_response: least :math:`\max_t|P(t) - P(0)|` of a trajectory with a field
            (its numerical noise is ~1e-10; see :func:`check_density`).
        block_frames: frames read at a time when streaming the density, Fock matrices
            and other per-frame datasets; memory is a few blocks of
            ``block_frames * n_spin * nbf**2`` complex values. The results do not depend on it.

    Returns:
        :class:`ValidationReport` with one :class:`Check` per row of the module table.

    Raises:
        InputError: the file is missing, not HDF5, or truncated or corrupt so that the HDF5
            library cannot read it (nothing can be checked, or not all of it), or
            ``block_frames`` is not a positive integer.
    """
    path = Path(path)
    if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
        raise InputError(f"block_frames must be a positive integer, got {block_frames!r}")
    with open_trajectory_file(path) as f:
        schema, ctx = check_schema(f)
        checks = [schema, check_finite(f, block_frames=block_frames)]
        checks += check_overlap(f, ctx, atol_hermitian=atol_hermitian)
        checks += check_density(f, ctx, atol_trace=atol_trace,
                                atol_hermitian=atol_hermitian,
                                atol_idempotency=atol_idempotency,
                                atol_response=atol_response, block_frames=block_frames)
        checks.append(check_time_grid(f, ctx))
        checks.append(check_energy(f, ctx, atol_energy=atol_energy, block_frames=block_frames))
        checks += check_optional(f, ctx, atol_trace=atol_trace, atol_hermitian=atol_hermitian,
                                 atol_idempotency=atol_idempotency,
                                 rtol_fock_hermitian=rtol_fock_hermitian,
                                 block_frames=block_frames)
    return ValidationReport(path=path, checks=checks)


# --------------------------------------------------------------------------- schema


def check_schema(f: h5py.File) -> tuple[Check, _Context]:
    """Datasets, dtypes, shapes and root attributes (the ``schema`` check).

    Dimensions are taken from the datasets (the first dataset, in schema order, of the
    right rank that has the axis: ``n_steps, n_spin, n_basis`` normally come from the
    density); every dataset must then match, and the ``n_*`` root attributes must equal
    them.
    """
    problems: list[str] = []
    bad: set[str] = set()
    dsets: dict[str, h5py.Dataset] = {}
    for name, _ in _REQUIRED:
        obj = _dataset(f, name, f"missing dataset {name!r}", problems, bad)
        if obj is not None:
            dsets[name] = obj

    attrs = _typed_attrs(f, problems)

    dims: dict[str, int] = {}
    for name, shape in _REQUIRED:
        if name in dsets and name not in bad and dsets[name].ndim == len(shape):
            for sym, n in zip(shape, dsets[name].shape):
                if isinstance(sym, str):
                    dims.setdefault(sym, int(n))
    for dim in DIMS:
        if dim not in dims and dim in attrs:
            dims[dim] = attrs[dim]
    if any(d not in dims for d in DIMS):
        problems.append("cannot determine " + ", ".join(d for d in DIMS if d not in dims))
        bad.update(name for name, _ in _REQUIRED)
    else:
        if dims["n_spin"] not in (1, 2):
            problems.append(f"n_spin must be 1 or 2, got {dims['n_spin']}")
            bad.update(_DENSITY)
        if dims["n_steps"] < 1:
            problems.append("no frames (n_steps = 0)")
        for name, shape in _REQUIRED:
            if name in dsets and name not in bad:
                _check_shape(name, dsets[name], evaluate_shape(shape, dims), problems, bad)
        for dim in DIMS:
            if dim in attrs and attrs[dim] != dims[dim]:
                problems.append(f"root attribute {dim}={attrs[dim]} but the datasets "
                                f"have {dim}={dims[dim]}")
    present = set()
    for name, shape in _OPTIONAL:
        if name not in f:
            continue
        present.add(name)
        obj = _dataset(f, name, f"{name!r} is not a dataset", problems, bad)
        if obj is None:
            continue
        dsets[name] = obj
        if not all(d in dims for d in DIMS):
            bad.add(name)
        elif name not in bad:
            _check_shape(name, obj, evaluate_shape(shape, dims), problems, bad)
    for pair in _OPTIONAL_PAIRS:
        if len(present & set(pair)) == 1:
            problems.append(f"{pair[0]!r} and {pair[1]!r} must come together (only "
                            f"{sorted(present & set(pair))[0]!r} present)")
            bad.update(pair)
    for name in sorted(_INTEGER & set(dsets) - bad):
        data = dsets[name][()]
        if np.all(np.isfinite(data)) and not np.array_equal(np.rint(data), data):
            problems.append(f"{name!r} must hold integer values")

    ctx = _Context(dims=dims, bad=bad, attrs=attrs, optional=present)
    if problems:
        msg = f"{len(problems)} problem(s): " + "; ".join(problems)
        return Check("schema", False, float(len(problems)), 0.0, msg), ctx
    msg = ("all {} datasets and {} root attributes present; n_atoms={n_atoms} "
           "n_basis={n_basis} n_steps={n_steps} n_spin={n_spin}").format(
               len(_REQUIRED), len(ROOT_ATTRIBUTES), **dims)
    if present:
        msg += "; optional: " + ", ".join(n for n, _ in _OPTIONAL if n in present)
    return Check("schema", True, 0.0, 0.0, msg), ctx


def _dataset(f: h5py.File, name: str, problem: str, problems: list[str],
             bad: set[str]) -> h5py.Dataset | None:
    """The dataset ``name`` with its dtype checked, or None with ``problem`` noted (absent,
    or a group where a dataset belongs)."""
    obj = stored_dataset(f, name)
    if obj is None:
        problems.append(problem)
        bad.add(name)
        return None
    _check_dtype(name, obj, problems, bad)
    return obj


def _check_dtype(name: str, obj: h5py.Dataset, problems: list[str], bad: set[str]) -> None:
    """Every dataset is float64; one that is not even numeric is unusable."""
    if obj.dtype != np.float64:
        problems.append(f"{name!r} has dtype {obj.dtype}, expected float64")
        if obj.dtype.kind not in "fiu":
            bad.add(name)


def _check_shape(name: str, obj: h5py.Dataset, expected: tuple[int, ...],
                 problems: list[str], bad: set[str]) -> None:
    if obj.shape != expected:
        problems.append(f"{name!r} has shape {obj.shape}, expected {expected}")
        bad.add(name)


def _typed_attrs(f: h5py.File, problems: list[str]) -> dict[str, Any]:
    """Root attributes that are present and of their schema kind, as Python values."""
    attrs: dict[str, Any] = {}
    for attribute in ROOT_ATTRIBUTES:
        name = attribute.name
        if name not in f.attrs:
            problems.append(f"missing root attribute {name!r}")
            continue
        value = f.attrs[name]
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, np.generic):
            value = value.item()
        if not _has_kind(value, attribute.kind, attribute.shape) or (
                name in _POSITIVE and not value > 0):
            problems.append(f"root attribute {name!r} is malformed ({value!r})")
            continue
        attrs[name] = value
    if attrs.get("format", FORMAT_NAME) != FORMAT_NAME:
        problems.append(f"format is {attrs['format']!r}, expected {FORMAT_NAME!r}")
    if attrs.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        problems.append(f"format_version is {attrs['format_version']!r}, "
                        f"expected {FORMAT_VERSION}")
    if attrs.get("save_every", 1) < 1:
        problems.append(f"save_every must be >= 1, got {attrs['save_every']}")
        attrs.pop("save_every")
    return attrs


def _has_kind(value: Any, kind: str, shape: tuple[int, ...]) -> bool:
    """Whether an attribute value (bytes decoded, numpy scalars as Python) is of schema
    ``kind``: ``int`` (not bool), ``str``, finite ``float``, ``json`` text, or a
    ``vector`` of ``shape``."""
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "float":
        return isinstance(value, (int, float)) and bool(np.isfinite(value))
    if kind == "json":
        try:
            json.loads(value)
        except (TypeError, json.JSONDecodeError):
            return False
        return True
    return np.shape(value) == shape


def _skip(name: str, ctx: _Context, datasets: tuple[str, ...] = (),
          attrs: tuple[str, ...] = ()) -> Check | None:
    """A failed "skipped" check if something ``name`` needs is unusable, else ``None``."""
    lacking = [repr(d) for d in datasets if d in ctx.bad]
    lacking += [f"root attribute {a!r}" for a in attrs if a not in ctx.attrs]
    if lacking:
        return Check(name, False, None, None,
                     f"skipped: {', '.join(lacking)} missing or malformed (see schema)")
    return None


def _blocks(n: int, size: int):
    """Slices of ``size`` frames covering ``range(n)`` (the last one may be shorter)."""
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# --------------------------------------------------------------------------- values


def check_finite(f: h5py.File, *, block_frames: int) -> Check:
    """No NaN or inf in any numeric dataset of the schema (streamed along axis 0,
    ``block_frames`` rows at a time)."""
    count = 0
    first: list[str] = []
    for name, _ in _REQUIRED + _OPTIONAL:
        dset = stored_dataset(f, name)
        if dset is None or dset.dtype.kind not in "fiu":
            continue
        chunks = ([dset[()]] if dset.ndim == 0
                  else (dset[s] for s in _blocks(dset.shape[0], block_frames)))
        n_bad = 0
        where = None
        offset = 0
        for block in chunks:
            mask = ~np.isfinite(block)
            if mask.any():
                if where is None:
                    idx = np.argwhere(mask)[0]
                    if dset.ndim:
                        idx[0] += offset
                    where = tuple(int(i) for i in idx)
                n_bad += int(mask.sum())
            offset += len(block) if dset.ndim else 0
        if n_bad:
            count += n_bad
            first.append(f"{name!r}: {n_bad} (first at {where})")
    if count:
        return Check("finite", False, float(count), 0.0,
                     f"{count} non-finite value(s): " + "; ".join(first))
    return Check("finite", True, 0.0, 0.0, "all values finite")


def check_overlap(f: h5py.File, ctx: _Context, *, atol_hermitian: float) -> list[Check]:
    r"""The overlap is symmetric and positive definite.

    .. math::

        \max_{\mu\nu}|S_{\mu\nu} - S_{\nu\mu}| \le \mathrm{atol}, \qquad
        \lambda_\mathrm{min}(S) > 0
    """
    skip = _skip("overlap_symmetric", ctx, (_OVERLAP,))
    if skip:
        return [skip, skip._replace(name="overlap_positive")]
    S = f[_OVERLAP][()]
    if not np.all(np.isfinite(S)):
        msg = "non-finite overlap (see finite)"
        return [Check("overlap_symmetric", False, None, atol_hermitian, msg),
                Check("overlap_positive", False, None, 0.0, msg)]
    asym = float(np.max(np.abs(S - S.T))) if S.size else 0.0
    sym = Check("overlap_symmetric", asym <= atol_hermitian, asym, atol_hermitian,
                f"max|S - S^T| = {asym:.3e} (tolerance {atol_hermitian:.1e})")
    lam = float(np.linalg.eigvalsh(0.5 * (S + S.T)).min()) if S.size else 0.0
    ctx.overlap_positive = lam > 0
    pos = Check("overlap_positive", lam > 0, lam, 0.0,
                f"min eig(S) = {lam:.3e} (must be > 0)")
    return [sym, pos]


def _spin_targets(ctx: _Context) -> tuple[list[float] | None, str]:
    r"""Electrons per density channel: :math:`[N]` for n_spin=1, else
    :math:`N_\alpha = (N + M - 1)/2,\ N_\beta = (N - M + 1)/2` (M = multiplicity)."""
    n, mult = ctx.attrs["n_electrons"], ctx.attrs.get("multiplicity")
    if ctx.dims["n_spin"] == 1:
        return [float(n)], f"N = {n}"
    if (n + mult - 1) % 2 or n - mult + 1 < 0:
        return None, f"n_electrons={n} and multiplicity={mult} are inconsistent"
    n_alpha, n_beta = (int(x) for x in electrons_per_spin(n, mult, 2))
    return [float(n_alpha), float(n_beta)], f"N_alpha = {n_alpha}, N_beta = {n_beta}"


def check_density(f: h5py.File, ctx: _Context, *, atol_trace: float,
                  atol_hermitian: float, atol_idempotency: float, atol_response: float,
                  block_frames: int) -> list[Check]:
    r"""Hermiticity, electron count, idempotency and response of :math:`P_\sigma(t)`,
    one pass.

    With :math:`P = P^\mathrm{re} + i P^\mathrm{im}` for every frame t and spin σ:

    .. math::

        h = \max_{t\sigma}\max_{\mu\nu}|P_\sigma(t) - P_\sigma(t)^\dagger|_{\mu\nu}

        c = \max_{t\sigma}|\mathrm{Tr}(P_\sigma(t) S) - N_\sigma|

        r = \max_{t\sigma}\max_{\mu\nu}|P'_\sigma P'_\sigma - P'_\sigma|_{\mu\nu},\quad
        P'_\sigma = w\, S^{1/2} P_\sigma S^{1/2}

        d = \max_{t\sigma}\max_{\mu\nu}|P_\sigma(t) - P_\sigma(0)|_{\mu\nu}

    with :math:`N_\sigma` from :func:`_spin_targets`, :math:`w = 1/2` for n_spin=1 (closed
    shell, total density) and :math:`w = 1` for n_spin=2;
    :math:`S^{1/2} = V \mathrm{diag}(\sqrt{\lambda}) V^T` from :math:`S = V \Lambda V^T`.
    The frames are read ``block_frames`` at a time.

    The ``response`` check fails when a field acts (``field_spec`` kind other than ``none``,
    non-zero amplitude) and ``d <= atol_response``: the field does not couple to the
    molecule (an x field on H2 along z in a basis with only s functions on H), and the
    trajectory is static, dead data for learning. The default bound
    :data:`RESPONSE_ATOL` = 1e-8 sits between the
    numerical noise and the weakest response of the dataset's fields, both measured with
    ``rtml propagate`` (PBE0/6-31G, dt 0.2, magnus2, 1 thread): field-free runs of 200 a.u.
    drift by d = 1.1e-10 (LiH), 9.8e-11 (H2O), 5.8e-13 (H2; an x kick of H2 gives the
    same 5.8e-13), bounded, not growing with time (the SCF residual); a z kick of
    1e-4 on H2 moves P by d = 3.6e-4.
    """
    names = ("hermiticity", "electron_count", "idempotency", "response")
    skip = _skip("hermiticity", ctx, _DENSITY)
    if skip:
        return [skip._replace(name=n) for n in names]
    field_free = _field_free(ctx)
    skip_count = _skip("electron_count", ctx, (_OVERLAP,),
                       ("n_electrons",) + (("multiplicity",) if ctx.dims["n_spin"] == 2 else ()))
    skip_idem = _skip("idempotency", ctx, (_OVERLAP,))
    if skip_idem is None and not ctx.overlap_positive:
        skip_idem = Check("idempotency", False, None, None,
                          "skipped: overlap is not positive definite (see overlap_positive)")

    targets, target_msg = (None, "")
    if skip_count is None:
        targets, target_msg = _spin_targets(ctx)
        if targets is None:
            skip_count = Check("electron_count", False, None, None, target_msg)

    S = f[_OVERLAP][()] if _OVERLAP not in ctx.bad else None
    S_half = overlap_sqrt(S) if skip_idem is None else None
    weight = 0.5 if ctx.dims["n_spin"] == 1 else 1.0

    worst = {n: (-1.0, (0, 0)) for n in names}          # value, (frame, spin)

    def _update(key: str, per_frame: np.ndarray, offset: int) -> None:
        per_frame = np.where(np.isfinite(per_frame), per_frame, np.inf)
        k = int(np.argmax(per_frame))
        t, s = np.unravel_index(k, per_frame.shape)
        if per_frame[t, s] > worst[key][0]:
            worst[key] = (float(per_frame[t, s]), (int(t) + offset, int(s)))

    re_ds, im_ds = f[_DENSITY[0]], f[_DENSITY[1]]
    P0 = None
    for sl in _blocks(ctx.dims["n_steps"], block_frames):
        P = re_ds[sl] + 1j * im_ds[sl]                  # (b, n_spin, nbf, nbf)
        if P0 is None:
            P0 = P[0]
        _update("hermiticity", hermiticity_error(P), sl.start)
        _update("response", np.abs(P - P0).max(axis=(-2, -1), initial=0.0), sl.start)
        if skip_count is None:
            _update("electron_count", trace_error(P, S, targets), sl.start)
        if skip_idem is None:
            _update("idempotency", idempotency_error(P, S_half), sl.start)

    def _result(name: str, tol: float, what: str, extra: str = "") -> Check:
        value, (t, s) = worst[name]
        if value < 0:                                   # no frames
            return Check(name, True, None, tol, "no frames")
        if not np.isfinite(value):
            return Check(name, False, value, tol,
                         f"non-finite density values (frame {t}, spin {s}; see finite)")
        return Check(name, value <= tol, value, tol,
                     f"{what} = {value:.3e} (tolerance {tol:.1e}; worst frame {t}, "
                     f"spin {s}){extra}")

    return [
        _result("hermiticity", atol_hermitian, "max|P - P^H|"),
        skip_count or _result("electron_count", atol_trace, "max|Tr(P S) - N|",
                              f"; {target_msg}"),
        skip_idem or _result("idempotency", atol_idempotency,
                             "max|P'P' - P'| (Löwdin, P' = S^1/2 P S^1/2"
                             + (" / 2)" if weight == 0.5 else ")")),
        _response(worst["response"], field_free, atol_response, ctx.dims["n_steps"]),
    ]


def _field_free(ctx: _Context) -> bool | None:
    """Whether the file's ``field_spec`` says no field acts (kind ``none`` or amplitude 0);
    None when it is missing or not a JSON object."""
    try:
        spec = json.loads(ctx.attrs["field_spec"])
    except (KeyError, TypeError, json.JSONDecodeError):
        return None
    if not isinstance(spec, dict):
        return None
    return spec.get("kind") == "none" or spec.get("amplitude", 1.0) == 0


def _response(worst: tuple[float, tuple[int, int]], field_free: bool | None,
              atol: float, n_frames: int) -> Check:
    """The ``response`` check from the largest :math:`|P(t) - P(0)|` and its (frame, spin);
    a single frame (an imported restart snapshot) has no response to measure."""
    value, (t, s) = worst
    if n_frames == 1 and field_free is not None:
        return Check("response", True, None, atol, "one frame: no response to measure")
    if field_free is None:
        return Check("response", False, None, atol,
                     "skipped: root attribute 'field_spec' missing or malformed (see schema)")
    if value < 0:
        return Check("response", field_free, None, atol, "no frames")
    if not np.isfinite(value):
        return Check("response", False, value, atol,
                     f"non-finite density values (frame {t}, spin {s}; see finite)")
    what = f"max|P(t) - P(0)| = {value:.3e}"
    if field_free:
        return Check("response", True, value, atol, f"field-free: {what} (no response expected)")
    if value <= atol:
        return Check("response", False, value, atol,
                     f"static: {what} <= {atol:.1e} (numerical noise) although a field acts "
                     "(it does not couple to the molecule)")
    return Check("response", True, value, atol,
                 f"{what} (above the noise bound {atol:.1e}; largest at frame {t}, spin {s})")


def check_time_grid(f: h5py.File, ctx: _Context) -> Check:
    r"""Saved times are strictly increasing and uniformly spaced.

    .. math::

        t_{k+1} - t_k > 0, \qquad
        \max_k |t_{k+1} - t_k - h| \le 10^{-6} h + 4\epsilon \max_k|t_k|,
        \quad h = \Delta t \cdot \mathrm{save\_every}
    """
    skip = _skip("time_grid", ctx, (_TIME,), ("dt", "save_every"))
    if skip:
        return skip
    t = f[_TIME][()]
    h = float(ctx.attrs["dt"]) * int(ctx.attrs["save_every"])
    if not np.all(np.isfinite(t)):
        return Check("time_grid", False, None, None, "non-finite times (see finite)")
    if t.size < 2:
        return Check("time_grid", True, None, None, "fewer than 2 frames")
    dt = np.diff(t)
    tol = 1e-6 * h + 4 * np.finfo(float).eps * float(np.max(np.abs(t)))
    dev = float(np.max(np.abs(dt - h)))
    if np.any(dt <= 0):
        k = int(np.argmax(dt <= 0))
        return Check("time_grid", False, dev, tol,
                     f"time not strictly increasing (t[{k + 1}] = {t[k + 1]!r} <= "
                     f"t[{k}] = {t[k]!r})")
    k = int(np.argmax(np.abs(dt - h)))
    return Check("time_grid", dev <= tol, dev, tol,
                 f"max|t[k+1] - t[k] - dt*save_every| = {dev:.3e} (spacing {h:g}, "
                 f"tolerance {tol:.1e}; worst k={k})")


def check_energy(f: h5py.File, ctx: _Context, *, atol_energy: float,
                 block_frames: int) -> Check:
    r"""Energy conservation when no field acts at any saved time.

    If :math:`\mathbf{E}(t_k) = 0` for all k (delta kick or field-free run):
    :math:`\max_k |E(t_k) - E(t_0)| < \mathrm{atol}`. Otherwise the check passes as
    skipped: a driven system absorbs energy. The field is read ``block_frames`` frames at
    a time.
    """
    skip = _skip("energy_conservation", ctx, (_FIELD, _ENERGY))
    if skip:
        return skip
    energy = f[_ENERGY][()]
    field_on = False
    ds = f[_FIELD]
    for sl in _blocks(ds.shape[0], block_frames):
        if np.any(ds[sl] != 0):
            field_on = True
            break
    if not np.all(np.isfinite(energy)):
        return Check("energy_conservation", False, None, atol_energy,
                     "non-finite energies (see finite)")
    drift = float(np.max(np.abs(energy - energy[0]))) if energy.size else 0.0
    if field_on:
        return Check("energy_conservation", True, drift, None,
                     "field on: energy not conserved by design "
                     f"(max|E(t) - E(0)| = {drift:.3e} Eh)")
    return Check("energy_conservation", drift < atol_energy, drift, atol_energy,
                 f"field-free: max|E(t) - E(0)| = {drift:.3e} Eh "
                 f"(tolerance {atol_energy:.1e})")


# --------------------------------------------------------------------------- optional


def check_optional(f: h5py.File, ctx: _Context, *, atol_trace: float, atol_hermitian: float,
                   atol_idempotency: float, rtol_fock_hermitian: float,
                   block_frames: int) -> list[Check]:
    r"""Checks of the optional Fock and ground-state datasets that the file has.

    .. math::

        h_F = \frac{\max_{t\sigma\mu\nu}|F_\sigma(t) - F_\sigma(t)^\dagger|_{\mu\nu}}
                   {\max_{t\sigma\mu\nu}|F_\sigma(t)|_{\mu\nu}}

    (frames streamed ``block_frames`` at a time); the ground state as in
    :func:`check_density` for one real frame P0, and :math:`\max|F_0 - F_0^T| / \max|F_0|`.
    Returns an empty list for a file without optional datasets.
    """
    checks = []
    if ctx.optional & set(_FOCK):
        checks.append(_skip("fock_hermiticity", ctx, _FOCK)
                      or _fock_hermiticity(f, ctx, rtol_fock_hermitian, block_frames))
    if _GROUND_DENSITY in ctx.optional:
        spin_attrs = ("multiplicity",) if ctx.dims.get("n_spin") == 2 else ()
        checks.append(_skip("ground_state_density", ctx,
                            (_GROUND_DENSITY, _OVERLAP),
                            ("n_electrons",) + spin_attrs)
                      or _ground_density(f, ctx, atol_trace, atol_hermitian, atol_idempotency))
    if _GROUND_FOCK in ctx.optional:
        checks.append(_skip("ground_state_fock", ctx, (_GROUND_FOCK,))
                      or _relative_asymmetry("ground_state_fock", f[_GROUND_FOCK][()],
                                             rtol_fock_hermitian, "max|F0 - F0^T| / max|F0|"))
    return checks


def _fock_hermiticity(f: h5py.File, ctx: _Context, rtol: float, block_frames: int) -> Check:
    worst, scale, where = -1.0, 0.0, (0, 0)
    re_ds, im_ds = f[_FOCK[0]], f[_FOCK[1]]
    for sl in _blocks(ctx.dims["n_steps"], block_frames):
        F = re_ds[sl] + 1j * im_ds[sl]
        if not np.all(np.isfinite(F)):
            return Check("fock_hermiticity", False, None, rtol,
                         "non-finite Fock values (see finite)")
        per_frame = hermiticity_error(F)
        k = int(np.argmax(per_frame))
        t, s = np.unravel_index(k, per_frame.shape)
        if per_frame[t, s] > worst:
            worst, where = float(per_frame[t, s]), (int(t) + sl.start, int(s))
        scale = max(scale, float(np.abs(F).max()) if F.size else 0.0)
    if worst < 0:
        return Check("fock_hermiticity", True, None, rtol, "no frames")
    value = worst / scale if scale > 0 else worst
    return Check("fock_hermiticity", value <= rtol, value, rtol,
                 f"max|F - F^H| / max|F| = {value:.3e} (tolerance {rtol:.1e}; worst frame "
                 f"{where[0]}, spin {where[1]}; max|F| = {scale:.3e} Eh)")


def _relative_asymmetry(name: str, mat: np.ndarray, rtol: float, what: str) -> Check:
    if not np.all(np.isfinite(mat)):
        return Check(name, False, None, rtol, "non-finite values (see finite)")
    scale = float(np.abs(mat).max()) if mat.size else 0.0
    asym = float(np.abs(mat - mat.swapaxes(-1, -2)).max()) if mat.size else 0.0
    value = asym / scale if scale > 0 else asym
    return Check(name, value <= rtol, value, rtol, f"{what} = {value:.3e} (tolerance {rtol:.1e})")


def _ground_density(f: h5py.File, ctx: _Context, atol_trace: float, atol_hermitian: float,
                    atol_idempotency: float) -> Check:
    name = "ground_state_density"
    P0 = f[_GROUND_DENSITY][()]
    S = f[_OVERLAP][()]
    if not (np.all(np.isfinite(P0)) and np.all(np.isfinite(S))):
        return Check(name, False, None, None, "non-finite values (see finite)")
    problems = []
    asym = float(np.abs(P0 - P0.swapaxes(-1, -2)).max())
    if asym > atol_hermitian:
        problems.append(f"max|P0 - P0^T| = {asym:.3e} > {atol_hermitian:.1e}")
    targets, target_msg = _spin_targets(ctx)
    trace = None
    if targets is None:
        problems.append(target_msg)
    else:
        trace = float(trace_error(P0[None], S, targets).max())
        if trace > atol_trace:
            problems.append(f"max|Tr(P0 S) - N| = {trace:.3e} > {atol_trace:.1e} ({target_msg})")
    idem = None
    if ctx.overlap_positive:
        idem = float(idempotency_error(P0[None], overlap_sqrt(S)).max())
        if idem > atol_idempotency:
            problems.append(f"max|P0'P0' - P0'| = {idem:.3e} > {atol_idempotency:.1e}")
    if problems:
        return Check(name, False, trace, atol_trace, "; ".join(problems))
    return Check(name, True, trace, atol_trace,
                 f"P0 symmetric ({asym:.1e}), max|Tr(P0 S) - N| = {trace:.3e} ({target_msg}), "
                 f"idempotency {'n/a' if idem is None else f'{idem:.1e}'}")
