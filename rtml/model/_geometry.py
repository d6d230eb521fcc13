r"""E(3)-equivariant geometry encoder: atoms -> per-atom irreps + a pooled invariant.

Positions enter in Ångström and are converted to bohr at once
(:data:`rtml.units.ANGSTROM_BOHR`); everything inside is atomic units. The graph is the
complete graph of each molecule (molecules are small); a smooth cosine cutoff makes pairs
beyond ``r_cut_bohr`` contribute exactly zero, so this equals a radius graph.

One interaction layer (after gate_points_2101 in e3nn, with linear self-interactions):

.. math::

    m_i = \frac{1}{\sqrt{\bar n}} \sum_{j \ne i} f_c(r_{ij})\,
          \big(W_1 x_j\big) \otimes_{w(r_{ij})} Y(\hat r_{ij}), \qquad
    x_i' = \mathrm{Gate}\big(\cos\tfrac{\pi}{8}\, W_2 m_i + \sin\tfrac{\pi}{8}\, W_s x_i\big)

with :math:`\hat r_{ij} = (r_j - r_i)/|r_j - r_i|`, real spherical harmonics :math:`Y` up to
``lmax`` (e3nn "component" normalisation), tensor-product weights :math:`w(r)` from a
bias-free MLP of the Bessel basis (:class:`RadialBasis`), equivariant linear maps
:math:`W` (``o3.Linear``) and ``e3nn.nn.Gate`` nonlinearities.

Precision: e3nn stores its Wigner-3j constants as buffers in the default dtype at
construction. For float64 work build the module under
``torch.set_default_dtype(torch.float64)``; a module built in float32 and cast with
``.double()`` is equivariant only to ~1e-8 relative. Building in float64 and casting with
``.float()`` is fine.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet, Gate

from rtml.units import ANGSTROM_BOHR


class RadialBasis(torch.nn.Module):
    r"""Bessel radial basis with a smooth cosine cutoff.

    .. math::

        e_n(r) = \sqrt{\frac{2}{r_c}}\, \frac{\sin(n\pi r / r_c)}{r}\, f_c(r), \qquad
        f_c(r) = \tfrac12\big(\cos(\pi r / r_c) + 1\big)\,\Theta(r_c - r),
        \qquad n = 1..N

    Parameters
    ----------
    n_radial : int
        Number of basis functions N.
    r_cut_bohr : float
        Cutoff radius :math:`r_c` in bohr.
    """

    def __init__(self, n_radial: int = 8, r_cut_bohr: float = 10.0):
        super().__init__()
        if n_radial < 1:
            raise ValueError(f"n_radial must be >= 1, got {n_radial}")
        if not r_cut_bohr > 0:
            raise ValueError(f"r_cut_bohr must be > 0, got {r_cut_bohr}")
        self.n_radial = int(n_radial)
        self.r_cut_bohr = float(r_cut_bohr)
        self.register_buffer("frequencies", math.pi * torch.arange(1, n_radial + 1) / r_cut_bohr,
                             persistent=False)

    def cutoff(self, r_bohr: torch.Tensor) -> torch.Tensor:
        """Cosine cutoff :math:`f_c(r)`, same shape as ``r_bohr``."""
        fc = 0.5 * (torch.cos(math.pi * r_bohr / self.r_cut_bohr) + 1.0)
        return torch.where(r_bohr < self.r_cut_bohr, fc, torch.zeros_like(fc))

    def forward(self, r_bohr: torch.Tensor) -> torch.Tensor:
        """(...) distances in bohr (> 0) -> (..., n_radial)."""
        r = r_bohr[..., None]
        freq = self.frequencies.to(r.dtype)
        e = math.sqrt(2.0 / self.r_cut_bohr) * torch.sin(freq * r) / r
        return e * self.cutoff(r_bohr)[..., None]

    def extra_repr(self) -> str:
        return f"n_radial={self.n_radial}, r_cut_bohr={self.r_cut_bohr}"


def _tp_path_exists(irreps_in1, irreps_in2, ir_out) -> bool:
    ir_out = o3.Irrep(ir_out)
    return any(ir_out in ir1 * ir2 for _, ir1 in irreps_in1 for _, ir2 in irreps_in2)


def convolution_tensor_product(irreps_in, irreps_sh, irreps_out) -> o3.TensorProduct:
    """``irreps_in x irreps_sh`` -> every path landing in ``irreps_out`` ("uvu": one weight per
    input channel and path, supplied per edge by a radial network; no internal weights)."""
    irreps_in, irreps_sh, irreps_out = o3.Irreps(irreps_in), o3.Irreps(irreps_sh), o3.Irreps(irreps_out)
    irreps_mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_in):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in irreps_out:
                    instructions.append((i, j, len(irreps_mid), "uvu", True))
                    irreps_mid.append((mul, ir_out))
    irreps_mid, perm, _ = o3.Irreps(irreps_mid).sort()
    instructions = [(a, b, perm[k], mode, train) for a, b, k, mode, train in instructions]
    return o3.TensorProduct(irreps_in, irreps_sh, irreps_mid, instructions,
                            internal_weights=False, shared_weights=False)


class _Interaction(torch.nn.Module):
    """Point convolution ``irreps_in -> irreps_out`` (no nonlinearity), see module docstring."""

    def __init__(self, irreps_in, irreps_sh, irreps_out, n_radial, radial_hidden,
                 avg_num_neighbors):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.irreps_out = o3.Irreps(irreps_out)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.self_interaction = o3.Linear(self.irreps_in, self.irreps_out)
        self.linear_1 = o3.Linear(self.irreps_in, self.irreps_in)
        self.tp = convolution_tensor_product(self.irreps_in, self.irreps_sh, self.irreps_out)
        irreps_mid = self.tp.irreps_out
        self.radial = FullyConnectedNet([n_radial, radial_hidden, self.tp.weight_numel],
                                        torch.nn.functional.silu)
        self.linear_2 = o3.Linear(irreps_mid.simplify(), self.irreps_out)

    def forward(self, x, edge_src, edge_dst, edge_sh, edge_radial, edge_cut):
        """x (B, N, in.dim); edges (E,) index arrays; edge_* (B, E, ...) -> (B, N, out.dim)."""
        s = self.self_interaction(x)
        h = self.linear_1(x)
        w = self.radial(edge_radial)
        msg = self.tp(h[:, edge_src], edge_sh, w) * edge_cut[..., None]
        agg = torch.zeros(x.shape[0], x.shape[1], msg.shape[-1], dtype=msg.dtype, device=msg.device)
        agg = agg.index_add(1, edge_dst, msg) / math.sqrt(self.avg_num_neighbors)
        return math.sin(math.pi / 8) * s + math.cos(math.pi / 8) * self.linear_2(agg)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out})"


class GeometryFeatures(NamedTuple):
    """Output of :class:`GeometryEncoder`.

    Attributes
    ----------
    node : Tensor, shape (B, n_atoms, irreps_out.dim)
        Equivariant per-atom features (e3nn layout of ``irreps_out``).
    invariant : Tensor, shape (B, d_invariant)
        Rotation-, translation- and permutation-invariant molecule embedding (for FiLM).
    edge_radial : Tensor, shape (B, n_atoms, n_atoms, n_radial)
        Invariant radial embedding of every atom pair (zero on the diagonal).
    distance_bohr : Tensor, shape (B, n_atoms, n_atoms)
        Interatomic distances in bohr.
    """

    node: torch.Tensor
    invariant: torch.Tensor
    edge_radial: torch.Tensor
    distance_bohr: torch.Tensor


class GeometryEncoder(torch.nn.Module):
    r"""Equivariant message passing over the atoms of a molecule.

    Parameters
    ----------
    irreps_out : str or o3.Irreps
        Per-atom output irreps, e.g. ``"32x0e+16x1o+8x2e"``.
    n_elements : int
        Largest supported nuclear charge Z (elements enter one-hot, Z in 1..n_elements).
    lmax : int
        Highest l of the edge spherical harmonics and of the hidden features.
    r_cut_bohr : float
        Cutoff radius in bohr.
    n_radial : int
        Number of Bessel radial basis functions.
    n_layers : int
        Number of gated interaction layers before the output interaction (>= 1).
    d_invariant : int
        Size of the pooled invariant embedding.
    mul_hidden : int
        Multiplicity of each hidden irrep (0e and l = 1..lmax of both parities, where reachable).
    radial_hidden : int
        Hidden width of the radial MLPs.
    avg_num_neighbors : float
        Normalisation :math:`\bar n` of the neighbour sum.

    Attributes
    ----------
    irreps_in : o3.Irreps
        ``f"{n_elements}x0e"`` (one-hot elements).
    irreps_out : o3.Irreps
    irreps_sh : o3.Irreps
        Spherical harmonics of the edge directions, ``Irreps.spherical_harmonics(lmax)``.

    Examples
    --------
    >>> enc = GeometryEncoder("8x0e+4x1o", n_elements=10)
    >>> out = enc(torch.randn(2, 3, 3), torch.tensor([[8, 1, 1], [8, 1, 1]]))
    >>> out.node.shape, out.invariant.shape, out.edge_radial.shape
    (torch.Size([2, 3, 20]), torch.Size([2, 64]), torch.Size([2, 3, 3, 8]))
    """

    def __init__(self, irreps_out="32x0e+16x1o+8x2e", n_elements: int = 20, lmax: int = 2,
                 r_cut_bohr: float = 10.0, n_radial: int = 8, n_layers: int = 2,
                 d_invariant: int = 64, mul_hidden: int = 16, radial_hidden: int = 32,
                 avg_num_neighbors: float = 4.0):
        super().__init__()
        try:
            self.irreps_out = o3.Irreps(irreps_out)
        except (ValueError, AssertionError, TypeError) as err:
            raise ValueError(f"irreps_out={irreps_out!r} is not a valid irreps string") from err
        for name, value, low in (("n_elements", n_elements, 1), ("lmax", lmax, 0),
                                 ("n_layers", n_layers, 1), ("d_invariant", d_invariant, 1),
                                 ("mul_hidden", mul_hidden, 1), ("n_radial", n_radial, 1),
                                 ("radial_hidden", radial_hidden, 1)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.n_elements = int(n_elements)
        self.lmax = int(lmax)
        self.n_layers = int(n_layers)
        self.d_invariant = int(d_invariant)
        self.irreps_in = o3.Irreps(f"{self.n_elements}x0e")
        self.irreps_sh = o3.Irreps.spherical_harmonics(self.lmax)
        self.radial_basis = RadialBasis(n_radial, r_cut_bohr)

        scalars = o3.Irreps(f"{mul_hidden}x0e")
        self.embedding = o3.Linear(self.irreps_in, scalars)
        irreps = scalars
        layers = []
        for _ in range(self.n_layers):
            gated = o3.Irreps([(mul_hidden, (l, p)) for l in range(1, self.lmax + 1)
                               for p in (-1, 1) if _tp_path_exists(irreps, self.irreps_sh, (l, p))])
            gates = o3.Irreps(f"{gated.num_irreps}x0e")
            gate = Gate(scalars, [torch.nn.functional.silu], gates, [torch.sigmoid], gated)
            conv = _Interaction(irreps, self.irreps_sh, gate.irreps_in, n_radial, radial_hidden,
                                avg_num_neighbors)
            layers.append(torch.nn.ModuleDict({"conv": conv, "gate": gate}))
            irreps = gate.irreps_out
        self.layers = torch.nn.ModuleList(layers)
        missing = [str(ir) for _, ir in self.irreps_out
                   if not _tp_path_exists(irreps, self.irreps_sh, ir)]
        if missing:
            raise ValueError(
                f"irreps_out={str(self.irreps_out)!r}: {', '.join(missing)} cannot be reached from "
                f"hidden irreps {irreps} with lmax={self.lmax}")
        self.irreps_hidden = irreps
        self.output = _Interaction(irreps, self.irreps_sh, self.irreps_out, n_radial,
                                   radial_hidden, avg_num_neighbors)
        self._n_pool = mul_hidden + sum(mul for mul, ir in self.irreps_out if ir == o3.Irrep("0e"))
        self.pool_mlp = torch.nn.Sequential(
            torch.nn.Linear(self._n_pool, self.d_invariant), torch.nn.SiLU(),
            torch.nn.Linear(self.d_invariant, self.d_invariant))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
                f"lmax={self.lmax}, n_layers={self.n_layers}, d_invariant={self.d_invariant})")

    @staticmethod
    def _scalars(x: torch.Tensor, irreps: o3.Irreps) -> torch.Tensor:
        parts = [x[..., sl] for sl, (_, ir) in zip(irreps.slices(), irreps) if ir == o3.Irrep("0e")]
        return torch.cat(parts, dim=-1) if parts else x[..., :0]

    def forward(self, positions_angstrom: torch.Tensor,
                atomic_numbers: torch.Tensor) -> GeometryFeatures:
        """Encode a batch of molecules with equal atom counts.

        Parameters
        ----------
        positions_angstrom : Tensor, shape (B, n_atoms, 3)
            Cartesian positions in Ångström (dtype sets the computation dtype).
        atomic_numbers : Tensor, shape (B, n_atoms) or (n_atoms,), int
            Nuclear charges, 1 <= Z <= n_elements.

        Returns
        -------
        GeometryFeatures
        """
        pos = positions_angstrom
        if pos.dim() != 3 or pos.shape[-1] != 3:
            raise ValueError(f"positions_angstrom must have shape (B, n_atoms, 3), got {tuple(pos.shape)}")
        b, n = pos.shape[:2]
        z = torch.as_tensor(atomic_numbers, device=pos.device).long()
        z = z.expand(b, n) if z.dim() == 1 else z
        if z.shape != (b, n):
            raise ValueError(f"atomic_numbers must have shape ({b}, {n}), got {tuple(z.shape)}")
        if z.min() < 1 or z.max() > self.n_elements:
            raise ValueError(f"atomic numbers must lie in 1..{self.n_elements}, got {z.unique().tolist()}")
        pos = pos * ANGSTROM_BOHR
        vec_all = pos[:, None, :, :] - pos[:, :, None, :]            # [b, i, j] = r_j - r_i
        eye = torch.eye(n, dtype=torch.bool, device=pos.device)
        safe = torch.where(eye[..., None], torch.ones_like(vec_all), vec_all)
        dist = torch.where(eye, torch.zeros_like(vec_all[..., 0]), safe.norm(dim=-1))
        edge_radial_all = self.radial_basis(torch.where(eye, torch.ones_like(dist), dist))
        edge_radial_all = edge_radial_all * (~eye)[..., None]

        dst, src = (~eye).nonzero(as_tuple=True)                      # message src=j -> dst=i
        vec = safe[:, dst, src]                                       # (B, E, 3)
        r = dist[:, dst, src]
        edge_sh = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True,
                                         normalization="component")
        edge_radial = edge_radial_all[:, dst, src]
        edge_cut = self.radial_basis.cutoff(r)

        onehot = torch.nn.functional.one_hot(z - 1, self.n_elements).to(pos.dtype)
        x = self.embedding(onehot)
        for layer in self.layers:
            x = layer["gate"](layer["conv"](x, src, dst, edge_sh, edge_radial, edge_cut))
        hidden_scalars = self._scalars(x, self.irreps_hidden)
        node = self.output(x, src, dst, edge_sh, edge_radial, edge_cut)
        pooled = torch.cat([hidden_scalars, self._scalars(node, self.irreps_out)], dim=-1).mean(dim=1)
        return GeometryFeatures(node, self.pool_mlp(pooled), edge_radial_all, dist)
