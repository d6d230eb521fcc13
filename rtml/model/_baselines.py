r"""Baseline density propagators: persistence and a per-molecule ridge map in the Löwdin basis.

Every model here maps the density at one saved step and the field at both ends of the step
to the density at the next saved step and rolls out by feeding its own predictions back.
They are the reference points the learned model must beat (issue: "baselines evaluated on
the same splits by the same code"). The interface the evaluation uses:
``one_step(traj)`` -> (T-1, n_spin, n, n) teacher-forced predictions of frames 1..T-1 of a
:class:`TrajectoryData`, and ``rollout_trajectory(traj)`` -> (T, n_spin, n, n) free rollout
from frame 0 under the reference field.

- **Persistence**: :math:`P(t_{k+1}) = P(t_k)`.
- **Ridge map** (:class:`LinearPropagator`, model name ``"linear"``), one per molecule,
  shared by all its geometries. With the Löwdin-basis deviation from a reference density
  :math:`P^0` of the geometry,

  .. math::

      \Delta P'_k = S^{1/2}\,(P_k - P^0)\,S^{1/2},\qquad
      x_k = \mathrm{vec}_\mathbb{R}(\Delta P'_k) \in \mathbb{R}^{n_\text{spin}n^2},

  (per spin: real parts of the upper triangle with the diagonal, imaginary parts of the
  strict upper triangle, off-diagonal entries scaled by :math:`\sqrt2` so that
  :math:`\|x\|_2 = \|\Delta P'\|_F`), the map is linear with **no bias**,

  .. math:: x_{k+1} = A\,[x_k;\ c\,\mathbf E_k;\ c\,\mathbf E_{k+1}] = A_x x_k + A_E\,c\,[\mathbf E_k; \mathbf E_{k+1}],

  so :math:`P^0` at zero field is an exact fixed point (the linearised Liouville-von
  Neumann map about the ground state: :math:`A_x` from the Fock response, :math:`A_E` from
  the dipole coupling). The Löwdin basis removes most of the geometry dependence of the
  density's coordinates, which is what lets one map serve all geometries of a molecule.

  - :math:`P^0` is ``traj.rho_ground`` (the SCF ground state of the geometry) when the
    trajectory carries it; otherwise the Hermitian real part of the first frame,
    :math:`\tfrac12(P_0 + P_0^*)`. That fallback is exact for trajectories that start
    from the ground state (pulses), and for a kick
    :math:`P_0 = e^{i\kappa\,\mathbf r\cdot\hat e}P^\text{gs}e^{-i\kappa\,\mathbf r\cdot\hat e}`
    changes :math:`\mathrm{Re}\,P` only at second order in :math:`\kappa` (the first-order
    change :math:`i\kappa[\mathbf r\cdot\hat e, P^\text{gs}]` is imaginary).
  - :math:`c` scales the field columns to the RMS of the state columns on the training
    data, so one ridge penalty is fair to both blocks.
  - Ridge on the increment: :math:`A = [I, 0] + W`,
    :math:`W = (X_{+}-X)^TZ\,(Z^TZ + \lambda\,\overline{\mathrm{diag}}(Z^TZ)\,I)^{-1}`, so the
    penalty shrinks towards persistence (not towards a decay to :math:`P^0`), with
    :math:`\lambda` chosen from :data:`RIDGE_GRID` by held-out-trajectory cross-validation
    **on the training (and validation) trajectories only**: folds are groups of training
    geometries (at most :data:`CV_FOLDS`), plus the validation trajectories as one more
    fold (fitted on all training data) when there are any; the score is the mean relative
    rollout error :math:`\langle e(t)\rangle_t` (Löwdin norm, clipped at 10) of free
    rollouts of the held-out trajectories. The final map is refitted on all training and
    validation trajectories (never test). With a single training geometry and no validation data
    :data:`DEFAULT_RIDGE` is used.
  - Stability: eigenvalues of :math:`A_x` outside the unit circle are pulled onto it, the
    other modes are left as fitted (so the free dynamics cannot grow exponentially; recorded
    in :attr:`LinearFit.spectral_radius` and ``.stabilised``). The same rule is applied
    inside the cross-validation, so the selection sees the model that is used.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from rtml._errors import InputError
from rtml.data import trajectory_data
from rtml.model._hermitian import hermitian_to_real, real_to_hermitian

__all__ = ["PersistenceModel", "LinearPropagator", "LinearFit", "fit_linear", "load_baseline",
           "lowdin_vector", "lowdin_matrix", "reference_density", "RIDGE_GRID"]

log = logging.getLogger("rtml.model")

#: Candidate ridge penalties, relative to the mean diagonal of Z^T Z.
RIDGE_GRID = (1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
#: Penalty used when there is nothing to cross-validate on (one training geometry, no val).
DEFAULT_RIDGE = 1e-8
#: Most cross-validation folds built from the training geometries.
CV_FOLDS = 5
#: Relative rollout errors are clipped here in the CV score (a blow-up must not dominate).
_CV_CLIP = 10.0


class _Rollout(abc.ABC):
    """Shared rollout over a field sequence (models with a per-frame ``step``)."""

    @abc.abstractmethod
    def step(self, molecule: str, p: np.ndarray, field_now: np.ndarray, field_next: np.ndarray,
             p_initial: np.ndarray) -> np.ndarray:
        """P(t_{k+1}) from P(t_k) (n_spin, n, n), the fields E(t_k), E(t_{k+1}) (3,) and the
        trajectory's initial density P(t_0)."""

    def rollout(self, molecule: str, p0: np.ndarray, fields: np.ndarray) -> np.ndarray:
        """Densities at all saved steps from P(t_0) (n_spin, n, n) and the fields (T, 3).

        Returns:
            (T, n_spin, n, n) complex; element 0 is ``p0``.
        """
        out = np.empty((len(fields), *p0.shape), dtype=complex)
        out[0] = p0
        for k in range(len(fields) - 1):
            out[k + 1] = self.step(molecule, out[k], fields[k], fields[k + 1], p0)
        return out

    def one_step(self, traj) -> np.ndarray:
        """Teacher-forced predictions of frames 1..T-1 of a :class:`TrajectoryData`."""
        rho, fld = traj.rho, traj.field
        return np.array([self.step(traj.molecule, rho[k], fld[k], fld[k + 1], rho[0])
                         for k in range(len(rho) - 1)])

    def rollout_trajectory(self, traj) -> np.ndarray:
        """Free rollout over a :class:`TrajectoryData` from its first frame."""
        return self.rollout(traj.molecule, traj.rho[0], traj.field)


