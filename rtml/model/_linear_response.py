r"""The adiabatic linear-response propagator: the model's exact step with no network.

The physics baseline every learned ΔG' must beat: the step of :mod:`rtml.model._rtml`
(Löwdin basis, the implicit trapezoid by corrector passes, exact field coupling) with the
two-electron change taken to first order in :math:`\Delta P'` at the ground state,

.. math::

    \Delta G'[\Delta P'] = J'[\Delta P'] - \gamma K'_\text{eff}[\Delta P']
        + f'_{xc}[\rho_0]\,\Delta P',

exact Coulomb and exchange (:func:`~rtml.model._physics.coulomb_exchange_operators`) and the
XC kernel frozen at the ground state (:func:`~rtml.model._physics.xc_kernel_operator`). For
weak fields this is linear-response TDDFT in the time domain, the same map the engine's
carried corrector uses between Fock builds; what it misses (the XC change beyond first
order) is what ``learned="xc-nonlinear"`` asks the network for.
"""

from __future__ import annotations

import numpy as np
import torch

from rtml.model._config import ModelConfig
from rtml.model._physics import apply_coulomb_exchange
from rtml.model._rtml import (MoleculeSystem, frame_spacing, midpoint_fields,
                              system_from_trajectories, trapezoid_step)

__all__ = ["LinearResponsePropagator"]


class LinearResponsePropagator:
    """Rollouts with ΔG' linear in ΔP' (J, K and the ground-state XC kernel), no network.

    Args:
        corrector_iterations: corrector passes of each step (default: the default model's,
            so that the baseline is that model with its gates closed).
    """

    name = "lr-tddft"

    def __init__(self, corrector_iterations: int = ModelConfig.corrector_iterations):
        self._systems: dict = {}
        self.corrector_iterations = corrector_iterations

    def system(self, traj) -> MoleculeSystem:
        key = (traj.molecule, np.asarray(traj.positions_angstrom).tobytes(), traj.basis)
        if key not in self._systems:
            self._systems = {key: system_from_trajectories([traj], xc_kernel=True)}
        return self._systems[key]

    @staticmethod
    def delta_fock(p: torch.Tensor, system: MoleculeSystem) -> torch.Tensor:
        r""":math:`\Delta G'` of Löwdin densities (B, ..., S, n, n)."""
        lead = p.dim() - 4
        rho0 = system.rho0.reshape(system.batch, *([1] * lead), *system.rho0.shape[1:])
        return apply_coulomb_exchange(p - rho0.to(p.dtype), system.w_same, system.w_total,
                                      system.w_spin)

    def step(self, p: torch.Tensor, field_mid: torch.Tensor, system: MoleculeSystem,
             dt: float) -> torch.Tensor:
        """P'(t) -> P'(t + dt), the model's exact step with the linear ΔG'."""
        return trapezoid_step(p, self.delta_fock(p, system), lambda q: self.delta_fock(q, system),
                              system, field_mid, dt, self.corrector_iterations)

    @torch.no_grad()
    def one_step(self, traj) -> np.ndarray:
        """Teacher-forced one-step predictions of frames 1..T-1 (AO, complex)."""
        system = self.system(traj)
        rho = system.to_orthonormal_density(torch.as_tensor(traj.rho)[None].to(torch.complex128))
        field = torch.as_tensor(midpoint_fields(traj))[None]
        nxt = self.step(rho[:, :-1], field, system, frame_spacing(traj))
        return system.to_ao_density(nxt)[0].numpy()

    @torch.no_grad()
    def rollout_trajectory(self, traj) -> np.ndarray:
        """Free rollout from the first frame under the reference field (AO)."""
        system = self.system(traj)
        p = system.to_orthonormal_density(torch.as_tensor(traj.rho[:1]).to(torch.complex128))
        field = torch.as_tensor(midpoint_fields(traj))[None]
        dt = frame_spacing(traj)
        out = [p]
        for k in range(field.shape[1]):
            p = self.step(p, field[:, k], system, dt)
            out.append(p)
        return system.to_ao_density(torch.stack(out, dim=1))[0].numpy()
