r"""The rtml model: exact unitary propagation with a learned, equivariant two-electron response.

For one molecule geometry the model propagates the Löwdin-basis density exactly as the
RT-TDDFT engine does (:mod:`rtml.model._physics`),

.. math::

    P'_{k+1} = U P'_k U^\dagger,\quad U = e^{-i\Delta\tilde F'},\quad
    \tilde F' = \bar F_0' + \Delta G' + \mathbf E(t_k + \tfrac\Delta2)\cdot\mathbf D',

with a second-order predictor-corrector (the trapezoidal Magnus-2 of the engine):
:math:`\Delta G'_k` at :math:`P'_k`, a predictor :math:`P^*` with it, :math:`\Delta G'^*`
at :math:`P^*`, then the step with :math:`\tfrac12(\Delta G'_k + \Delta G'^*)`. What is
learned is :math:`\Delta G' = \Delta G'[\Delta P'; \text{geometry}, \text{history}]`, the
change of the Fock matrix with the density (:math:`\Delta P' = P' - P_0'`):

- ``learned="xc"``: the Coulomb and exact-exchange parts are computed exactly
  (dense in-core maps, :func:`~rtml.model._physics.coulomb_exchange_operators`) and the
  network predicts only the exchange-correlation change, a real symmetric matrix that
  depends on Re ΔP' only (semi-local XC sees only the real density);
- ``learned="xc-nonlinear"`` (default): as ``"xc"``, with the XC kernel at the ground state added to
  the exact maps (:func:`~rtml.model._physics.xc_kernel_operator`): the exact part is then
  linear-response TDDFT, and the network predicts only the XC change beyond first order in
  ΔP', as gated channels :math:`(\gamma\,a)\odot h` (below, :math:`a_c` the size of channel
  c) whose linear stages are fitted to the whole XC change: the nonlinear change is
  carried by the channels the linear one uses, scaled by their own size and by what the
  gates read of the density's history, so it is of second order in ΔP' at least. With the
  gates closed (γ = 0, as initialised) the model is exactly LR-TDDFT. The kernel's grid is
  oriented in the molecule's own frame (:func:`rtml.chem.molecule_frame_grids`), so this
  variant is equivariant too;
- ``learned="two-electron"``: the network predicts all of ΔG' (complex Hermitian), from
  Re and Im ΔP'.

The network (:class:`FockResponse`) is O(3)-equivariant and its parameters do not depend on
nbf:

1. the exact Clebsch-Gordan irreps of every shell-pair block of ΔP' are mapped to channels
   of ``irreps_hidden`` on atoms (same-atom blocks) and atom pairs (:class:`DensityEncoder`,
   weights from invariant shell-pair descriptors); for open shells the other spin's ΔP' is
   added through a second encoder;
2. ``n_interactions`` equivariant message-passing layers between those tokens
   (:class:`TokenInteraction`: atom-pair -> atom, atom -> atom-pair, atom -> atom, tensor
   products with spherical harmonics of the bond, radial weights from distance and
   elements), all linear in the features;
3. the only nonlinearity: a gate per channel, :math:`h \leftarrow (1 + \gamma)\odot h`
   (``xc-nonlinear``: :math:`(\gamma\,a)\odot h`, see :meth:`RTMLModel.gate_factor`),
   with :math:`\gamma` from a Mamba stack (FiLM-conditioned on the e3nn geometry embedding)
   running along time over the channel norms (invariants) of each token; the ``mlp``
   ablation computes :math:`\gamma` from the current frame only (no memory). Invariant
   gates on equivariant channels keep the whole step equivariant;
4. :class:`DensityDecoder` maps the channels back to shell-pair blocks (the inverse CG).

Every map before the gate is linear in ΔP' and the gate multiplies, so ΔG'[0] = 0 exactly:
with :math:`[\bar F_0', P_0'] = 0` the ground state at zero field is a fixed point. U is
unitary, so the trace, Hermiticity and every occupation are conserved; no projection is
needed. The density itself never passes through a learned map.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import NamedTuple

import numpy as np
import torch
from e3nn import o3
from e3nn.nn import FullyConnectedNet
from torch import nn

from rtml._errors import InputError
from rtml.chem import build_mole_from_atoms, dipole_integrals
from rtml.fields import field_from_json
from rtml.model._basis_layout import BasisLayout
from rtml.model._density_codec import DensityDecoder, DensityEncoder, DensityLatent
from rtml.model._dynamics import make_dynamics
from rtml.model._geometry import GeometryEncoder, RadialBasis, convolution_tensor_product
from rtml.model._config import ModelConfig, model_config_from_checkpoint
from rtml.model._summary import module_summary
from rtml.model._hermitian import from_hermitian_coordinates, hermitian_basis, hermitian_coordinates
from rtml.model._physics import (apply_coulomb_exchange, coulomb_exchange_operators,
                                 density_norm, exponential_step, lowdin_transforms,
                                 stationary_fock, xc_kernel_operator)
from rtml.units import ANGSTROM_BOHR

N_MESSAGE_KINDS = 5


class MoleculeSystem(NamedTuple):
    """B geometries of one molecule (one basis layout), everything the exact step needs.

    Matrices are in the Löwdin basis, float64, atomic units.

    Attributes
    ----------
    layout : BasisLayout
    positions_angstrom : (B, n_atoms, 3)
    n_spin : int
    orth : (B, n, n) S^-1/2;  orth_inv : (B, n, n) S^1/2
    rho0 : (B, S, n, n) ground-state P0' (idempotent per spin up to the occupation)
    fock0 : (B, S, n, n) its Fock matrix made to commute with P0' (:func:`stationary_fock`)
    fock0_raw : (B, S, n, n) the ground-state Fock matrix as built (supervision reference)
    dipole : (B, 3, n, n) D' about the stored origin
    w_same, w_total : exact Coulomb/exchange maps, (real (B, m, m), imaginary (B, m', m'))
        on Hermitian coordinates (:func:`~rtml.model._physics.coulomb_exchange_operators`;
        w_total None: closed shell)
    w_spin : (B, S, S, m, m) the XC kernel at the ground state between spin channels
        (:func:`~rtml.model._physics.xc_kernel_operator`), or None (no kernel; zeros for
        Hartree-Fock); kept apart from J/K so that the linear fit of ``xc-nonlinear`` can
        leave it out
    """

    layout: BasisLayout
    positions_angstrom: torch.Tensor
    n_spin: int
    orth: torch.Tensor
    orth_inv: torch.Tensor
    rho0: torch.Tensor
    fock0: torch.Tensor
    fock0_raw: torch.Tensor
    dipole: torch.Tensor
    w_same: tuple
    w_total: tuple | None
    w_spin: torch.Tensor | None = None

    @property
    def batch(self) -> int:
        return int(self.positions_angstrom.shape[0])

    def select(self, index) -> "MoleculeSystem":
        """The geometries ``index`` (a list or slice) of the batch."""
        pick = (lambda x: None if x is None else tuple(t[index] for t in x) if isinstance(x, tuple)
                else x[index])
        return MoleculeSystem(self.layout, self.positions_angstrom[index], self.n_spin,
                              *(pick(getattr(self, f)) for f in self._fields[3:]))

    def to_orthonormal_density(self, rho_ao: torch.Tensor) -> torch.Tensor:
        """P' = S^1/2 P S^1/2 for (B, ..., n, n)."""
        s = self.orth_inv.reshape(self.batch, *([1] * (rho_ao.dim() - 3)), *self.orth_inv.shape[-2:])
        return s.to(rho_ao.dtype) @ rho_ao @ s.to(rho_ao.dtype)

    def to_ao_density(self, rho: torch.Tensor) -> torch.Tensor:
        """P = S^-1/2 P' S^-1/2 for (B, ..., n, n)."""
        x = self.orth.reshape(self.batch, *([1] * (rho.dim() - 3)), *self.orth.shape[-2:])
        return x.to(rho.dtype) @ rho @ x.to(rho.dtype)

    def to_orthonormal_operator(self, op_ao: torch.Tensor) -> torch.Tensor:
        """F' = S^-1/2 F S^-1/2 for (B, ..., n, n)."""
        return self.to_ao_density(op_ao)


