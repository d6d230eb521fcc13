r"""Density matrices <-> e3nn irreps: exact Clebsch-Gordan codec and learned codec.

Exact change of basis
---------------------
Split the AO density :math:`P` (complex Hermitian, PySCF AO order) into shell blocks
:math:`P_{ab}` of shape :math:`(2l_a+1, 2l_b+1)`. In e3nn's per-shell basis
(:math:`\tilde P_{ab} = U_{l_a} P_{ab} U_{l_b}^T`, see :mod:`rtml.model._basis_layout`)
the block transforms as :math:`l_a \otimes l_b`, which Clebsch-Gordan coefficients split
into irreps :math:`L = |l_a-l_b|, \dots, l_a+l_b` of parity :math:`(-1)^{l_a+l_b}`:

.. math::

    c^{L}_{M} = \sqrt{2L+1} \sum_{m_1 m_2} W^{l_a l_b L}_{m_1 m_2 M}\, \tilde P_{m_1 m_2},
    \qquad
    \tilde P_{m_1 m_2} = \sum_{L, M} \sqrt{2L+1}\, W^{l_a l_b L}_{m_1 m_2 M}\, c^{L}_{M},

with :math:`W` = ``o3.wigner_3j(l_a, l_b, L)`` (Frobenius norm 1), so the stacked map
:math:`\tilde P \mapsto (c^L)_L` is orthogonal and its inverse is its transpose. Examples:
s-s -> 0e, s-p -> 1o, p-p -> 0e+1e+2e, p-d -> 1o+2o+3o. Re P and Im P are separate
channels (the AO rotation is real), so each shell pair gives ``2x`` each irrep (Re, Im).

Same-atom blocks (:math:`a \le b` on atom A) are node features of A; blocks of atom pairs
:math:`A < B` (``layout.edge_index``) are edge features; the lower triangle follows from
:math:`P_{BA} = P_{AB}^\dagger`. :func:`decompose_density` / :func:`recompose_density`
are exact inverses on Hermitian matrices.

Learned codec
-------------
:class:`DensityEncoder` maps each shell pair's CG irreps (Re, Im) to the latent irreps of
its node or edge with weights :math:`w(\xi_{ab})` from an MLP of invariant shell-pair
descriptors :math:`\xi_{ab}` (one-hot Z_A, Z_B, l_a, l_b, shell ranks; for edges a Bessel
basis of :math:`|r_B - r_A|`), summed over the shell pairs of the node/edge:

.. math::

    h^{(L p)}_{T, u, M} = \frac{1}{\sqrt 2} \sum_{(a,b) \to T} \sum_{c \in \{Re, Im\}}
        w^{(L p)}_{u c}(\xi_{ab})\, c^{L}_{ab, c, M}

Its parameters do not depend on the molecule (nbf 4 and 66 share them). Spin is treated
like batch. :class:`DensityDecoder` maps latents back with weights from its own MLPs,
recomposes by CG and imposes Hermiticity. Both are O(3)-equivariant because the weights are
invariant and only multiply irreps of equal (L, p).

Precision: e3nn and this module build constants in torch's default dtype; build float64
modules under ``torch.set_default_dtype(torch.float64)`` (CG tensors here are always made in
float64 and cast on use).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from e3nn import o3

from rtml.model._basis_layout import LMAX_SUPPORTED, BasisLayout, pyscf_to_e3nn
from rtml.model._geometry import RadialBasis
from rtml.units import ANGSTROM_BOHR


# ---------------------------------------------------------------------------- plan
class _Group(NamedTuple):
    """All shell pairs of one kind (node/edge) with equal (l_a, l_b); k instances."""

    kind: str
    la: int
    lb: int
    ls: tuple[int, ...]          # L = |la-lb| .. la+lb
    rows: torch.Tensor           # (k, 2la+1) AO indices of shell a
    cols: torch.Tensor           # (k, 2lb+1) AO indices of shell b
    target: torch.Tensor         # (k,) atom (node) or edge index
    offsets: dict                # L -> (k, 2L+1) flat-vector indices of the Re components
    same_shell: torch.Tensor     # (k,) bool, a == b
    any_same_shell: bool         # same_shell.any()
    z_a: torch.Tensor            # (k,) nuclear charges
    z_b: torch.Tensor
    rank_a: torch.Tensor         # (k,) shell ranks
    rank_b: torch.Tensor
    atom_a: torch.Tensor         # (k,) atoms
    atom_b: torch.Tensor


class _Plan(NamedTuple):
    groups: tuple[_Group, ...]
    node_irreps: o3.Irreps
    edge_irreps: o3.Irreps
    gather: dict                 # kind -> (dim,) index building the flat vector from pieces
    assemble: torch.Tensor       # (nbf*nbf,) index building P from block pieces
    nonsame: tuple[torch.Tensor, ...]  # per group: (k',) instances with a != b


_CG_CACHE: dict = {}


def _cg(la: int, lb: int, L: int, dtype=torch.float64, device=None) -> torch.Tensor:
    r"""CG tensor acting on PySCF-ordered blocks, shape (2la+1, 2lb+1, 2L+1).

    :math:`C_{ijM} = \sqrt{2L+1} \sum_{m_1 m_2} (U_{l_a})_{m_1 i} (U_{l_b})_{m_2 j}
    W^{l_a l_b L}_{m_1 m_2 M}`; :math:`c^L = \sum_{ij} C_{ijM} P_{ij}`.
    """
    key = (la, lb, L)
    if key not in _CG_CACHE:
        w = o3.wigner_3j(la, lb, L, dtype=torch.float64)
        ua = torch.as_tensor(pyscf_to_e3nn(la))
        ub = torch.as_tensor(pyscf_to_e3nn(lb))
        _CG_CACHE[key] = math.sqrt(2 * L + 1) * torch.einsum("ai,bj,abM->ijM", ua, ub, w)
    return _CG_CACHE[key].to(dtype=dtype, device=device)


def _plan(layout: BasisLayout, device=None) -> _Plan:
    """CG plan of a layout with its index tensors on ``device`` (cached on the layout)."""
    device = torch.device("cpu") if device is None else torch.device(device)
    key = ("cg_plan", str(device))
    if key not in layout._cache:
        if device.type == "cpu":
            layout._cache[key] = _build_plan(layout)
        else:
            plan = _plan(layout)

            def mv(x):
                if isinstance(x, torch.Tensor):
                    return x.to(device)
                if isinstance(x, dict):
                    return {k: mv(v) for k, v in x.items()}
                if isinstance(x, tuple) and not isinstance(x, o3.Irreps):
                    return type(x)(*map(mv, x)) if hasattr(x, "_fields") else tuple(map(mv, x))
                return x
            layout._cache[key] = mv(plan)
    return layout._cache[key]


def _build_plan(layout: BasisLayout) -> _Plan:
    shells, n = layout.shells, layout.nbf
    groups, irreps, gather = [], {}, {}
    for kind, pairs in (("node", layout.node_pairs), ("edge", layout.edge_pairs)):
        off, ir_list, pair_off = 0, [], []
        for pr in pairs:
            la, lb = shells[pr.a].l, shells[pr.b].l
            d = {}
            for L in range(abs(la - lb), la + lb + 1):
                d[L] = off
                off += 2 * (2 * L + 1)
                ir_list.append((2, (L, 1 if (la + lb) % 2 == 0 else -1)))
            pair_off.append(d)
        irreps[kind] = o3.Irreps(ir_list)
        keys = sorted({(shells[p.a].l, shells[p.b].l) for p in pairs})
        pieces = []
        for la, lb in keys:
            idx = [i for i, p in enumerate(pairs) if (shells[p.a].l, shells[p.b].l) == (la, lb)]
            sa = [shells[pairs[i].a] for i in idx]
            sb = [shells[pairs[i].b] for i in idx]
            ls = tuple(range(abs(la - lb), la + lb + 1))

            def t(x):
                return torch.as_tensor(np.asarray(x, dtype=np.int64).reshape(len(idx), -1)
                                       if np.ndim(x) > 1 else np.asarray(x, dtype=np.int64))

            g = _Group(
                kind, la, lb, ls,
                rows=t([list(range(s.start, s.stop)) for s in sa]),
                cols=t([list(range(s.start, s.stop)) for s in sb]),
                target=t([pairs[i].target for i in idx]),
                offsets={L: t([pair_off[i][L] for i in idx])[:, None] + torch.arange(2 * L + 1)
                         for L in ls},
                same_shell=torch.as_tensor([pairs[i].a == pairs[i].b for i in idx]),
                any_same_shell=any(pairs[i].a == pairs[i].b for i in idx),
                z_a=t([s.z for s in sa]), z_b=t([s.z for s in sb]),
                rank_a=t([s.rank for s in sa]), rank_b=t([s.rank for s in sb]),
                atom_a=t([s.atom for s in sa]), atom_b=t([s.atom for s in sb]))
            groups.append(g)
            for L in ls:
                pieces += [g.offsets[L].reshape(-1), (g.offsets[L] + 2 * L + 1).reshape(-1)]
        dest = torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
        inv = torch.empty_like(dest)
        inv[dest] = torch.arange(len(dest))
        if not torch.equal(torch.sort(dest).values, torch.arange(off)):
            raise AssertionError(f"{kind} CG components do not tile the feature vector")
        gather[kind] = inv
    # assembly of P: blocks of every group, then transposes of the a != b instances
    flat, nonsame = [], []
    for g in groups:
        flat.append((g.rows[:, :, None] * n + g.cols[:, None, :]).reshape(-1))
    for g in groups:
        ns = torch.nonzero(~g.same_shell).reshape(-1)
        nonsame.append(ns)
        flat.append((g.cols[ns][:, :, None] * n + g.rows[ns][:, None, :]).reshape(-1))
    flat = torch.cat(flat)
    if not torch.equal(torch.sort(flat).values, torch.arange(n * n)):
        raise AssertionError("shell blocks do not tile the AO matrix")  # layout bug
    assemble = torch.empty_like(flat)
    assemble[flat] = torch.arange(n * n)
    return _Plan(tuple(groups), irreps["node"], irreps["edge"], gather, assemble, tuple(nonsame))


def _blocks(re: torch.Tensor, im: torch.Tensor, g: _Group):
    """(..., n, n) -> Re, Im blocks (..., k, 2la+1, 2lb+1)."""
    r, c = g.rows[:, :, None], g.cols[:, None, :]
    return re[..., r, c], im[..., r, c]


def _assemble(plan: _Plan, blocks: list, n: int) -> torch.Tensor:
    """Hermitian P (..., n, n) complex from per-group (Re, Im) blocks (..., k, na, nb)."""
    vals_re, vals_im, t_re, t_im = [], [], [], []
    for g, (xr, xi), ns in zip(plan.groups, blocks, plan.nonsame):
        if g.any_same_shell:
            same = g.same_shell[:, None, None]
            xr = torch.where(same, 0.5 * (xr + xr.transpose(-1, -2)), xr)
            xi = torch.where(same, 0.5 * (xi - xi.transpose(-1, -2)), xi)
        vals_re.append(xr.flatten(-3))
        vals_im.append(xi.flatten(-3))
        t_re.append(xr[..., ns, :, :].transpose(-1, -2).flatten(-3))
        t_im.append(-xi[..., ns, :, :].transpose(-1, -2).flatten(-3))
    re = torch.cat(vals_re + t_re, dim=-1)[..., plan.assemble]
    im = torch.cat(vals_im + t_im, dim=-1)[..., plan.assemble]
    return torch.complex(re, im).reshape(*re.shape[:-1], n, n)


def _split_complex(density, dtype=None):
    p = torch.as_tensor(density)
    if p.is_complex():
        re, im = p.real, p.imag
    else:
        re, im = p, torch.zeros_like(p)
    if dtype is not None:
        re, im = re.to(dtype), im.to(dtype)
    return re, im


# ---------------------------------------------------------------------------- exact codec
class DensityIrreps(NamedTuple):
    """Exact CG decomposition of a density (output of :func:`decompose_density`).

    Attributes
    ----------
    node : Tensor, shape (..., node_irreps.dim)
        Same-atom shell pairs (``layout.node_pairs``: atom, then a <= b), each as
        ``2xL`` irreps (Re, Im) for L = |l_a-l_b| .. l_a+l_b. Atom A's pairs are contiguous.
    edge : Tensor, shape (..., edge_irreps.dim)
        Shell pairs of atom pairs A < B (``layout.edge_pairs``), same layout.
    node_irreps, edge_irreps : o3.Irreps
        Irreps of ``node``/``edge`` (not simplified: one entry per (pair, L)), so that
        ``node @ node_irreps.D_from_matrix(R).T`` rotates them.
    """

    node: torch.Tensor
    edge: torch.Tensor
    node_irreps: o3.Irreps
    edge_irreps: o3.Irreps


def density_irreps(layout: BasisLayout) -> tuple[o3.Irreps, o3.Irreps]:
    """(node_irreps, edge_irreps) of :func:`decompose_density` for ``layout``."""
    plan = _plan(layout)
    return plan.node_irreps, plan.edge_irreps


def decompose_density(density, layout: BasisLayout) -> DensityIrreps:
    r"""Exact CG decomposition of Hermitian AO matrices into node and edge irreps.

    .. math::

        c^{L}_{ab,M} = \sum_{ij} C^{l_a l_b L}_{ijM} P_{ab,ij}, \qquad
        C^{l_a l_b L}_{ijM} = \sqrt{2L+1}\sum_{m_1 m_2} (U_{l_a})_{m_1 i}
        (U_{l_b})_{m_2 j} W^{l_a l_b L}_{m_1 m_2 M}

    for Re P and Im P separately. Only blocks with a <= b (same atom) or A < B are read:
    ``P`` is assumed Hermitian.

    Parameters
    ----------
    density : Tensor or ndarray, shape (..., nbf, nbf), complex or real
        AO density in PySCF order (e.g. (B, n_spin, nbf, nbf)).
    layout : BasisLayout

    Returns
    -------
    DensityIrreps
        ``node`` (..., node_irreps.dim), ``edge`` (..., edge_irreps.dim), real dtype of
        ``density`` (float64 for numpy complex128).
    """
    re, im = _split_complex(density)
    plan = _plan(layout, re.device)
    if re.shape[-2:] != (layout.nbf, layout.nbf):
        raise ValueError(f"density must end in ({layout.nbf}, {layout.nbf}), got {tuple(re.shape)}")
    pieces = {"node": [], "edge": []}
    for g in plan.groups:
        br, bi = _blocks(re, im, g)
        for L in g.ls:
            cg = _cg(g.la, g.lb, L, re.dtype, re.device)
            #: c[..., k, M] = sum_ij P[..., k, i, j] C[i, j, M]
            pieces[g.kind] += [torch.einsum("...kij,ijM->...kM", br, cg).flatten(-2),
                               torch.einsum("...kij,ijM->...kM", bi, cg).flatten(-2)]
    out = {}
    for kind in ("node", "edge"):
        cat = torch.cat(pieces[kind], dim=-1) if pieces[kind] else re.new_zeros(*re.shape[:-2], 0)
        out[kind] = cat[..., plan.gather[kind]]
    return DensityIrreps(out["node"], out["edge"], plan.node_irreps, plan.edge_irreps)


def recompose_density(irreps: DensityIrreps, layout: BasisLayout) -> torch.Tensor:
    r"""Inverse of :func:`decompose_density`.

    .. math::

        P_{ab,ij} = \sum_{L,M} C^{l_a l_b L}_{ijM}\, c^{L}_{ab,M}, \qquad
        P_{ba} = P_{ab}^\dagger

    Same-shell diagonal blocks are made Hermitian, :math:`(X + X^\dagger)/2`.

    Parameters
    ----------
    irreps : DensityIrreps
        ``node`` (..., node_irreps.dim), ``edge`` (..., edge_irreps.dim).
    layout : BasisLayout

    Returns
    -------
    Tensor, shape (..., nbf, nbf), complex (complex128 for float64 input)
    """
    plan = _plan(layout, irreps.node.device)
    feats = {"node": irreps.node, "edge": irreps.edge}
    for kind, ir in (("node", plan.node_irreps), ("edge", plan.edge_irreps)):
        if feats[kind].shape[-1] != ir.dim:
            raise ValueError(f"{kind} features must have last dimension {ir.dim} ({kind} irreps "
                             f"of {layout!r}), got {feats[kind].shape[-1]}")
    blocks = []
    for g in plan.groups:
        x = feats[g.kind]
        xr = xi = 0
        for L in g.ls:
            cg = _cg(g.la, g.lb, L, x.dtype, x.device)
            re_idx = g.offsets[L]
            #: P[..., k, i, j] = sum_M c[..., k, M] C[i, j, M]
            xr = xr + torch.einsum("...kM,ijM->...kij", x[..., re_idx], cg)
            xi = xi + torch.einsum("...kM,ijM->...kij", x[..., re_idx + 2 * L + 1], cg)
        blocks.append((xr, xi))
    return _assemble(plan, blocks, layout.nbf)


# ---------------------------------------------------------------------------- learned codec
class DensityLatent(NamedTuple):
    """Per-node and per-edge latent irreps of a density.

    Attributes
    ----------
    node : Tensor, shape (B, n_spin, n_atoms, irreps_latent.dim)
    edge : Tensor, shape (B, n_spin, n_edges, irreps_latent.dim)
        Edges are ``layout.edge_index`` (A < B, ``np.triu_indices`` order).
    """

    node: torch.Tensor
    edge: torch.Tensor


def produced_irreps(lmax_basis: int) -> o3.Irreps:
    """Irreps that shell pairs with l_a, l_b <= lmax_basis produce, sorted, multiplicity 1.

    >>> str(produced_irreps(1))
    '1x0e+1x1o+1x1e+1x2e'
    """
    out = {o3.Irrep(L, (-1) ** (la + lb)) for la in range(lmax_basis + 1)
           for lb in range(lmax_basis + 1) for L in range(abs(la - lb), la + lb + 1)}
    return o3.Irreps([(1, ir) for ir in sorted(out)])


class _CodecBase(torch.nn.Module):
    """Shared constructor, validation, descriptors and weight MLPs of the learned codec.

    Subclasses set ``_encodes``: True maps density irreps to latent irreps, False back.
    """

    _encodes: bool

    def __init__(self, irreps_latent="16x0e+8x1o+8x1e+4x2e", lmax_basis: int = 1,
                 n_elements: int = 20, max_shell_rank: int = 4, r_cut_bohr: float = 12.0,
                 n_radial: int = 8, mlp_hidden: int = 64, mlp_layers: int = 2):
        super().__init__()
        try:
            latent = o3.Irreps(irreps_latent)
        except (ValueError, AssertionError, TypeError) as err:
            raise ValueError(f"irreps_latent={irreps_latent!r} is not a valid irreps string") from err
        if not 0 <= lmax_basis <= LMAX_SUPPORTED:
            raise ValueError(f"lmax_basis must be in 0..{LMAX_SUPPORTED}, got {lmax_basis}")
        for name, value in (("n_elements", n_elements), ("max_shell_rank", max_shell_rank),
                            ("n_radial", n_radial), ("mlp_hidden", mlp_hidden),
                            ("mlp_layers", mlp_layers)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        seen = [ir for _, ir in latent]
        repeated = sorted({str(ir) for ir in seen if seen.count(ir) > 1})
        if repeated:
            raise ValueError(f"irreps_latent={str(latent)!r} repeats {', '.join(repeated)}; "
                             f"give each irrep once with its total multiplicity")
        if any(mul == 0 for mul, _ in latent):
            raise ValueError(f"irreps_latent={str(latent)!r} has a zero multiplicity")
        produced = produced_irreps(lmax_basis)
        missing = [str(ir) for _, ir in produced if ir not in seen]
        if missing:
            raise ValueError(
                f"irreps_latent={str(latent)!r} lacks {', '.join(missing)}, produced by shell "
                f"pairs with l <= {lmax_basis} (needs all of {produced.simplify()})")
        self.irreps_latent = latent
        self.irreps_density = o3.Irreps([(2, ir) for _, ir in produced])
        self.irreps_in, self.irreps_out = ((self.irreps_density, latent) if self._encodes
                                           else (latent, self.irreps_density))
        self.lmax_basis = int(lmax_basis)
        self.n_elements = int(n_elements)
        self.max_shell_rank = int(max_shell_rank)
        # slots: latent irrep -> (latent slice, mul, offset into the MLP output)
        self._slots, w_total = {}, 0
        for sl, (mul, ir) in zip(latent.slices(), latent):
            if ir in produced:
                self._slots[(ir.l, ir.p)] = (sl, mul, w_total)
                w_total += 2 * mul
        self._w_total = w_total
        self.radial_basis = RadialBasis(n_radial, r_cut_bohr)
        n_l, n_r = self.lmax_basis + 1, self.max_shell_rank
        d_node = self.n_elements + 2 * n_l + 2 * n_r + 1
        d_edge = 2 * self.n_elements + 2 * n_l + 2 * n_r + n_radial
        self.node_mlp = self._mlp(d_node, mlp_hidden, mlp_layers, w_total)
        self.edge_mlp = self._mlp(d_edge, mlp_hidden, mlp_layers, w_total)

    @staticmethod
    def _mlp(d_in, hidden, layers, d_out):
        mods, d = [], d_in
        for _ in range(layers):
            mods += [torch.nn.Linear(d, hidden), torch.nn.SiLU()]
            d = hidden
        mods.append(torch.nn.Linear(d, d_out))
        return torch.nn.Sequential(*mods)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, "
                f"lmax_basis={self.lmax_basis}, n_elements={self.n_elements})")

    @property
    def dtype(self) -> torch.dtype:
        return self.node_mlp[0].weight.dtype

    def _check_layout(self, layout: BasisLayout, positions, batch: int):
        if layout.lmax > self.lmax_basis:
            raise ValueError(f"{layout!r} has l={layout.lmax} shells; this "
                             f"{self.__class__.__name__} has lmax_basis={self.lmax_basis}")
        if layout.max_rank >= self.max_shell_rank:
            raise ValueError(f"{layout!r} has {layout.max_rank + 1} shells of one (atom, l); "
                             f"max_shell_rank={self.max_shell_rank}")
        z = layout.atomic_numbers
        if z.min() < 1 or z.max() > self.n_elements:
            raise ValueError(f"atomic numbers {sorted(set(z.tolist()))} outside 1..{self.n_elements}")
        pos = torch.as_tensor(positions)
        if pos.shape != (batch, layout.n_atoms, 3):
            raise ValueError(f"positions_angstrom must have shape ({batch}, {layout.n_atoms}, 3), "
                             f"got {tuple(pos.shape)}")
        return pos.to(dtype=self.dtype, device=self.node_mlp[0].weight.device) * ANGSTROM_BOHR

    def _weights(self, g: _Group, pos_bohr: torch.Tensor) -> torch.Tensor:
        """Invariant MLP weights of a group's shell pairs, shape (B, k, w_total)."""
        dt, oh = self.dtype, torch.nn.functional.one_hot
        n_l, n_r = self.lmax_basis + 1, self.max_shell_rank
        k = len(g.target)
        dev = g.target.device
        common = [oh(torch.full((k,), g.la, device=dev), n_l),
                  oh(torch.full((k,), g.lb, device=dev), n_l),
                  oh(g.rank_a, n_r), oh(g.rank_b, n_r)]
        b = pos_bohr.shape[0]
        if g.kind == "node":
            desc = torch.cat([oh(g.z_a - 1, self.n_elements)] + common
                             + [g.same_shell[:, None].long()], dim=-1).to(dt)
            return self.node_mlp(desc).expand(b, k, self._w_total)
        desc = torch.cat([oh(g.z_a - 1, self.n_elements), oh(g.z_b - 1, self.n_elements)]
                         + common, dim=-1).to(dt)
        r = (pos_bohr[:, g.atom_b] - pos_bohr[:, g.atom_a]).norm(dim=-1)       # (B, k)
        desc = torch.cat([desc.expand(b, k, desc.shape[-1]), self.radial_basis(r)], dim=-1)
        return self.edge_mlp(desc)

    def group_weights(self, layout: BasisLayout, positions_angstrom) -> list[torch.Tensor]:
        """The invariant weights of every shell-pair group, (B, k, w_total) each.

        They depend on the geometry only: a rollout computes them once and passes them to
        every step's ``forward(..., weights=...)``.
        """
        pos = self._check_layout(layout, positions_angstrom, len(positions_angstrom))
        return [self._weights(g, pos) for g in _plan(layout, pos.device).groups]

    def _slot(self, L: int, la: int, lb: int):
        return self._slots[(L, 1 if (la + lb) % 2 == 0 else -1)]