class PersistenceModel(_Rollout):
    """P(t+1) = P(t): the trivial baseline."""

    name = "persistence"

    def step(self, molecule, p, field_now, field_next, p_initial):
        return np.array(p, dtype=complex, copy=True)

    def state_dict(self) -> dict:
        return {"model": self.name}


# ------------------------------------------------------------------ Löwdin coordinates
def _offdiag_weights(n: int, n_spin: int) -> np.ndarray:
    """(n_spin * n^2,) weights: 1 on diagonal entries, sqrt(2) elsewhere (Frobenius-preserving)."""
    iu = np.triu_indices(n)
    w = np.concatenate([np.where(iu[0] == iu[1], 1.0, np.sqrt(2.0)),
                        np.full(n * (n - 1) // 2, np.sqrt(2.0))])
    return np.tile(w, n_spin)


def _overlap_powers(overlap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S^{1/2}, S^{-1/2}) of a symmetric positive-definite overlap (n, n)."""
    lam, vec = np.linalg.eigh(0.5 * (overlap + overlap.T))
    if lam.min() <= 0:
        raise InputError(f"overlap matrix is not positive definite (min eigenvalue {lam.min():.3e})")
    return (vec * np.sqrt(lam)) @ vec.T, (vec / np.sqrt(lam)) @ vec.T


def reference_density(traj) -> np.ndarray:
    """P^0 of a trajectory (n_spin, n, n): ``rho_ground`` if present, else Re P(t_0) (see module)."""
    ground = getattr(traj, "rho_ground", None)
    if ground is not None:
        return np.asarray(ground, dtype=complex).reshape(traj.rho.shape[1:])
    p0 = traj.rho[0]
    return (0.5 * (p0 + p0.conj())).astype(complex)


def lowdin_vector(rho: np.ndarray, p_ref: np.ndarray, s_half: np.ndarray) -> np.ndarray:
    r"""(..., n_spin, n, n) densities -> (..., n_spin n^2) real :math:`x` with :math:`\|x\| = \|S^{1/2}(P-P^0)S^{1/2}\|_F`."""
    d = s_half @ (rho - p_ref) @ s_half
    d = 0.5 * (d + d.conj().swapaxes(-1, -2))
    n_spin, n = rho.shape[-3], rho.shape[-1]
    return hermitian_to_real(d) * _offdiag_weights(n, n_spin)


def lowdin_matrix(x: np.ndarray, p_ref: np.ndarray, s_inv_half: np.ndarray) -> np.ndarray:
    """Inverse of :func:`lowdin_vector`: (..., n_spin n^2) -> (..., n_spin, n, n) Hermitian densities."""
    n_spin, n = p_ref.shape[-3], p_ref.shape[-1]
    d = real_to_hermitian(x / _offdiag_weights(n, n_spin), n_spin, n)
    p = p_ref + s_inv_half @ d @ s_inv_half
    return 0.5 * (p + p.conj().swapaxes(-1, -2))


class _Prepared:
    """One trajectory in the ridge map's coordinates: x (T, d), fields (T, 3) and the transforms."""

    def __init__(self, traj):
        self.p_ref = reference_density(traj)
        self.s_half, self.s_inv_half = _overlap_powers(np.asarray(traj.overlap, dtype=float))
        self.x = lowdin_vector(np.asarray(traj.rho), self.p_ref, self.s_half)
        self.fields = np.asarray(traj.field, dtype=float)
        gid = getattr(traj, "geometry_id", None)
        self.geometry = str(gid) if gid is not None else np.round(
            np.asarray(traj.positions_angstrom, dtype=float), 8).tobytes()

    def features(self, field_scale: float) -> np.ndarray:
        """(T-1, d + 6) inputs [x_k, c E_k, c E_{k+1}] of the steps k -> k+1."""
        return np.concatenate([self.x[:-1], field_scale * self.fields[:-1],
                               field_scale * self.fields[1:]], axis=1)


# --------------------------------------------------------------------------- the fit
@dataclass
class LinearFit:
    """One molecule's ridge map (see module docstring).

    A: (d, d + 6) with d = n_spin * nbf^2, acting on [x_k, c E_k, c E_{k+1}];
    field_scale: c; ridge: chosen relative penalty; cv_scores: {ridge: mean held-out rollout
    error}; spectral_radius: rho(A_x) before stabilisation; stabilised: whether A_x was scaled.
    """

    n_spin: int
    nbf: int
    A: np.ndarray
    field_scale: float = 1.0
    ridge: float = DEFAULT_RIDGE
    n_pairs: int = 0
    spectral_radius: float = 0.0
    stabilised: bool = False
    cv_scores: dict = field(default_factory=dict)

    @property
    def d(self) -> int:
        return self.n_spin * self.nbf ** 2


def _normal_equations(prepared, field_scale):
    """(Z^T Z, Z^T Y, n_pairs) over a list of :class:`_Prepared`."""
    d = prepared[0].x.shape[1]
    ztz, zty, n = np.zeros((d + 6, d + 6)), np.zeros((d + 6, d)), 0
    for p in prepared:
        z = p.features(field_scale)
        ztz += z.T @ z
        zty += z.T @ (p.x[1:] - p.x[:-1])
        n += len(z)
    return ztz, zty, n


def _stabilise(a: np.ndarray, d: int) -> tuple[np.ndarray, float, bool]:
    r"""Pull the eigenvalues of the state block A[:, :d] that lie outside the unit circle onto
    it, leaving every other mode as fitted.

    .. math:: A_x \leftarrow A_x + V\,\mathrm{diag}(\lambda/\max(1,|\lambda|) - \lambda)\,V^{-1}

    (real part). Scaling the whole block by :math:`1/\rho` instead would damp every mode and
    cripple long rollouts of a near-unitary map.
    """
    if not d:
        return a, 0.0, False
    lam, vec = np.linalg.eig(a[:, :d])
    radius = float(np.abs(lam).max())
    if radius > 1.0:
        a = a.copy()
        shift = lam / np.maximum(1.0, np.abs(lam)) - lam
        a[:, :d] += (vec @ np.diag(shift) @ np.linalg.inv(vec)).real
        return a, radius, True
    return a, radius, False


def _solve(ztz: np.ndarray, zty: np.ndarray, ridges) -> dict[float, np.ndarray]:
    """Ridge solutions A = [I, 0] + W (d, d+6) for each relative penalty, one eigendecomposition.

    ``zty`` is Z^T (x_{k+1} - x_k): the penalty shrinks W, i.e. towards persistence.
    """
    d = zty.shape[1]
    scale = max(np.trace(ztz) / len(ztz), 1e-300)
    lam, vec = np.linalg.eigh(ztz)
    proj = vec.T @ zty
    out = {}
    for r in ridges:
        a = (vec @ (proj / (np.maximum(lam, 0.0) + r * scale)[:, None])).T
        a[:, :d] += np.eye(d)
        out[r] = a
    return out


def _rollout_x(a: np.ndarray, x0: np.ndarray, fields: np.ndarray, field_scale: float) -> np.ndarray:
    """Free rollout in the map's coordinates, (T, d) from x0 (d,) and fields (T, 3)."""
    d = len(x0)
    drive = np.concatenate([fields[:-1], fields[1:]], axis=1) * field_scale @ a[:, d:].T
    ax = a[:, :d]
    out = np.empty((len(fields), d))
    out[0] = x0
    for k in range(len(fields) - 1):
        out[k + 1] = ax @ out[k] + drive[k]
    return out


def _rollout_score(a: np.ndarray, held_out, field_scale: float) -> float:
    """Mean over held-out trajectories of <e(t)>_t (Löwdin norm, clipped); NaN if all static."""
    scores = []
    for p in held_out:
        scale = np.linalg.norm(p.x - p.x[0], axis=1).max()
        if scale < 1e-10 * max(np.linalg.norm(p.x[0]), 1.0) or len(p.x) < 2:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            err = np.linalg.norm(_rollout_x(a, p.x[0], p.fields, field_scale) - p.x, axis=1) / scale
        scores.append(np.mean(np.minimum(np.nan_to_num(err[1:], nan=_CV_CLIP), _CV_CLIP)))
    return float(np.mean(scores)) if scores else float("nan")


def fit_ridge_map(train, val=(), ridges=RIDGE_GRID, n_folds: int = CV_FOLDS) -> LinearFit:
    """Fit one molecule's ridge map on ``train`` trajectories, choosing the penalty by CV.

    Args:
        train: training :class:`TrajectoryData` of one molecule (any geometries).
        val: validation trajectories of the same molecule, used only to choose the penalty.
        ridges: candidate relative penalties.
        n_folds: most folds built from the training geometries.

    Returns:
        The :class:`LinearFit` refitted on ``train`` and ``val`` with the chosen penalty.
    """
    train = [t if isinstance(t, _Prepared) else _Prepared(t) for t in train]
    val = [t if isinstance(t, _Prepared) else _Prepared(t) for t in val]
    if not train:
        raise InputError("the ridge map needs at least one training trajectory")
    d = train[0].x.shape[1]
    if any(p.x.shape[1] != d for p in train + val):
        raise InputError("trajectories of one molecule with different basis sizes")
    n_spin = train[0].p_ref.shape[0]
    nbf = train[0].p_ref.shape[-1]
    x_rms = np.sqrt(np.mean([np.mean(p.x ** 2) for p in train]))
    e_rms = np.sqrt(np.mean([np.mean(p.fields ** 2) for p in train]))
    field_scale = float(x_rms / e_rms) if e_rms > 0 and x_rms > 0 else 1.0

    # folds: groups of training geometries (+ validation as one more fold)
    geometries = list(dict.fromkeys(p.geometry for p in train))
    k = min(n_folds, len(geometries)) if len(geometries) > 1 else 0
    folds = [([p for p in train if geometries.index(p.geometry) % k != i],
              [p for p in train if geometries.index(p.geometry) % k == i]) for i in range(k)]
    if val:
        folds.append((train, val))
    cv_scores: dict[float, list[float]] = {r: [] for r in ridges}
    for fit_on, held_out in folds:
        ztz, zty, _ = _normal_equations(fit_on, field_scale)
        for r, a in _solve(ztz, zty, ridges).items():
            cv_scores[r].append(_rollout_score(_stabilise(a, d)[0], held_out, field_scale))
    mean_scores = {r: float(np.nanmean(s)) if np.isfinite(s).any() else float("nan")
                   for r, s in cv_scores.items()}
    finite = {r: s for r, s in mean_scores.items() if np.isfinite(s)}
    ridge = min(finite, key=finite.get) if finite else DEFAULT_RIDGE
    # the penalty is chosen; the final map uses every non-test trajectory (full strength)
    ztz, zty, n_pairs = _normal_equations(train + val, field_scale)
    a, radius, stabilised = _stabilise(_solve(ztz, zty, (ridge,))[ridge], d)
    if stabilised:
        log.info("ridge map: spectral radius %.6f > 1; the growing modes pulled onto the unit "
                 "circle", radius)
    return LinearFit(n_spin=n_spin, nbf=nbf, A=a, field_scale=field_scale, ridge=float(ridge),
                     n_pairs=n_pairs, spectral_radius=radius, stabilised=stabilised,
                     cv_scores=mean_scores)


class LinearPropagator:
    """Per-molecule ridge map in the Löwdin basis about the ground state, no bias (module docstring)."""

    name = "linear"

    def __init__(self, fits: dict[str, LinearFit] | None = None, ridges=RIDGE_GRID):
        self.fits = dict(fits or {})
        self.ridges = tuple(ridges)

    def fit(self, molecule: str, train, val=()) -> LinearFit:
        """Fit ``molecule``'s map on its training trajectories (``val`` only selects the penalty)."""
        self.fits[molecule] = fit_ridge_map(train, val, self.ridges)
        f = self.fits[molecule]
        log.info("linear: %s ridge %.0e (CV %s), %d pairs, spectral radius %.6f%s", molecule,
                 f.ridge, {r: round(s, 4) for r, s in f.cv_scores.items()}, f.n_pairs,
                 f.spectral_radius, " (stabilised)" if f.stabilised else "")
        return f

    def _fit(self, molecule: str) -> LinearFit:
        if molecule not in self.fits:
            raise InputError(f"the linear propagator was not fitted for molecule '{molecule}' "
                             f"(fitted: {', '.join(sorted(self.fits)) or 'none'})")
        return self.fits[molecule]

    def _check(self, fit: LinearFit, prep: _Prepared, molecule: str) -> None:
        if prep.x.shape[1] != fit.d:
            raise InputError(f"{molecule}: trajectory basis size does not match the fitted map")

    def one_step(self, traj) -> np.ndarray:
        """(T-1, n_spin, n, n) teacher-forced predictions of frames 1..T-1."""
        fit = self._fit(traj.molecule)
        prep = _Prepared(traj)
        self._check(fit, prep, traj.molecule)
        x_next = prep.features(fit.field_scale) @ fit.A.T
        return lowdin_matrix(x_next, prep.p_ref, prep.s_inv_half)

    def rollout_trajectory(self, traj) -> np.ndarray:
        """(T, n_spin, n, n) free rollout from frame 0 under the trajectory's field."""
        fit = self._fit(traj.molecule)
        prep = _Prepared(traj)
        self._check(fit, prep, traj.molecule)
        x = _rollout_x(fit.A, prep.x[0], prep.fields, fit.field_scale)
        out = lowdin_matrix(x, prep.p_ref, prep.s_inv_half)
        out[0] = traj.rho[0]
        return out

    def state_dict(self) -> dict:
        return {"model": self.name, "ridges": list(self.ridges), "molecules": {
            mol: {"n_spin": f.n_spin, "nbf": f.nbf, "n_pairs": f.n_pairs, "A": torch.from_numpy(f.A),
                  "field_scale": f.field_scale, "ridge": f.ridge,
                  "spectral_radius": f.spectral_radius, "stabilised": f.stabilised,
                  "cv_ridges": [float(r) for r in f.cv_scores],
                  "cv_scores": [float(s) for s in f.cv_scores.values()]}
            for mol, f in self.fits.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LinearPropagator":
        if any("A" not in v for v in state["molecules"].values()):
            raise InputError("this linear model was saved by an older rtml (affine propagator); "
                             "refit it with `rtml train --model linear`")
        fits = {mol: LinearFit(n_spin=int(v["n_spin"]), nbf=int(v["nbf"]), A=v["A"].numpy(),
                               field_scale=float(v["field_scale"]), ridge=float(v["ridge"]),
                               n_pairs=int(v["n_pairs"]),
                               spectral_radius=float(v["spectral_radius"]),
                               stabilised=bool(v["stabilised"]),
                               cv_scores=dict(zip(v["cv_ridges"], v["cv_scores"])))
                for mol, v in state["molecules"].items()}
        return cls(fits, ridges=state.get("ridges", RIDGE_GRID))


def fit_linear(groups: dict, splits: dict) -> LinearPropagator:
    """The ridge baseline of every molecule in ``groups`` (store groups, xarray Datasets),
    its penalty chosen by cross-validation on the ``splits[mol]["train"]`` and ``"val"`` rows,
    then refitted on both; ``"test"`` rows are never read. Molecules without training
    trajectories are skipped."""
    model = LinearPropagator()
    for mol, ds in groups.items():
        if not splits[mol]["train"]:
            log.warning("%s: no training trajectories; the linear baseline skips it", mol)
            continue
        model.fit(mol, [trajectory_data(ds, row, mol) for row in splits[mol]["train"]],
                  [trajectory_data(ds, row, mol) for row in splits[mol]["val"]])
    return model


def load_baseline(state: dict):
    """Rebuild a baseline model from its ``state_dict``."""
    kind = state.get("model")
    if kind == "persistence":
        return PersistenceModel()
    if kind == "linear":
        return LinearPropagator.from_state_dict(state)
    raise InputError(f"unknown baseline model '{kind}'")