def stack_systems(systems: list[MoleculeSystem]) -> MoleculeSystem:
    """One :class:`MoleculeSystem` of the geometries of several (same molecule and basis)."""
    first = systems[0]
    if len(systems) == 1:
        return first
    if all(s is first for s in systems):
        # one geometry repeated (a batch of fields): views, no copies of the maps
        rep = len(systems)
        grow = (lambda x: x.expand(rep * x.shape[0], *x.shape[1:]))

        def same(name):
            x = getattr(first, name)
            if x is None:
                return None
            return tuple(grow(t) for t in x) if isinstance(x, tuple) else grow(x)
        return MoleculeSystem(first.layout, same("positions_angstrom"), first.n_spin,
                              *(same(f) for f in MoleculeSystem._fields[3:]))

    def cat(name):
        x = getattr(first, name)
        if x is None:
            return None
        if isinstance(x, tuple):
            return tuple(torch.cat([getattr(s, name)[k] for s in systems]) for k in range(len(x)))
        return torch.cat([getattr(s, name) for s in systems])
    return MoleculeSystem(first.layout, cat("positions_angstrom"), first.n_spin,
                          *(cat(f) for f in MoleculeSystem._fields[3:]))


def occupation(n_spin: int) -> float:
    """Largest occupation of a Löwdin orbital: 2 for a total density, 1 per spin."""
    return 2.0 if n_spin == 1 else 1.0


def build_system(mols, xc: str, n_spin: int, layout: BasisLayout, positions_angstrom,
                 overlap, rho0_ao, fock0_ao, dipole_origin_bohr,
                 xc_kernel: bool = False) -> MoleculeSystem:
    """A :class:`MoleculeSystem` from PySCF molecules and the ground states of B geometries.

    Args:
        mols: B built ``pyscf.gto.Mole`` (same basis, the geometries' positions).
        overlap: (B, n, n) AO overlaps; rho0_ao, fock0_ao: (B, S, n, n) real AO ground-state
            density and Fock matrix (no field term); dipole_origin_bohr: (B, 3).
        xc_kernel: add the XC kernel at the ground state to the exact maps (a model with
            ``learned="xc-nonlinear"``).
    """
    f64 = torch.float64
    s = torch.as_tensor(np.asarray(overlap), dtype=f64)
    orth, orth_inv = lowdin_transforms(s)
    rho0 = orth_inv[:, None] @ torch.as_tensor(np.asarray(rho0_ao), dtype=f64) @ orth_inv[:, None]
    fock_raw = orth[:, None] @ torch.as_tensor(np.asarray(fock0_ao), dtype=f64) @ orth[:, None]
    fock0 = stationary_fock(fock_raw, 0.5 * (rho0 + rho0.transpose(-1, -2)), occupation(n_spin))
    dips, w_same, w_total, w_spin = [], [], [], []
    for b, mol in enumerate(mols):
        d = torch.as_tensor(dipole_integrals(mol, dipole_origin_bohr[b]), dtype=f64)
        dips.append(orth[b] @ d @ orth[b])
        same, total = coulomb_exchange_operators(mol, xc, n_spin, orth[b].numpy())
        kernel = (xc_kernel_operator(mol, xc, n_spin, orth[b].numpy(), np.asarray(rho0_ao[b]))
                  if xc_kernel else None)
        if xc_kernel:
            # Hartree-Fock has no XC kernel: a zero one keeps "the system has a kernel" true
            m = orth.shape[-1] * (orth.shape[-1] + 1) // 2
            w_spin.append(torch.zeros(n_spin, n_spin, m, m, dtype=f64) if kernel is None
                          else torch.from_numpy(kernel))
        w_same.append(same)
        if total is not None:
            w_total.append(total)
    stack = (lambda ws: tuple(torch.stack([torch.from_numpy(w[k]) for w in ws]) for k in range(2)))
    return MoleculeSystem(layout, torch.as_tensor(np.asarray(positions_angstrom), dtype=f64), n_spin,
                          orth, orth_inv, rho0, fock0, fock_raw, torch.stack(dips),
                          stack(w_same), stack(w_total) if w_total else None,
                          torch.stack(w_spin) if w_spin else None)


def required_channels(layout: BasisLayout, complex_input: bool) -> dict:
    """Largest number of shell-pair irreps (L, parity) on one atom or atom pair of a layout.

    A same-shell block contributes its symmetric irreps (even L) through Re ΔP and its
    antisymmetric ones (odd L) through Im ΔP; other blocks contribute every irrep through
    both. The codec can only be injective when the model has at least this many channels of
    each irrep.
    """
    shells = layout.shells
    need: dict = {}
    for kind, pairs in (("node", layout.node_pairs), ("edge", layout.edge_pairs)):
        counts: dict = {}
        for pr in pairs:
            la, lb = shells[pr.a].l, shells[pr.b].l
            same = kind == "node" and pr.a == pr.b
            for L in range(abs(la - lb), la + lb + 1):
                key = (getattr(pr, "target", None), L, (-1) ** (la + lb))
                n = (1 if L % 2 == 0 else 0) if same else 1
                if complex_input:
                    n += (1 if L % 2 == 1 else 0) if same else 1
                counts[key] = counts.get(key, 0) + n
        for (_, L, p), n in counts.items():
            need[(L, p)] = max(need.get((L, p), 0), n)
    return need


class LinearMaps(NamedTuple):
    """The network's linear stages of one geometry as matrices (:meth:`RTMLModel.linear_maps`).

    ``a_same``/``a_other`` are in the model's dtype (a float32 model halves the memory a
    rollout step reads; the exact parts of the step stay float64).
    """

    a_same: torch.Tensor            # (T*d, m_in): ΔP' coordinates of a spin -> channels
    a_other: torch.Tensor | None    # (T*d, m_in): the other spin's part (open shell)
    b: torch.Tensor                 # (m_out, d): channels of its token -> ΔG' coordinate
    token: torch.Tensor             # (m_out,) the token of each ΔG' coordinate
    n_tokens: int
    dim: int


