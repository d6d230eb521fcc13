r"""Equivariant encoding of the external electric field on the atoms of a molecule.

In the length gauge the field couples to the electrons through :math:`\mathbf E(t)\cdot
\mathbf r`, linearly in :math:`\mathbf E`. :class:`FieldEncoder` keeps both properties:
the field is an l = 1 odd-parity vector (e3nn ``1x1o``, components (x, y, z), the order of
PySCF's p functions and of the stored field), and each atom's features are coupled to it by
one learned bilinear tensor product,

.. math:: f_{a}(t) = \big(x_a \otimes_w \mathbf E(t)/E_0\big) \in \text{irreps\_out},

with :math:`x_a` the atom's geometry features (``irreps_node``) and :math:`E_0` =
``field_scale``. The output is equivariant under a joint rotation (and inversion) of the
molecule and the field, and linear in :math:`\mathbf E`. With scalar output irreps
(``0e`` only, the default ``"16x0e"``, or ``scalar_only=True``) it is invariant: such
scalars are sums of :math:`w\,\mathbf v_a\cdot\mathbf E` over the atom's ``1o`` features
:math:`\mathbf v_a`, which is exactly the form of the dipole coupling.

Because the product is bilinear, it is evaluated once per atom for the three Cartesian unit
fields and contracted with :math:`\mathbf E(t)` for all times (cost independent of the
sequence length in the tensor product):

.. math:: f_a(t) = \sum_{k \in \{x,y,z\}} \frac{E_k(t)}{E_0}\,\big(x_a \otimes_w \hat e_k\big).

Note (e3nn): the Clebsch-Gordan coefficients are computed in the default dtype when the
module is built; build it under ``torch.set_default_dtype(torch.float64)`` to get float64
equivariance (1e-14), not just float64 arithmetic on float32-accurate coefficients.
"""

from __future__ import annotations

import torch
from e3nn import o3
from torch import nn

from rtml._errors import InputError

__all__ = ["FieldEncoder"]


class FieldEncoder(nn.Module):
    r"""Couple the electric field (a ``1x1o`` vector) to per-atom geometry features.

    Parameters
    ----------
    irreps_node : str or o3.Irreps
        Irreps of the per-atom geometry features.
    irreps_out : str or o3.Irreps
        Irreps of the per-atom, per-time output. Every irrep must be reachable from some
        ``irreps_node`` irrep times ``1o`` (else :class:`ValueError`).
    scalar_only : bool
        Keep only the ``0e`` part of ``irreps_out`` (invariant output under joint rotation
        and inversion of molecule and field).
    field_scale : float
        :math:`E_0` in a.u.: the field is divided by it (e.g. the largest amplitude in
        the data set, ~0.01-0.05 a.u.) so the features are O(1). Linear, so harmless.

    Shapes
    ------
    ``forward(field, node_feats)``: field (..., L, 3) in a.u., node_feats (..., n_atoms,
    irreps_node.dim) -> (..., L, n_atoms, irreps_out.dim); usually ``...`` = (B,).
    """

    def __init__(self, irreps_node="32x0e+16x1o+8x2e", irreps_out="16x0e", *, scalar_only: bool = False,
                 field_scale: float = 1.0):
        super().__init__()
        self.irreps_node = o3.Irreps(irreps_node)
        self.irreps_field = o3.Irreps("1x1o")
        irreps_out = o3.Irreps(irreps_out)
        if scalar_only:
            irreps_out = o3.Irreps([(mul, ir) for mul, ir in irreps_out if ir == o3.Irrep("0e")])
            if irreps_out.dim == 0:
                raise InputError("scalar_only=True but irreps_out has no 0e part")
        reachable = {ir_out for _, ir in self.irreps_node for ir_out in ir * o3.Irrep("1o")}
        missing = [str(ir) for _, ir in irreps_out if ir not in reachable]
        if missing:
            raise InputError(f"irreps_out {irreps_out} has {', '.join(missing)}, which no irrep of "
                             f"irreps_node {self.irreps_node} times 1x1o produces")
        if not field_scale > 0:
            raise InputError(f"field_scale must be > 0, got {field_scale}")
        self.irreps_out = irreps_out
        self.field_scale = float(field_scale)
        self.tp = o3.FullyConnectedTensorProduct(self.irreps_node, self.irreps_field, self.irreps_out)

    @property
    def invariant(self) -> bool:
        """Whether the output is made of ``0e`` scalars only."""
        return all(ir == o3.Irrep("0e") for _, ir in self.irreps_out)

    def unit_responses(self, node_feats: torch.Tensor) -> torch.Tensor:
        r"""Per-atom output for the unit fields :math:`\hat e_x, \hat e_y, \hat e_z`.

        (..., n_atoms, irreps_node.dim) -> (..., n_atoms, 3, irreps_out.dim). Depends on the
        geometry only: compute it once per molecule and reuse it along a rollout.
        """
        if node_feats.shape[-1] != self.irreps_node.dim:
            raise InputError(f"node_feats must end in irreps_node.dim = {self.irreps_node.dim} "
                             f"({self.irreps_node}), got shape {tuple(node_feats.shape)}")
        basis = torch.eye(3, dtype=node_feats.dtype, device=node_feats.device)
        x = node_feats.unsqueeze(-2).expand(*node_feats.shape[:-1], 3, node_feats.shape[-1])
        return self.tp(x, basis.expand(*node_feats.shape[:-1], 3, 3))

    def forward(self, field: torch.Tensor, node_feats: torch.Tensor) -> torch.Tensor:
        r"""Encode :math:`\mathbf E(t)` on every atom.

        Parameters
        ----------
        field : torch.Tensor
            (..., L, 3) electric field in a.u., (x, y, z).
        node_feats : torch.Tensor
            (..., n_atoms, irreps_node.dim) geometry features.

        Returns
        -------
        torch.Tensor
            (..., L, n_atoms, irreps_out.dim), linear in ``field``.
        """
        if field.shape[-1] != 3:
            raise InputError(f"field must be (..., L, 3), got shape {tuple(field.shape)}")
        units = self.unit_responses(node_feats)                        # (..., A, 3, out)
        #: out = self.tp(node_feats[..., None, :, :], field[..., :, None, :] / self.field_scale)
        return torch.einsum("...lk,...ako->...lao", field.to(units.dtype) / self.field_scale, units)

    def __repr__(self) -> str:
        return (f"FieldEncoder({self.irreps_node} x {self.irreps_field} -> {self.irreps_out} | "
                f"{self.tp.weight_numel} weights, field_scale={self.field_scale:g})")