class DensityEncoder(_CodecBase):
    r"""Learned, molecule-independent map: density -> per-node / per-edge latent irreps.

    Parameters
    ----------
    irreps_latent : str or o3.Irreps
        Latent irreps of every node and edge, each irrep once, e.g.
        ``"16x0e+8x1o+8x1e+4x2e"``; must contain every irrep that shell pairs with
        l <= ``lmax_basis`` produce (0e, 1o, 1e, 2e for s/p bases).
    lmax_basis : int
        Highest AO angular momentum supported (1 for 6-31G, 2 with d shells).
    n_elements : int
        Largest supported nuclear charge (one-hot, Z in 1..n_elements).
    max_shell_rank : int
        Number of shells of equal (atom, l) distinguished (one-hot rank).
    r_cut_bohr : float
        Radius of the Bessel distance basis of edge descriptors (bohr). The default covers
        the longest H...H distance of benzene (9.4 bohr).
    n_radial : int
        Number of radial basis functions.
    mlp_hidden, mlp_layers : int
        Width and number of hidden layers of the weight MLPs.

    Attributes
    ----------
    irreps_in : o3.Irreps
        ``2x`` (Re, Im) of each irrep a shell pair can produce.
    irreps_out : o3.Irreps
        ``irreps_latent``.
    """

    _encodes = True

    def forward(self, density, layout: BasisLayout, positions_angstrom,
                weights: list | None = None) -> DensityLatent:
        """Encode densities of one molecule (one layout), geometries may differ.

        Parameters
        ----------
        density : Tensor, shape (B, n_spin, nbf, nbf), complex (or real)
            AO densities in PySCF order; cast to the module's real dtype.
        layout : BasisLayout
        positions_angstrom : Tensor, shape (B, n_atoms, 3)
        weights : list of Tensor, optional
            :meth:`group_weights` of the same layout and positions (computed if None).

        Returns
        -------
        DensityLatent
            ``node`` (B, n_spin, n_atoms, irreps_latent.dim),
            ``edge`` (B, n_spin, n_edges, irreps_latent.dim).
        """
        re, im = _split_complex(density, self.dtype)
        if re.dim() != 4 or re.shape[-2:] != (layout.nbf, layout.nbf):
            raise ValueError(f"density must have shape (B, n_spin, {layout.nbf}, {layout.nbf}), "
                             f"got {tuple(re.shape)}")
        b, s = re.shape[:2]
        pos = self._check_layout(layout, positions_angstrom, b)
        plan = _plan(layout, re.device)
        n_t = {"node": layout.n_atoms, "edge": layout.n_edges}
        acc = {}
        for i, g in enumerate(plan.groups):
            w = self._weights(g, pos) if weights is None else weights[i]
            br, bi = _blocks(re, im, g)
            blk = torch.stack([br, bi], dim=-3)                               # (B,S,k,2,na,nb)
            for L in g.ls:
                sl, mul, w0 = self._slot(L, g.la, g.lb)
                c = torch.einsum("bskcij,ijM->bskcM", blk, _cg(g.la, g.lb, L, re.dtype, re.device))
                wl = w[..., w0:w0 + 2 * mul].reshape(b, -1, mul, 2)
                #: h[b, s, k, u, M] = sum_c w[b, k, u, c] c[b, s, k, c, M]
                h = torch.einsum("bskcM,bkuc->bskuM", c, wl) / math.sqrt(2.0)
                key = (g.kind, sl.start)
                if key not in acc:
                    acc[key] = h.new_zeros(b, s, n_t[g.kind], mul, 2 * L + 1)
                acc[key] = acc[key].index_add(2, g.target, h)
        out = {}
        for kind in ("node", "edge"):
            parts = []
            for sl, (mul, ir) in zip(self.irreps_latent.slices(), self.irreps_latent):
                x = acc.get((kind, sl.start))
                parts.append(x.flatten(-2) if x is not None
                             else re.new_zeros(b, s, n_t[kind], mul * ir.dim))
            out[kind] = torch.cat(parts, dim=-1)
        return DensityLatent(out["node"], out["edge"])