def output_tokens(layout: BasisLayout, n: int, imaginary: bool) -> torch.Tensor:
    """Token (atom, then atom pair) of every Hermitian coordinate (:func:`hermitian_coordinates`)."""
    atom = _ao_atoms(layout)
    edge_of = {}
    for e, (a, b) in enumerate(np.asarray(layout.edge_index).T):
        edge_of[(int(a), int(b))] = layout.n_atoms + e

    def tok(i, j):
        a, b = int(atom[i]), int(atom[j])
        if a == b:
            return a
        return edge_of[(min(a, b), max(a, b))]
    iu = torch.triu_indices(n, n)
    out = [tok(i, j) for i, j in iu.T.tolist()]
    if imaginary:
        su = torch.triu_indices(n, n, offset=1)
        out += [tok(i, j) for i, j in su.T.tolist()]
    return torch.as_tensor(out, dtype=torch.long)


def _ao_atoms(layout: BasisLayout) -> np.ndarray:
    """Atom of every AO of a layout."""
    atoms = np.zeros(layout.nbf, dtype=int)
    for sh in layout.shells:
        atoms[sh.slice] = sh.atom
    return atoms


# ------------------------------------------------------------------------------ network
class _Messages(NamedTuple):
    """Directed messages between the tokens (atoms, then atom pairs) of one layout."""

    src: torch.Tensor        # (M,) token index
    dst: torch.Tensor        # (M,)
    atom_p: torch.Tensor     # (M,) the bond vector runs from atom p to atom q
    atom_q: torch.Tensor
    kind: torch.Tensor       # (M,) 0 pair->atom, 1 atom->pair, 2 atom->atom, 3 atom->itself
    #                          along one of its bonds, 4 pair->itself along its bond
    count: torch.Tensor      # (T,) messages received per token


def _messages(layout: BasisLayout) -> _Messages:
    key = "token_messages"
    if key not in layout._cache:
        n_atoms = layout.n_atoms
        src, dst, p, q, kind = [], [], [], [], []
        for e, (a, b) in enumerate(np.asarray(layout.edge_index).T):
            a, b, tok = int(a), int(b), n_atoms + e
            for s_, d_, p_, q_, k_ in ((tok, a, a, b, 0), (tok, b, b, a, 0),
                                       (a, tok, a, b, 1), (b, tok, b, a, 1),
                                       (b, a, a, b, 2), (a, b, b, a, 2),
                                       (a, a, a, b, 3), (b, b, b, a, 3), (tok, tok, a, b, 4)):
                src.append(s_); dst.append(d_); p.append(p_); q.append(q_); kind.append(k_)
        t = lambda x: torch.as_tensor(x, dtype=torch.long)
        count = torch.bincount(t(dst), minlength=n_atoms + layout.n_edges).clamp_min(1)
        layout._cache[key] = _Messages(t(src), t(dst), t(p), t(q), t(kind), count)
    return layout._cache[key]


def message_geometry(layout: BasisLayout, positions_angstrom: torch.Tensor, irreps_sh,
                     radial_basis: RadialBasis, n_elements: int):
    """The messages of a layout's tokens (:func:`_messages`) and, per geometry, their
    spherical harmonics Y(r̂_pq) (B, M, irreps_sh.dim) and invariant descriptors (B, M,
    n_radial + 2 n_elements + N_MESSAGE_KINDS): Bessel basis of |r_pq|, one-hot Z_p, Z_q
    and message kind. positions_angstrom (B, A, 3) sets the dtype."""
    dt = positions_angstrom.dtype
    msg = _messages(layout)
    pos = positions_angstrom * ANGSTROM_BOHR                                 # (B, A, 3)
    vec = pos[:, msg.atom_q] - pos[:, msg.atom_p]                            # (B, M, 3)
    sh = o3.spherical_harmonics(irreps_sh, vec, normalize=True, normalization="component")
    z = torch.as_tensor(layout.atomic_numbers, dtype=torch.long)
    oh = torch.nn.functional.one_hot(z - 1, n_elements).to(dt)               # (A, n_el)
    kind = torch.nn.functional.one_hot(msg.kind, N_MESSAGE_KINDS).to(dt)
    desc = torch.cat([radial_basis(vec.norm(dim=-1)),
                      torch.cat([oh[msg.atom_p], oh[msg.atom_q], kind], -1).expand(len(pos), -1, -1)],
                     -1)
    return msg, sh, desc


class TokenInteraction(nn.Module):
    r"""One linear, equivariant message-passing layer between atom and atom-pair tokens.

    .. math::

        h'_T = W_\text{self}^{(\kappa_T)} h_T + \frac{1}{\sqrt{n_T}}\, W_\text{out}^{(\kappa_T)}
               \sum_{m \to T} \big(h_{s(m)} \otimes Y(\hat r_{pq})\big)_{w(r_{pq}, Z_p, Z_q, k_m)}

    with :math:`\kappa_T` the token kind (atom or pair), Y the spherical harmonics of the bond
    vector of the message (from atom p to q), and tensor-product weights from an MLP of
    invariants (Bessel basis of the distance, one-hot elements, message kind). Messages run
    pair -> its two atoms, atom -> its pairs, atom -> atom, and from a token to itself along
    each of its bonds (so an atom's environment can mix the irreps of its own blocks, e.g. an
    on-site s-s change driving an s-p response along the bond, in one layer).
    """

    def __init__(self, irreps: str, irreps_sh: str, n_radial: int, n_elements: int, hidden: int):
        super().__init__()
        self.irreps_in = self.irreps_out = o3.Irreps(irreps)
        self.irreps_sh = o3.Irreps(irreps_sh)
        self.self_node = o3.Linear(self.irreps_in, self.irreps_out)
        self.self_edge = o3.Linear(self.irreps_in, self.irreps_out)
        self.tp = convolution_tensor_product(self.irreps_in, self.irreps_sh, self.irreps_out)
        mid = self.tp.irreps_out
        self.radial = FullyConnectedNet([n_radial + 2 * n_elements + N_MESSAGE_KINDS, hidden,
                                         self.tp.weight_numel],
                                        torch.nn.functional.silu)
        self.out_node = o3.Linear(mid.simplify(), self.irreps_out)
        self.out_edge = o3.Linear(mid.simplify(), self.irreps_out)

    def __repr__(self) -> str:
        return f"TokenInteraction({self.irreps_in} x {self.irreps_sh} -> {self.irreps_out})"

    def forward(self, h: torch.Tensor, n_atoms: int, msg: _Messages, sh: torch.Tensor,
                desc: torch.Tensor) -> torch.Tensor:
        """h (B, R, T, d) tokens (R frames x spins per geometry); sh (B, M, sh.dim) and desc
        (B, M, d_desc) per geometry -> (B, R, T, d)."""
        b, r = h.shape[:2]
        w = self.radial(desc)                                               # (B, M, nw)
        m = self.tp(h[:, :, msg.src], sh[:, None].expand(b, r, -1, -1),
                    w[:, None].expand(b, r, -1, -1))
        agg = torch.zeros(b, r, h.shape[2], m.shape[-1], dtype=m.dtype, device=m.device)
        agg = agg.index_add(2, msg.dst, m) / msg.count.to(m.dtype).sqrt()[:, None]
        node = self.self_node(h[:, :, :n_atoms]) + self.out_node(agg[:, :, :n_atoms])
        edge = self.self_edge(h[:, :, n_atoms:]) + self.out_edge(agg[:, :, n_atoms:])
        return torch.cat([node, edge], dim=2)


