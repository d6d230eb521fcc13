r"""Baseline density propagators: persistence and a per-molecule linear propagator.

Every model here maps the density at one saved step and the field at both ends of the step
to the density at the next saved step,

.. math:: P(t_{k+1}) = \mathcal M_\text{mol}\big(P(t_k), \mathbf E(t_k), \mathbf E(t_{k+1}); P(t_0)\big),

(the initial density :math:`P(t_0)` of the trajectory is known and may be used as a
reference) and rolls out by feeding its own predictions back (:meth:`rollout`). They are the reference
points the learned model must beat (issue: "baselines evaluated on the same splits by the
same code").

- **Persistence**: :math:`P(t_{k+1}) = P(t_k)`.
- **Linear propagator** (fitted per molecule by ridge regression on the training split):
  with :math:`x = \mathrm{vec}_\mathbb{R}(P)` the :math:`n_\text{spin}n^2` real
  coordinates of the Hermitian density (:mod:`rtml.model._hermitian`),

  .. math:: x_{k+1} = x_k + W (x_k - x_0) + V\,[\mathbf E(t_k), \mathbf E(t_{k+1})] + b,

  the form of the linearised Liouville-von Neumann map around the initial state
  (:math:`W` from the Fock response, :math:`V` from the dipole coupling); working with the
  deviation from :math:`x_0` keeps the geometry-dependent static density out of the fit.
  Its output is Hermitian by construction.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field

import numpy as np

from rtml._errors import InputError
from rtml.model._hermitian import hermitian_to_real, real_to_hermitian

__all__ = ["PersistenceModel", "LinearPropagator", "LinearFit", "load_baseline"]


class _Rollout(abc.ABC):
    """Shared rollout over a field sequence."""

    @abc.abstractmethod
    def step(self, molecule: str, p: np.ndarray, field_now: np.ndarray, field_next: np.ndarray,
             p_initial: np.ndarray) -> np.ndarray:
        """P(t_{k+1}) from P(t_k) (n_spin, n, n), the fields E(t_k), E(t_{k+1}) (3,) and the
        trajectory's initial density P(t_0)."""

    def rollout(self, molecule: str, p0: np.ndarray, fields: np.ndarray) -> np.ndarray:
        """Densities at all saved steps from P(t_0) and the field at every saved step.

        Args:
            p0: (n_spin, n, n) complex density at t_0.
            fields: (T, 3) field at t_0 ... t_{T-1}.

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
        rho, field = traj.rho, traj.field
        return np.array([self.step(traj.molecule, rho[k], field[k], field[k + 1], rho[0])
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


@dataclass
class LinearFit:
    """Parameters of one molecule's linear propagator (see module docstring).

    W: (d, d), V: (d, 6), b: (d,), with d = n_spin * nbf^2.
    """

    n_spin: int
    nbf: int
    W: np.ndarray
    V: np.ndarray
    b: np.ndarray
    n_pairs: int = 0
    ridge: float = 0.0


@dataclass
class _NormalEquations:
    """Running sums F^T F and F^T Y for a streaming least-squares fit."""

    d: int
    ftf: np.ndarray = field(init=False)
    fty: np.ndarray = field(init=False)
    n: int = 0

    def __post_init__(self):
        k = self.d + 7  # x, E_now, E_next, 1
        self.ftf = np.zeros((k, k))
        self.fty = np.zeros((k, self.d))


def _features(x: np.ndarray, e_now: np.ndarray, e_next: np.ndarray) -> np.ndarray:
    return np.concatenate([x, e_now, e_next, np.ones((len(x), 1))], axis=1)


class LinearPropagator(_Rollout):
    """Per-molecule affine map x_{k+1} = x_k + W (x_k - x_0) + V [E_k, E_{k+1}] + b (ridge fit)."""

    name = "linear"

    def __init__(self, fits: dict[str, LinearFit] | None = None, ridge: float = 1e-8):
        self.fits = dict(fits or {})
        self.ridge = ridge
        self._sums: dict[str, _NormalEquations] = {}

    # -- fitting -------------------------------------------------------------------
    def accumulate(self, molecule: str, rho: np.ndarray, fields: np.ndarray) -> None:
        """Add one trajectory's consecutive pairs to the molecule's normal equations.

        Args:
            rho: (T, n_spin, n, n) complex densities at saved steps.
            fields: (T, 3) field at the same times.
        """
        n_spin, n = rho.shape[1], rho.shape[-1]
        x = hermitian_to_real(rho)
        sums = self._sums.setdefault(molecule, _NormalEquations(x.shape[1]))
        if sums.d != x.shape[1]:
            raise InputError(f"{molecule}: trajectories with different basis sizes")
        feats = _features(x[:-1] - x[0], fields[:-1], fields[1:])
        sums.ftf += feats.T @ feats
        sums.fty += feats.T @ (x[1:] - x[:-1])
        sums.n += len(feats)
        self._shape = getattr(self, "_shape", {})
        self._shape[molecule] = (n_spin, n)

    def solve(self) -> None:
        """Solve the ridge-regularised normal equations of every accumulated molecule.

        .. math:: (F^TF + \\lambda\\,\\overline{\\mathrm{diag}}(F^TF)\\,I)\\,\\theta = F^TY
        """
        for molecule, sums in self._sums.items():
            k = sums.ftf.shape[0]
            lam = self.ridge * max(np.trace(sums.ftf) / k, 1e-30)
            theta = np.linalg.solve(sums.ftf + lam * np.eye(k), sums.fty)  # (k, d)
            d = sums.d
            n_spin, n = self._shape[molecule]
            self.fits[molecule] = LinearFit(n_spin=n_spin, nbf=n, W=theta[:d].T.copy(),
                                            V=theta[d:d + 6].T.copy(), b=theta[d + 6].copy(),
                                            n_pairs=sums.n, ridge=self.ridge)
        self._sums.clear()

    # -- prediction ----------------------------------------------------------------
    def step(self, molecule, p, field_now, field_next, p_initial):
        fit = self._fit(molecule)
        x, x0 = hermitian_to_real(np.stack([p, p_initial]))
        e = np.concatenate([field_now, field_next])
        return real_to_hermitian(x + fit.W @ (x - x0) + fit.V @ e + fit.b, fit.n_spin, fit.nbf)

    def _fit(self, molecule: str) -> LinearFit:
        if molecule not in self.fits:
            raise InputError(f"the linear propagator was not fitted for molecule '{molecule}' "
                             f"(fitted: {', '.join(sorted(self.fits)) or 'none'})")
        return self.fits[molecule]

    def state_dict(self) -> dict:
        import torch

        return {"model": self.name, "ridge": self.ridge, "molecules": {
            mol: {"n_spin": f.n_spin, "nbf": f.nbf, "n_pairs": f.n_pairs,
                  "W": torch.from_numpy(f.W), "V": torch.from_numpy(f.V), "b": torch.from_numpy(f.b)}
            for mol, f in self.fits.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "LinearPropagator":
        fits = {mol: LinearFit(n_spin=int(v["n_spin"]), nbf=int(v["nbf"]), W=v["W"].numpy(),
                               V=v["V"].numpy(), b=v["b"].numpy(), n_pairs=int(v["n_pairs"]),
                               ridge=float(state["ridge"]))
                for mol, v in state["molecules"].items()}
        return cls(fits, ridge=float(state["ridge"]))


def load_baseline(state: dict):
    """Rebuild a baseline model from its ``state_dict``."""
    kind = state.get("model")
    if kind == "persistence":
        return PersistenceModel()
    if kind == "linear":
        return LinearPropagator.from_state_dict(state)
    raise InputError(f"unknown baseline model '{kind}'")