class DensityDecoder(_CodecBase):
    r"""Learned inverse of :class:`DensityEncoder`: latent irreps -> Hermitian density.

    .. math::

        c^{L}_{ab,c,M} = \sum_u w^{(L p)}_{c u}(\xi_{ab})\, h^{(L p)}_{T(ab), u, M}, \qquad
        P_{ab} = \sum_{L} C^{l_a l_b L} \cdot (c^L_{Re} + i\, c^L_{Im}), \qquad
        P_{ba} = P_{ab}^\dagger

    Parameters
    ----------
    Same as :class:`DensityEncoder`.

    Attributes
    ----------
    irreps_in : o3.Irreps
        ``irreps_latent``.
    irreps_out : o3.Irreps
        ``2x`` (Re, Im) of each irrep a shell pair can produce.
    """

    _encodes = False

    def forward(self, latent, layout: BasisLayout, positions_angstrom,
                weights: list | None = None) -> torch.Tensor:
        """Decode node/edge latents into AO densities.

        Parameters
        ----------
        latent : DensityLatent or (node, edge)
            ``node`` (B, n_spin, n_atoms, irreps_latent.dim),
            ``edge`` (B, n_spin, n_edges, irreps_latent.dim).
        layout, positions_angstrom, weights
            As for :meth:`DensityEncoder.forward`.

        Returns
        -------
        Tensor, shape (B, n_spin, nbf, nbf), complex Hermitian (complex128 for float64).
        """
        node, edge = latent
        node, edge = node.to(self.dtype), edge.to(self.dtype)
        dim = self.irreps_latent.dim
        if node.dim() != 4 or node.shape[2:] != (layout.n_atoms, dim):
            raise ValueError(f"node latent must have shape (B, n_spin, {layout.n_atoms}, {dim}), "
                             f"got {tuple(node.shape)}")
        if edge.shape != (*node.shape[:2], layout.n_edges, dim):
            raise ValueError(f"edge latent must have shape {(*node.shape[:2], layout.n_edges, dim)}, "
                             f"got {tuple(edge.shape)}")
        b = node.shape[0]
        pos = self._check_layout(layout, positions_angstrom, b)
        plan = _plan(layout, node.device)
        feats = {"node": node, "edge": edge}
        blocks = []
        for i, g in enumerate(plan.groups):
            w = self._weights(g, pos) if weights is None else weights[i]
            x = feats[g.kind][:, :, g.target]                                 # (B,S,k,dim)
            blk = 0
            for L in g.ls:
                sl, mul, w0 = self._slot(L, g.la, g.lb)
                h = x[..., sl].reshape(*x.shape[:3], mul, 2 * L + 1)
                wl = w[..., w0:w0 + 2 * mul].reshape(b, -1, 2, mul)
                #: c[b, s, k, c, M] = sum_u w[b, k, c, u] h[b, s, k, u, M]
                c = torch.einsum("bskuM,bkcu->bskcM", h, wl) / math.sqrt(mul)
                cg = _cg(g.la, g.lb, L, node.dtype, node.device)
                blk = blk + torch.einsum("bskcM,ijM->bskcij", c, cg)
            blocks.append((blk[..., 0, :, :], blk[..., 1, :, :]))
        return _assemble(plan, blocks, layout.nbf)