class RTMLModel(nn.Module):
    """See the module docstring. All parameters are independent of nbf and n_spin."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = c = config or ModelConfig()
        self.irreps_hidden = o3.Irreps(c.irreps_hidden)
        codec = dict(irreps_latent=c.irreps_hidden, lmax_basis=c.lmax_basis,
                     n_elements=c.n_elements, r_cut_bohr=c.r_cut_bohr, n_radial=c.n_radial)
        self.encoder = DensityEncoder(**codec)
        self.encoder_other_spin = DensityEncoder(**codec)
        self.decoder = DensityDecoder(**codec)
        self.irreps_sh = o3.Irreps.spherical_harmonics(2)
        self.interactions = nn.ModuleList(
            TokenInteraction(c.irreps_hidden, str(self.irreps_sh), c.n_radial, c.n_elements,
                             c.radial_hidden) for _ in range(c.n_interactions))
        self.radial_basis = RadialBasis(c.n_radial, c.r_cut_bohr)
        self.geometry = GeometryEncoder(irreps_out=c.irreps_geometry, n_elements=c.n_elements)
        # channel index of every component of irreps_hidden (gates act per channel)
        chan, n_chan = [], 0
        for mul, ir in self.irreps_hidden:
            chan += [n_chan + u for u in range(mul) for _ in range(ir.dim)]
            n_chan += mul
        self.register_buffer("channel_of_component", torch.as_tensor(chan, dtype=torch.long),
                             persistent=False)
        self.n_channels = n_chan
        self.d_cond = self.geometry.d_invariant + 2 + c.n_radial + c.n_elements
        self.gate_input = nn.Linear(n_chan, c.d_model)
        kwargs = {"n_layers": c.n_layers, "out_dim": n_chan}
        if c.dynamics == "mamba":
            kwargs["d_state"] = c.d_state
        self.dynamics = make_dynamics(c.dynamics, c.d_model, self.d_cond, **kwargs)
        head = self.dynamics.head if hasattr(self.dynamics, "head") else self.dynamics.mlp[-1]
        # γ starts at 0: an untrained network is linear (xc-nonlinear: exactly LR-TDDFT)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.register_buffer("input_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("output_scale", torch.ones((), dtype=torch.float64))

    def __repr__(self) -> str:
        c = self.config
        return module_summary(
            self, "RTMLModel", f"learned ΔG: {c.learned}",
            f"ΔP' shell-pair irreps -> {c.irreps_hidden} x {c.n_interactions} interactions -> ΔG'",
            f"gates: {c.dynamics} d_model={c.d_model} x {c.n_layers}")

    @property
    def dtype(self) -> torch.dtype:
        return self.gate_input.weight.dtype

    def check_layout(self, layout: BasisLayout) -> None:
        """Fail with one clear line when a molecule has more shell-pair irreps of some kind on
        one atom or atom pair than the model has channels (the codec would lose them)."""
        key = ("rtml_channels", str(self.irreps_hidden), self.config.learned)
        if key in layout._cache:
            return
        have = {(ir.l, ir.p): mul for mul, ir in self.irreps_hidden}
        need = required_channels(layout, not self.config.real_response)
        short = [f"{n}x{L}{'e' if p == 1 else 'o'}" for (L, p), n in sorted(need.items())
                 if have.get((L, p), 0) < n]
        if short:
            raise InputError(f"{layout!r} needs at least {', '.join(short)} in irreps_hidden "
                             f"(model has {self.irreps_hidden}); retrain with more channels")
        layout._cache[key] = True

    # -- geometry-dependent pieces, computed once per call ------------------------------------
    def _geometry_terms(self, system: MoleculeSystem):
        """Spherical harmonics and descriptors of every message, codec weights, gate
        conditioning (B*S*T, d_cond)."""
        c, layout = self.config, system.layout
        self.check_layout(layout)
        if c.exact_xc_kernel and system.w_spin is None:
            raise InputError("an xc-nonlinear model needs the XC kernel in its system "
                             "(build_system(..., xc_kernel=True))")
        dt = self.dtype
        msg, sh, desc = message_geometry(layout, system.positions_angstrom.to(dt), self.irreps_sh,
                                         self.radial_basis, c.n_elements)
        pos = system.positions_angstrom.to(dt) * ANGSTROM_BOHR               # (B, A, 3)
        z = torch.as_tensor(layout.atomic_numbers, dtype=torch.long)
        oh = torch.nn.functional.one_hot(z - 1, c.n_elements).to(dt)         # (A, n_el)
        b = pos.shape[0]
        weights = {name: getattr(self, name).group_weights(layout, system.positions_angstrom.to(dt))
                   for name in ("encoder", "encoder_other_spin", "decoder")}
        geo = self.geometry(system.positions_angstrom.to(dt), z)
        src, dst = (torch.as_tensor(x, dtype=torch.long) for x in layout.edge_index)
        n_atoms, n_edges = layout.n_atoms, layout.n_edges
        r_edge = (pos[:, dst] - pos[:, src]).norm(dim=-1)
        tok = torch.cat([
            torch.cat([torch.tensor([1.0, 0.0], dtype=dt).expand(b, n_atoms, 2),
                       torch.zeros(b, n_atoms, c.n_radial, dtype=dt), oh.expand(b, -1, -1)], -1),
            torch.cat([torch.tensor([0.0, 1.0], dtype=dt).expand(b, n_edges, 2),
                       self.radial_basis(r_edge), (oh[src] + oh[dst]).expand(b, -1, -1)], -1)], 1)
        cond = torch.cat([geo.invariant[:, None].expand(-1, tok.shape[1], -1), tok], -1)  # (B,T,.)
        return msg, sh, desc, weights, cond

    # -- the learned response ---------------------------------------------------------------
    def _features(self, dp: torch.Tensor, system: MoleculeSystem, geo) -> torch.Tensor:
        """ΔP' (B, R, S, n, n) complex -> token channels (B, R, S, T, d) after the interactions."""
        msg, sh, desc, weights, _ = geo
        b, r, s, n = dp.shape[0], dp.shape[1], dp.shape[2], dp.shape[-1]
        x = dp / self.input_scale
        x = x.real.to(self.dtype) if self.config.real_response else x.to(
            torch.complex128 if self.dtype == torch.float64 else torch.complex64)
        flat = x.reshape(b * r, s, n, n)
        pos = system.positions_angstrom.to(self.dtype).repeat_interleave(r, 0)
        rep = lambda ws: [w.repeat_interleave(r, 0) for w in ws]
        lat = self.encoder(flat, system.layout, pos, rep(weights["encoder"]))
        node, edge = lat.node, lat.edge
        if s == 2:
            other = self.encoder_other_spin(flat.flip(1), system.layout, pos,
                                            rep(weights["encoder_other_spin"]))
            node, edge = node + other.node, edge + other.edge
        h = torch.cat([node, edge], dim=2).reshape(b, r * s, -1, node.shape[-1])
        for layer in self.interactions:
            h = layer(h, system.layout.n_atoms, msg, sh, desc)
        return h.reshape(b, r, s, h.shape[2], h.shape[3])

    def _invariants(self, h: torch.Tensor) -> torch.Tensor:
        """Channel norms (..., d) -> (..., n_channels), compressed with asinh."""
        sq = torch.zeros(*h.shape[:-1], self.n_channels, dtype=h.dtype, device=h.device)
        sq = sq.index_add(-1, self.channel_of_component, h * h)
        # the tiny floor keeps the gradient finite at an exactly zero channel (e.g. the empty
        # beta spin of H2+): d sqrt(x)/dx is infinite at 0
        return torch.asinh((sq + 1e-30).sqrt())

    def gate_factor(self, gates: torch.Tensor, h: torch.Tensor | None,
                    inv: torch.Tensor | None = None) -> torch.Tensor:
        r"""Per-component factor (..., d) of gates (..., n_channels) on channels h (..., d):
        :math:`1 + \gamma_c`, or for residual gates (:attr:`ModelConfig.residual_gates`)
        :math:`\gamma_c\,a_c` with :math:`a_c = \operatorname{asinh}\|h_c\|` the channel's
        own size: the learned part is then of second order in ΔP' at least, so a weak field
        sees the exact linear response and the gates act where the response is nonlinear.
        ``inv``: the channels' :meth:`_invariants` when the caller has them (h unused)."""
        if not self.config.residual_gates:
            return 1.0 + gates[..., self.channel_of_component]
        inv = self._invariants(h) if inv is None else inv
        return (gates * inv.to(gates.dtype))[..., self.channel_of_component]

    def _decode(self, h: torch.Tensor, system: MoleculeSystem, geo) -> torch.Tensor:
        """(Gated) channels (B, R, S, T, d) -> learned ΔG' (B, R, S, n, n) complex128."""
        b, r, s, t, d = h.shape
        n_atoms = system.layout.n_atoms
        flat = h.reshape(b * r, s, t, d)
        pos = system.positions_angstrom.to(self.dtype).repeat_interleave(r, 0)
        w = [x.repeat_interleave(r, 0) for x in geo[3]["decoder"]]
        g = self.decoder(DensityLatent(flat[:, :, :n_atoms], flat[:, :, n_atoms:]), system.layout, pos, w)
        g = g.to(torch.complex128).reshape(b, r, s, *g.shape[-2:])
        if self.config.real_response:
            g = torch.complex(g.real, torch.zeros_like(g.real))
        return self.output_scale * g

    def delta_fock(self, dp: torch.Tensor, gates: torch.Tensor, h: torch.Tensor | None,
                   system: MoleculeSystem, geo) -> torch.Tensor:
        """ΔG' (B, R, S, n, n): learned part plus, for ``learned="xc"``/``"xc-nonlinear"``,
        the exact J/K (and the XC kernel's linear response)."""
        if h is None:
            h = self._features(dp, system, geo)
        g = self._decode(h * self.gate_factor(gates, h), system, geo)
        if self.config.real_response:
            g = g + apply_coulomb_exchange(dp.to(torch.complex128), system.w_same, system.w_total,
                                           self._kernel(system))
        return g

    def _kernel(self, system: MoleculeSystem):
        """The system's XC kernel maps when this model's exact step has the kernel, else None
        (an ``xc`` model learns the whole XC change and ignores a kernel the system holds)."""
        return system.w_spin if self.config.exact_xc_kernel else None

    def delta_fock_ungated(self, rho: torch.Tensor, system: MoleculeSystem) -> torch.Tensor:
        r"""The linear part of the network alone: ΔG' (B, R, S, n, n) of independent frames
        (B, R, S, n, n) with every channel passed whole (:math:`B[h]`), plus the exact J/K
        without the XC kernel. For ``xc`` and ``two-electron`` this is the model with its
        gates at 1; for ``xc-nonlinear`` it is the linear fit of the whole XC change whose
        channels the gates then scale. Fitted first, on random frames."""
        geo = self._geometry_terms(system)
        dp = rho - system.rho0[:, None].to(rho.dtype)
        g = self._decode(self._features(dp, system, geo), system, geo)
        if self.config.real_response:
            g = g + apply_coulomb_exchange(dp.to(torch.complex128), system.w_same, system.w_total)
        return g

    def delta_fock_frames(self, rho: torch.Tensor, system: MoleculeSystem) -> torch.Tensor:
        """ΔG' (B, R, S, n, n) of independent frames (B, R, S, n, n) with the gates on, each
        frame its own sequence of one (no history): the instantaneous response. Adiabatic
        XC depends on the current density alone, so this trains the residual gates of
        ``xc-nonlinear`` on random frames, long before the whole-trajectory epochs."""
        geo = self._geometry_terms(system)
        dp = rho - system.rho0[:, None].to(rho.dtype)
        h = self._features(dp, system, geo)
        b, r = h.shape[:2]
        inv = self._invariants(h).reshape(b * r, 1, *h.shape[2:-1], self.n_channels)
        gates = self._gate_sequence(inv, geo[4].repeat_interleave(r, 0))
        return self.delta_fock(dp, gates.reshape(b, r, *gates.shape[2:]), h, system, geo)

    # -- the network as two matrices, for rollouts without gradients -----------------------
    @torch.no_grad()
    def linear_maps(self, system: MoleculeSystem, chunk: int = 128) -> "LinearMaps":
        r"""The network's linear stages as matrices for one geometry (``system.batch == 1``).

        Everything but the gate is linear in ΔP', so for a fixed geometry
        :math:`h = A\,x(\Delta P')` (encoder and interactions) and
        :math:`\Delta G'_\text{learned} = B\,[(1+\gamma)\odot h]` (decoder; see
        :meth:`gate_factor` for residual gates), with x the
        real coordinates of ΔP' (upper triangle of Re ΔP', and of Im ΔP' for
        ``learned="two-electron"``). A rollout then costs two matrix products per network
        call instead of the e3nn graph; the result is the same to rounding (tested).
        """
        if system.batch != 1:
            raise ValueError("linear_maps takes one geometry")
        n, s_spin = system.layout.nbf, system.n_spin
        geo = self._geometry_terms(system)
        basis = hermitian_basis(n, imaginary=not self.config.real_response)        # (m, n, n)
        cols_same, cols_other = [], []
        for k in range(0, len(basis), chunk):
            e = basis[k:k + chunk]
            dp = torch.zeros(1, len(e), s_spin, n, n, dtype=torch.complex128)
            dp[0, :, 0] = e
            h = self._features(dp, system, geo)[0]                                # (R, S, T, d)
            cols_same.append(h[:, 0].reshape(len(e), -1))
            if s_spin == 2:
                cols_other.append(h[:, 1].reshape(len(e), -1))
        a_same = torch.cat(cols_same).T.contiguous()                              # (T*d, m)
        a_other = torch.cat(cols_other).T.contiguous() if s_spin == 2 else None
        n_tok = system.layout.n_atoms + system.layout.n_edges
        d = self.irreps_hidden.dim
        # the decoder is block diagonal (a token's channels make only its own shell-pair
        # blocks): channel c of every token at once gives row c of every token's block
        unit = torch.eye(d, dtype=self.dtype)[:, None, None, :].expand(d, 1, n_tok, d)
        g = self._decode(unit[None], system, geo)
        rows = hermitian_coordinates(g[0, :, 0], imaginary=not self.config.real_response)  # (d, m_out)
        token = output_tokens(system.layout, n, not self.config.real_response)            # (m_out,)
        return LinearMaps(a_same.to(self.dtype), None if a_other is None else a_other.to(self.dtype),
                          rows.T.contiguous().to(torch.float64), token, n_tok, d)

    def _map_channels(self, dp: torch.Tensor, maps: "LinearMaps") -> torch.Tensor:
        """Token channels h = A x(ΔP'): (..., S, n, n) -> (..., S, T, d) float64."""
        x = hermitian_coordinates(dp, not self.config.real_response).to(maps.a_same.dtype)
        h = x @ maps.a_same.T
        if maps.a_other is not None:
            h = h + x.flip(-2) @ maps.a_other.T
        return h.to(torch.float64).reshape(*h.shape[:-1], maps.n_tokens, maps.dim)

    def _map_output(self, h: torch.Tensor, dp: torch.Tensor, maps: "LinearMaps",
                    system: MoleculeSystem, kernel: bool = True) -> torch.Tensor:
        """ΔG' from (gated) channels h (..., S, T, d): the block-sparse decoder, plus exact J/K
        (and, with ``kernel``, the XC kernel's response when the system has one)."""
        #: y[..., k] = sum_c h[..., token(k), c] B[k, c]
        y = (h[..., maps.token, :] * maps.b).sum(-1)
        g = from_hermitian_coordinates(y, dp.shape[-1], not self.config.real_response)
        if self.config.real_response:
            g = g + apply_coulomb_exchange(dp, system.w_same, system.w_total,
                                           self._kernel(system) if kernel else None)
        return g

    @torch.no_grad()
    def delta_fock_linear(self, dp: torch.Tensor, maps: "LinearMaps", system: MoleculeSystem) -> torch.Tensor:
        """Ungated ΔG' (B, ..., S, n, n) of ΔP' (B, ..., S, n, n) through :meth:`linear_maps`
        (same value as :meth:`delta_fock_ungated`, without the e3nn graph)."""
        return self._map_output(self._map_channels(dp, maps), dp, maps, system, kernel=False)

    def _shared_maps(self, system: MoleculeSystem) -> "LinearMaps | None":
        """:meth:`linear_maps` when every member of the batch is the same geometry (a batch of
        fields, as the engine runs them), else None (the e3nn graph is used)."""
        pos = system.positions_angstrom
        if not bool((pos == pos[:1]).all()):
            return None
        return self.linear_maps(system.select([0]))

    def _fast_response(self, dp: torch.Tensor, maps: "LinearMaps", system: MoleculeSystem, cond, cache):
        """ΔG' (B, S, n, n) of ΔP' (B, S, n, n) through :meth:`linear_maps` and one gate step."""
        h = self._map_channels(dp, maps)
        inv = self._invariants(h.to(self.dtype))
        gates, cache = self._gate_step(inv, cond, cache)
        h = h * self.gate_factor(gates, None, inv).to(h.dtype)
        return self._map_output(h, dp, maps, system), cache

    # -- gates along time -------------------------------------------------------------------
    def _gate_sequence(self, inv: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Parallel scan: invariants (B, L, S, T, C), cond (B, T, d_cond) -> gates (B, L, S, T, C)."""
        b, length, s, t, ch = inv.shape
        x = self.gate_input(inv.permute(0, 2, 3, 1, 4).reshape(b * s * t, length, ch))
        cnd = cond[:, None].expand(b, s, t, -1).reshape(b * s * t, -1)
        out = self.dynamics(x, cnd)
        return out.reshape(b, s, t, length, ch).permute(0, 3, 1, 2, 4)

    def _gate_step(self, inv: torch.Tensor, cond: torch.Tensor, cache):
        """Recurrent step: invariants (B, S, T, C) -> gates (B, S, T, C), new cache."""
        b, s, t, ch = inv.shape
        x = self.gate_input(inv.reshape(b * s * t, ch))
        cnd = cond[:, None].expand(b, s, t, -1).reshape(b * s * t, -1)
        out, cache = self.dynamics.step(x, cnd, cache)
        return out.reshape(b, s, t, ch), cache

    def init_cache(self, system: MoleculeSystem):
        n_tok = system.layout.n_atoms + system.layout.n_edges
        return self.dynamics.init_cache(system.batch * system.n_spin * n_tok, dtype=self.dtype)

    # -- the exact step -------------------------------------------------------------------
    @staticmethod
    def hamiltonian(delta_g: torch.Tensor, system: MoleculeSystem, field_mid: torch.Tensor) -> torch.Tensor:
        r""":math:`\bar F_0' + \Delta G' + \mathbf E\cdot\mathbf D'`; delta_g (B, ..., S, n, n),
        field_mid (B, ..., 3)."""
        lead = delta_g.dim() - 4
        f0 = system.fock0.reshape(system.batch, *([1] * lead), *system.fock0.shape[1:])
        dip = system.dipole.reshape(system.batch, *([1] * lead), 3, *system.dipole.shape[-2:])
        field = torch.einsum("...k,...kij->...ij", field_mid.to(torch.float64), dip)[..., None, :, :]
        return f0 + delta_g + field

    def teacher_forced(self, rho: torch.Tensor, field_mid: torch.Tensor, system: MoleculeSystem,
                       dt: float):
        """Parallel, teacher-forced pass over reference frames.

        Args:
            rho: (B, L, S, n, n) complex Löwdin densities of frames 0..L-1.
            field_mid: (B, L-1, 3) the field at the midpoints of steps k -> k+1.

        Returns:
            ``(delta_g, rho_next)``: ΔG' at every frame (B, L, S, n, n) and the one-step
            predictions of frames 1..L-1 (B, L-1, S, n, n). The corrector's network call
            uses the gates of the true next frame (a parallel scan cannot branch).
        """
        return teacher_forced_members([self], rho, field_mid, system, dt)

    def rollout(self, rho0: torch.Tensor, field_mid: torch.Tensor, system: MoleculeSystem,
                dt: float, save_every: int = 1, callback=None, maps: "LinearMaps | None" = None) -> torch.Tensor:
        """Free rollout from P'(t_0), recurrent (constant cost per step).

        Args:
            rho0: (B, S, n, n) complex Löwdin densities at t_0.
            field_mid: (B, N, 3) the field at t_0 + (k + 1/2) dt, k = 0..N-1.
            save_every: keep every ``save_every``-th density (N a multiple of it).
            callback: optional callable(k) after every step (progress).
            maps: :meth:`linear_maps` of the (single) geometry of the batch, when the caller
                has them (computed here when gradients are off and every member has the
                same geometry).

        Returns:
            (B, N // save_every + 1, S, n, n) complex128 Löwdin densities; element 0 is
            ``rho0``.
        """
        return rollout_members([self], rho0, field_mid, system, dt, save_every, callback,
                               None if maps is None else [maps])

    @torch.no_grad()
    def set_scales(self, input_rms: float, output_rms: float | None) -> None:
        """Input scale: RMS of the ΔP' elements of the training data; output scale: RMS of the
        learned target ΔG' (the input scale when no target is known)."""
        self.input_scale.fill_(input_rms if input_rms > 0 else 1.0)
        out = input_rms if output_rms is None else output_rms
        self.output_scale.fill_(out if out > 0 else 1.0)

    def state_dict_for_checkpoint(self) -> dict:
        # "gates" marks the gate form, which an xc-nonlinear model of rtml 0.x before residual
        # gates did not record (its weights mean something else)
        return {"model": "rtml", "config": asdict(self.config), "state_dict": self.state_dict(),
                "gates": "residual" if self.config.residual_gates else "one-plus"}


def teacher_forced_members(models, rho: torch.Tensor, field_mid: torch.Tensor,
                           system: MoleculeSystem, dt: float):
    """:meth:`RTMLModel.teacher_forced` with the mean ΔG' of one or more models (an ensemble;
    one model gives its own result exactly)."""

    def mean(gs):
        return gs[0] if len(gs) == 1 else torch.stack(gs).mean(0)

    dp = rho - system.rho0[:, None].to(rho.dtype)
    terms = []
    for m in models:
        geo = m._geometry_terms(system)
        h = m._features(dp, system, geo)
        terms.append((m, geo, m._gate_sequence(m._invariants(h), geo[4]), h))
    g = mean([m.delta_fock(dp, gates, h, system, geo) for m, geo, gates, h in terms])

    def response(pred):
        dp_pred = pred - system.rho0[:, None].to(pred.dtype)
        return mean([m.delta_fock(dp_pred, gates[:, 1:], None, system, geo) for m, geo, gates, _ in terms])

    nxt = trapezoid_step(rho[:, :-1], g[:, :-1], response, system, field_mid, dt,
                         models[0].config.corrector_iterations)
    return g, nxt


def trapezoid_step(p: torch.Tensor, g_start: torch.Tensor, response, system: MoleculeSystem,
                   field_mid: torch.Tensor, dt: float, iterations: int) -> torch.Tensor:
    r"""The exact step's implicit trapezoid, by ``iterations`` corrector passes:

    .. math::

        P'_{k+1} = e^{-i\Delta t H_k} P' e^{i\Delta t H_k},\qquad
        H_k = \bar F_0' + \tfrac12\bigl(\Delta G'(t) + \Delta G'[P'_k]\bigr)
              + \mathbf E(t+\tfrac{\Delta t}2)\cdot\mathbf D'

    from the predictor :math:`P'_0` (with :math:`\Delta G'(t)` alone); the result is
    :math:`P'_{\text{iterations}}`, unitary in every pass. The RT engine solves the same
    trapezoid to self-consistency; one pass leaves an O(Δt³) error per step that, over 1000
    steps, is most of a weak kick's error.

    Args:
        p: (..., S, n, n) P'(t); g_start: ΔG'(t), same shape.
        response: callable P' -> ΔG'[P'] (the network's call at the step's end).
    """
    pred = exponential_step(p, RTMLModel.hamiltonian(g_start, system, field_mid), dt)
    for _ in range(iterations):
        g = 0.5 * (g_start + response(pred))
        pred = exponential_step(p, RTMLModel.hamiltonian(g, system, field_mid), dt)
    return pred


class EnsembleStepper:
    r"""One or more models (an ensemble) stepping a batch of densities one exact step at a time.

    Each step is the exact step of :meth:`RTMLModel.rollout` (:func:`trapezoid_step`, the
    models' ``corrector_iterations``) with :math:`\Delta G' = \frac1M\sum_m \Delta G'_m` of
    the M models, each keeping its own gate memory; a unitary step of the mean response keeps the density physical (a mean of
    M rolled-out densities would not be idempotent). One model gives its own rollout exactly.

    After a step, :attr:`last_responses` holds each member's :math:`\Delta G'_m` at the
    step's start, the ensemble's disagreement (:meth:`spread`). :meth:`observe` advances the
    gate memories over a step that something else (the RT engine) made.

    Args:
        models: :class:`RTMLModel` list (same dtype).
        system: the batch's :class:`MoleculeSystem`.
        maps: one :meth:`RTMLModel.linear_maps` per model, or None (computed here when
            gradients are off and the batch is one geometry).
    """

    def __init__(self, models, system: MoleculeSystem, maps=None):
        self.models, self.system = list(models), system
        self.ref = system.rho0.to(torch.complex128)
        if maps is None and not torch.is_grad_enabled():
            shared = [m._shared_maps(system) for m in self.models]
            maps = None if any(x is None for x in shared) else shared
        self.maps = maps
        self.geos = [m._geometry_terms(system) for m in self.models]
        self.caches = [m.init_cache(system) for m in self.models]
        self.last_responses: list[torch.Tensor] = []

    def _response(self, k: int, p_now, cache_now):
        model, geo = self.models[k], self.geos[k]
        if self.maps is not None:
            return model._fast_response(p_now - self.ref, self.maps[k], self.system, geo[4],
                                        cache_now)
        dp = (p_now - self.ref)[:, None]
        h = model._features(dp, self.system, geo)
        gates, cache_next = model._gate_step(model._invariants(h[:, 0]), geo[4], cache_now)
        return model.delta_fock(dp, gates[:, None], h, self.system, geo)[:, 0], cache_next

    def responses(self, p_now, caches):
        """Each member's ΔG' (list of (B, S, n, n)) at ``p_now`` and the advanced memories."""
        out = [self._response(k, p_now, c) for k, c in enumerate(caches)]
        return [o[0] for o in out], [o[1] for o in out]

    @staticmethod
    def mean(gs: list) -> torch.Tensor:
        return gs[0] if len(gs) == 1 else torch.stack(gs).mean(0)

    def step(self, p: torch.Tensor, field_mid: torch.Tensor, dt: float) -> torch.Tensor:
        """P'(t) (B, S, n, n) -> P'(t + dt) under the field at the step's midpoint (B, 3)."""
        gs, caches_next = self.responses(p, self.caches)
        def response(pred):  # the gates step from the memories after this step's start
            return self.mean(self.responses(pred, caches_next)[0])

        nxt = trapezoid_step(p, self.mean(gs), response, self.system, field_mid, dt,
                             self.models[0].config.corrector_iterations)
        self.caches, self.last_responses = caches_next, gs
        return nxt

    def observe(self, p: torch.Tensor) -> torch.Tensor:
        """Advance the gate memories over a step that starts at ``p`` and that the model did
        not make; returns the ensemble's mean ΔG' at ``p`` (its prediction of F' - F0')."""
        gs, self.caches = self.responses(p, self.caches)
        self.last_responses = gs
        return self.mean(gs)

    def spread(self, p: torch.Tensor, dt: float) -> torch.Tensor:
        r"""(B,) the ensemble's disagreement on the last step from ``p``: the largest change a
        member's own response would make to it, to first order in dt,

        .. math:: \sigma = \Delta t\,\max_m \bigl\|[\Delta G'_m - \overline{\Delta G'}, P']\bigr\|_F

        (zero for one model)."""
        gs = self.last_responses
        if len(gs) < 2:
            return torch.zeros(p.shape[0], dtype=torch.float64)
        g = self.mean(gs)
        worst = torch.stack([density_norm((x - g) @ p - p @ (x - g)) for x in gs])
        return dt * worst.max(0).values


def rollout_members(models, rho0: torch.Tensor, field_mid: torch.Tensor, system: MoleculeSystem,
                    dt: float, save_every: int = 1, callback=None, maps=None) -> torch.Tensor:
    """Free rollout of one model or an ensemble (:class:`EnsembleStepper`: the mean response
    drives one exact step).

    Args:
        models: :class:`RTMLModel` list (same dtype).
        maps: one :meth:`RTMLModel.linear_maps` per model, or None.
        Others: as :meth:`RTMLModel.rollout`.
    """
    stepper = EnsembleStepper(models, system, maps)
    p = rho0.to(torch.complex128)
    out = [p]
    for k in range(field_mid.shape[1]):
        p = stepper.step(p, field_mid[:, k], dt)
        if (k + 1) % save_every == 0:
            out.append(p)
        if callback is not None:
            callback(k + 1)
    return torch.stack(out, dim=1)


# ------------------------------------------------------------------------------ data glue
def midpoint_fields(traj) -> np.ndarray:
    """(T-1, 3) field at the midpoints of the saved steps of a trajectory (a.u.).

    From the stored field description (exact, as the engine applies it) when the record has
    one, else the mean of the stored end-point values.
    """
    time = np.asarray(traj.time, dtype=float) if getattr(traj, "time", None) is not None else None
    spec = getattr(traj, "field_spec", None)
    if spec and time is not None:
        field = field_from_json(spec)
        if field.is_resolved or field.is_kick or field.kind == "none":
            mid = 0.5 * (time[1:] + time[:-1])
            return np.asarray(field.values(mid), dtype=float).reshape(len(mid), 3)
    f = np.asarray(traj.field, dtype=float)
    return 0.5 * (f[1:] + f[:-1])


def frame_spacing(traj) -> float:
    """Time between saved frames (a.u.)."""
    if getattr(traj, "time", None) is not None and len(traj.time) > 1:
        return float(traj.time[1] - traj.time[0])
    raise InputError(f"trajectory of {traj.molecule!r} has no time axis; cannot infer the step")


def _mole(traj):
    """The PySCF molecule of a trajectory record (Å, spherical AOs, as the engines build it)."""
    return build_mole_from_atoms(traj.molecule, traj.atomic_numbers, traj.positions_angstrom,
                                 traj.basis, traj.charge, traj.multiplicity)


def system_from_trajectories(trajs, xc_kernel: bool = False) -> MoleculeSystem:
    """:class:`MoleculeSystem` of the geometries of trajectories of one molecule (with the XC
    kernel in the exact maps for ``xc_kernel``, see :func:`build_system`)."""
    first = trajs[0]
    missing = [t.traj_id or t.molecule for t in trajs if t.rho_ground is None or t.fock_ground is None]
    if missing:
        raise InputError(f"trajectory {missing[0]} has no stored ground-state density/Fock matrix "
                         "(regenerate it with this rtml version: the model needs them)")
    layout = BasisLayout.from_metadata(first.basis_atom_index, first.basis_angular_momentum,
                                       first.basis_magnetic_quantum, first.atomic_numbers)
    mols = [_mole(t) for t in trajs]
    n_spin = first.rho.shape[1]
    return build_system(mols, first.xc, n_spin, layout, np.stack([t.positions_angstrom for t in trajs]),
                        np.stack([t.overlap for t in trajs]), np.stack([t.rho_ground for t in trajs]),
                        np.stack([t.fock_ground for t in trajs]),
                        np.stack([t.dipole_origin_bohr for t in trajs]), xc_kernel=xc_kernel)


class RTMLPropagator:
    """One trained :class:`RTMLModel`, or an ensemble of them (their mean ΔG' drives one exact
    step, :func:`rollout_members`), behind the interface the evaluation uses."""

    name = "rtml"

    def __init__(self, models):
        self.members = [m.eval() for m in (models if isinstance(models, (list, tuple)) else [models])]
        if not self.members:
            raise ValueError("RTMLPropagator needs at least one model")
        if len({m.config.learned for m in self.members}) > 1:
            raise InputError("ensemble members learn different parts of ΔG "
                             f"({', '.join(sorted({m.config.learned for m in self.members}))}); "
                             "they cannot share one exact step")
        self._systems: dict = {}
        #: (system, linear maps per member) of the last geometry :func:`rtml.model.propagate_model` ran
        self.engine_setup: dict = {}

    @property
    def model(self) -> RTMLModel:
        """The first (for a single model, the only) member."""
        return self.members[0]

    def system(self, traj) -> MoleculeSystem:
        key = (traj.molecule, np.asarray(traj.positions_angstrom).tobytes(), traj.basis)
        if key not in self._systems:
            self._systems = {key: system_from_trajectories(
                [traj], xc_kernel=self.model.config.exact_xc_kernel)}     # keep one geometry
        return self._systems[key]

    @torch.no_grad()
    def one_step(self, traj) -> np.ndarray:
        """Teacher-forced one-step predictions of frames 1..T-1 (AO, complex)."""
        system = self.system(traj)
        rho = system.to_orthonormal_density(torch.as_tensor(traj.rho)[None].to(torch.complex128))
        field = torch.as_tensor(midpoint_fields(traj))[None]
        _, nxt = teacher_forced_members(self.members, rho, field, system, frame_spacing(traj))
        return system.to_ao_density(nxt)[0].numpy()

    @torch.no_grad()
    def rollout_trajectory(self, traj) -> np.ndarray:
        """Free recurrent rollout from the first frame under the reference field (AO)."""
        system = self.system(traj)
        rho0 = system.to_orthonormal_density(torch.as_tensor(traj.rho[:1]).to(torch.complex128))
        field = torch.as_tensor(midpoint_fields(traj))[None]
        out = rollout_members(self.members, rho0, field, system, frame_spacing(traj))
        return system.to_ao_density(out)[0].numpy()


def load_rtml(state: dict) -> RTMLPropagator:
    """Rebuild a trained model from its checkpoint dict."""
    if "learned" not in state.get("config", {}):
        raise InputError("this model.pt was written by an earlier rtml model design "
                         "(latent codec); retrain it with `rtml train`")
    config = model_config_from_checkpoint(state["config"])
    if config.residual_gates and state.get("gates") != "residual":
        raise InputError("this xc-nonlinear model.pt predates residual gates (its gates meant "
                         "1 + γ); retrain it with `rtml train --learned xc-nonlinear`")
    model = RTMLModel(config).to(torch.float64)
    model.load_state_dict(state["state_dict"])
    return RTMLPropagator(model)
