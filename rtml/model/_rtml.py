r"""The rtml model: geometry encoder + variable-basis density codec + Mamba dynamics + physics.

For one molecule geometry (atoms with positions R and numbers Z, an AO basis) and a density
trajectory :math:`P(t_k)` under a field :math:`\mathbf E(t_k)`:

1. :class:`~rtml.model.GeometryEncoder` (e3nn) gives per-atom equivariant features
   :math:`g_A` (``irreps_geometry``) and an invariant embedding :math:`c` of the molecule.
2. :class:`~rtml.model.DensityEncoder` maps :math:`P(t_k)` to latent irreps on every atom
   (same-atom blocks) and atom pair (off-diagonal blocks): tokens
   :math:`z_{k,T}` (``irreps_latent``), spin treated like batch. Its parameters do not
   depend on nbf.
3. :class:`~rtml.model.FieldEncoder` couples :math:`\mathbf E` (an l=1 vector) to
   :math:`g_A` by a tensor product; edges take the mean of their two atoms.
4. Per token, a Mamba stack with FiLM conditioning on [c, token invariants] runs along
   time: input :math:`x_k = W_\text{in}[(z_k - z_\text{ref})/s_z, f(\mathbf E_k),
   f(\mathbf E_{k+1}), (z_k - z_{k-1})/s_v]` with :math:`z_\text{ref}` the latent of
   :math:`\mathrm{Re}\,P(t_0)`.
   The reference is the real part because a ground-state density is real: a kick
   :math:`P(0^+) = e^{i\kappa r}P_0e^{-i\kappa r}` changes Im P at first order in
   :math:`\kappa` and Re P only at second, so :math:`z_0 - z_\text{ref}` tells the dynamics
   which way the kicked density will move before anything has moved. The velocity
   :math:`z_k - z_{k-1}` (zero at k = 0) makes the trivial extrapolation a linear map.
   Self-attention across the tokens of a frame (:class:`TokenMixing`) couples the blocks,
   then the Mamba stack runs along time
   output the residual update :math:`z_{k+j} = z_k + s_\Delta\,\Delta_{k,j}` for
   :math:`j = 1..\text{bundle}` (temporal bundling), where :math:`\Delta` is the Mamba
   head plus a linear skip from the inputs (a per-token linear propagator). Training uses the parallel scan,
   rollout the recurrent step with carried state; the head starts at zero, so an untrained
   model is persistence.
5. :class:`~rtml.model.DensityDecoder` maps latents back to Hermitian AO matrices. It is
   linear, so the update is decoded on its own and added to the known density,
   :math:`\hat P(t_{k+j}) = P(t_k) + D(s_\Delta\Delta_{k,j})`: the static part of P never
   passes through the (compressing) latent, only the change does. Then
   :func:`~rtml.model.project_density` makes it physical (Hermitian, Tr(PS)=N, McWeeny,
   trace again) in float64.

The dynamics acts on flattened latent channels, so only stages 1-3 and 5 are equivariant
(tested); the scales :math:`s_z, s_\Delta` are set from training data
(:meth:`RTMLModel.set_scales`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from e3nn import o3
from torch import nn

from rtml._errors import InputError
from rtml.model._basis_layout import BasisLayout
from rtml.model._density_codec import DensityDecoder, DensityEncoder, DensityLatent
from rtml.model._dynamics import make_dynamics
from rtml.model._field import FieldEncoder
from rtml.model._geometry import GeometryEncoder
from rtml.model._projection import project_density


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`RTMLModel` (stored in checkpoints)."""

    irreps_geometry: str = "32x0e+16x1o+8x2e"
    irreps_latent: str = "16x0e+8x1o+8x1e+4x2e"
    irreps_field: str = "8x0e+4x1o"
    d_model: int = 64
    n_layers: int = 2
    d_state: int = 16
    dynamics: str = "mamba"
    bundle: int = 1
    lmax_basis: int = 1
    mcweeny_iterations: int = 3
    field_scale: float = 0.01
    token_mixing: int = 1
    mixing_heads: int = 4

    def __post_init__(self):
        if self.dynamics not in ("mamba", "mlp"):
            raise InputError(f"dynamics must be 'mamba' or 'mlp', got '{self.dynamics}'")
        if self.bundle < 1:
            raise InputError(f"bundle must be >= 1, got {self.bundle}")
        if self.token_mixing < 0 or self.d_model % max(self.mixing_heads, 1):
            raise InputError(f"token_mixing must be >= 0 and d_model ({self.d_model}) a multiple "
                             f"of mixing_heads ({self.mixing_heads})")


class TokenMixing(nn.Module):
    r"""Pre-norm self-attention across the tokens (atoms and atom pairs) of one frame.

    The per-token Mamba sees only its own token's history; the coupling of blocks through
    :math:`-i[F, P]` (every block of P moves with every other) needs tokens to exchange
    information. Attention mixes them with weights that do not depend on the number of
    tokens, so the model stays independent of nbf. It acts within one time step, so the
    parallel scan and the recurrent rollout stay identical.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.attention = nn.MultiheadAttention(d_model, n_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(G, T, d_model) -> (G, T, d_model), G independent groups of T tokens."""
        h = self.norm(x)
        return x + self.attention(h, h, h, need_weights=False)[0]


class MoleculeBatch(NamedTuple):
    """One molecule (one basis layout) at B geometries.

    Attributes
    ----------
    layout : BasisLayout
    positions_angstrom : (B, n_atoms, 3)
    atomic_numbers : (n_atoms,) int
    overlap : (B, nbf, nbf)
    n_per_spin : (B, n_spin) electrons per spin channel
    """

    layout: BasisLayout
    positions_angstrom: torch.Tensor
    atomic_numbers: torch.Tensor
    overlap: torch.Tensor
    n_per_spin: torch.Tensor


def n_per_spin_tensor(n_electrons, multiplicity, n_spin: int, batch: int) -> torch.Tensor:
    """(B, n_spin) electrons per channel: [N] closed shell, [N_alpha, N_beta] open shell."""
    if n_spin == 1:
        row = [float(n_electrons)]
    else:
        n_alpha = (int(n_electrons) + int(multiplicity) - 1) // 2
        row = [float(n_alpha), float(int(n_electrons) - n_alpha)]
    return torch.tensor(row, dtype=torch.float64).expand(batch, n_spin).clone()


class RTMLModel(nn.Module):
    """See the module docstring. All parameters are independent of nbf and n_spin."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.geometry = GeometryEncoder(irreps_out=c.irreps_geometry)
        self.encoder = DensityEncoder(irreps_latent=c.irreps_latent, lmax_basis=c.lmax_basis)
        self.decoder = DensityDecoder(irreps_latent=c.irreps_latent, lmax_basis=c.lmax_basis)
        self.field = FieldEncoder(irreps_node=c.irreps_geometry, irreps_out=c.irreps_field,
                                  field_scale=c.field_scale)
        self.d_latent = o3.Irreps(c.irreps_latent).dim
        n_scalars = o3.Irreps(c.irreps_geometry).count("0e")
        self.n_geometry_scalars = n_scalars
        self.d_cond = self.geometry.d_invariant + n_scalars + self.geometry.radial_basis.n_radial + 2
        d_field = o3.Irreps(c.irreps_field).dim
        self.d_input = 2 * self.d_latent + 2 * d_field
        self.input = nn.Linear(self.d_input, c.d_model)
        self.mixing = nn.ModuleList(TokenMixing(c.d_model, c.mixing_heads)
                                    for _ in range(c.token_mixing))
        # linear path from the inputs to the update, beside the Mamba stack
        self.skip = nn.Linear(self.d_input, self.d_latent * c.bundle)
        kwargs = {"n_layers": c.n_layers, "out_dim": self.d_latent, "bundle": c.bundle}
        if c.dynamics == "mamba":
            kwargs["d_state"] = c.d_state
        self.dynamics = make_dynamics(c.dynamics, c.d_model, self.d_cond, **kwargs)
        # zero output layer: an untrained model predicts no change (persistence)
        head = self.dynamics.head if hasattr(self.dynamics, "head") else self.dynamics.mlp[-1]
        for layer in (head, self.skip):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.register_buffer("latent_scale", torch.ones(()))
        self.register_buffer("velocity_scale", torch.ones(()))
        self.register_buffer("delta_scale", torch.ones(()))

    def __repr__(self) -> str:
        c = self.config
        n = sum(p.numel() for p in self.parameters())
        return (f"RTMLModel(geometry {self.geometry.irreps_in} -> {c.irreps_geometry}, density -> "
                f"{c.irreps_latent}, field 1x1o -> {c.irreps_field}, {c.dynamics} d_model={c.d_model}"
                f" x {c.n_layers}, bundle={c.bundle}; {n} parameters)")

    # -- pieces ------------------------------------------------------------------------
    def _token_features(self, batch: MoleculeBatch):
        """Geometry node features and per-token conditioning (B, T, d_cond)."""
        geo = self.geometry(batch.positions_angstrom, batch.atomic_numbers)
        scalars = geo.node[..., :self.n_geometry_scalars]                 # (B, A, s)
        src, dst = (torch.as_tensor(x, dtype=torch.long) for x in batch.layout.edge_index)
        n_atoms, n_edges = scalars.shape[1], len(src)
        node_cond = torch.cat([scalars, torch.zeros_like(geo.edge_radial[:, 0, :, :]),
                               scalars.new_tensor([1.0, 0.0]).expand(*scalars.shape[:2], 2)], -1)
        edge_cond = torch.cat([0.5 * (scalars[:, src] + scalars[:, dst]),
                               geo.edge_radial[:, src, dst],
                               scalars.new_tensor([0.0, 1.0]).expand(scalars.shape[0], n_edges, 2)], -1)
        tokens = torch.cat([node_cond, edge_cond], dim=1)                  # (B, T, .)
        glob = geo.invariant[:, None, :].expand(-1, n_atoms + n_edges, -1)
        return geo.node, torch.cat([glob, tokens], dim=-1)

    def _field_tokens(self, field: torch.Tensor, node_feats: torch.Tensor, layout) -> torch.Tensor:
        """(B, L, 3) field -> (B, L, T, d_field) per token."""
        per_atom = self.field(field, node_feats)                           # (B, L, A, f)
        src, dst = (torch.as_tensor(x, dtype=torch.long) for x in layout.edge_index)
        per_edge = 0.5 * (per_atom[:, :, src] + per_atom[:, :, dst])
        return torch.cat([per_atom, per_edge], dim=2)

    def encode(self, rho: torch.Tensor, batch: MoleculeBatch, weights=None) -> torch.Tensor:
        """(B, L, n_spin, n, n) complex -> latent tokens (B, L, n_spin, T, d_latent).

        ``weights``: the encoder's ``group_weights`` for L = 1 (a rollout reuses them)."""
        b, length = rho.shape[:2]
        pos = batch.positions_angstrom.repeat_interleave(length, dim=0)
        lat = self.encoder(rho.reshape(b * length, *rho.shape[2:]), batch.layout, pos, weights)
        z = torch.cat([lat.node, lat.edge], dim=2)                          # (B*L, S, T, d)
        return z.reshape(b, length, *z.shape[1:])

    def decode(self, z: torch.Tensor, batch: MoleculeBatch, weights=None) -> torch.Tensor:
        """Latent tokens (B, L, n_spin, T, d) -> Hermitian AO densities (B, L, n_spin, n, n).

        ``weights``: the decoder's ``group_weights`` for L = 1 (a rollout reuses them)."""
        b, length = z.shape[:2]
        n_atoms = batch.layout.n_atoms
        flat = z.reshape(b * length, *z.shape[2:])
        pos = batch.positions_angstrom.repeat_interleave(length, dim=0)
        rho = self.decoder(DensityLatent(flat[:, :, :n_atoms], flat[:, :, n_atoms:]), batch.layout, pos,
                           weights)
        return rho.reshape(b, length, *rho.shape[1:])

    def project(self, rho: torch.Tensor, batch: MoleculeBatch) -> torch.Tensor:
        """Physics projection of (B, L, n_spin, n, n) densities, in float64."""
        length = rho.shape[1]
        s = batch.overlap[:, None].expand(-1, length, -1, -1)
        n = batch.n_per_spin[:, None].expand(-1, length, -1)
        return project_density(rho, s, n, mcweeny_iterations=self.config.mcweeny_iterations)

    # -- training: parallel over time ----------------------------------------------------
    def reference_latent(self, rho_initial: torch.Tensor, batch: MoleculeBatch) -> torch.Tensor:
        """Latent (B, n_spin, T, d) of Re P(t_0), the real ground-state-like reference."""
        real = rho_initial.real.to(rho_initial.dtype) if rho_initial.is_complex() else rho_initial
        return self.encode(real[:, None], batch)[:, 0]

    def _inputs(self, z, z_prev, z_ref, f_now, f_next):
        """Dynamics inputs from latents (B, L, S, T, d), the latents one frame earlier and the
        field tokens (B, L, T, f): features (N, L, d_input) for the skip path and embedded,
        token-mixed inputs (N, L, d_model) for the Mamba stack, N = B*S*T."""
        b, length, n_spin, n_tok, d = z.shape
        dz = (z - z_ref[:, None]) / self.latent_scale
        velocity = (z - z_prev) / self.velocity_scale
        f_now = f_now[:, :, None].expand(-1, -1, n_spin, -1, -1)
        f_next = f_next[:, :, None].expand(-1, -1, n_spin, -1, -1)
        feats = torch.cat([dz, f_now.to(dz.dtype), f_next.to(dz.dtype), velocity], dim=-1)
        x = self.input(feats)                                               # (B, L, S, T, m)
        if len(self.mixing):
            groups = x.permute(0, 2, 1, 3, 4).reshape(b * n_spin * length, n_tok, -1)
            for layer in self.mixing:
                groups = layer(groups)
            x = groups.reshape(b, n_spin, length, n_tok, -1).permute(0, 2, 1, 3, 4)
        def per_token(t):
            return t.permute(0, 2, 3, 1, 4).reshape(b * n_spin * n_tok, length, -1)
        return per_token(feats), per_token(x)

    def _skip(self, feats: torch.Tensor) -> torch.Tensor:
        """Linear update (N, L, [bundle,] d) from the input features (N, L, d_input)."""
        out = self.skip(feats)
        if self.config.bundle > 1:
            out = out.reshape(*out.shape[:-1], self.config.bundle, self.d_latent)
        return out

    def predict_latents(self, z: torch.Tensor, field: torch.Tensor, batch: MoleculeBatch,
                        z_ref: torch.Tensor, z_prev: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced predictions of z(t_{k+j}) for all k in parallel.

        Args:
            z: (B, L, n_spin, T, d) latents of the input frames k = 0..L-1.
            field: (B, L + bundle, 3) field at t_0 .. t_{L-1+bundle}.
            z_ref: (B, n_spin, T, d) reference latent (:meth:`reference_latent`).
            z_prev: (B, L, n_spin, T, d) latents one frame earlier (default: ``z`` shifted by
                one frame, with zero velocity at the first frame).

        Returns:
            (B, L, bundle, n_spin, T, d) predicted updates z(t_{k+j}) - z(t_k), j = 1..bundle.
        """
        c = self.config
        b, length, n_spin, n_tok, d = z.shape
        node_feats, cond = self._token_features(batch)
        ftok = self._field_tokens(field, node_feats, batch.layout)         # (B, L+k, T, f)
        if z_prev is None:
            z_prev = torch.cat([z[:, :1], z[:, :-1]], dim=1)
        feats, x = self._inputs(z, z_prev, z_ref, ftok[:, :length], ftok[:, 1:length + 1])
        cond = cond[:, None].expand(-1, n_spin, -1, -1).reshape(b * n_spin * n_tok, -1)
        delta = self.dynamics(x, cond.to(x.dtype)) + self._skip(feats)     # (N, L[, k], d)
        if c.bundle == 1:
            delta = delta[:, :, None]
        delta = delta.reshape(b, n_spin, n_tok, length, c.bundle, d).permute(0, 3, 4, 1, 2, 5)
        return self.delta_scale * delta

    def forward(self, rho: torch.Tensor, field: torch.Tensor, batch: MoleculeBatch,
                rho_initial: torch.Tensor | None = None, rho_previous: torch.Tensor | None = None):
        """One-step-ahead predictions of a window, in parallel (teacher forcing).

        Args:
            rho: (B, L+bundle, n_spin, n, n) densities of the window.
            field: (B, L+bundle, 3).
            rho_initial: (B, n_spin, n, n) the trajectory's first density (default rho[:, 0]).
            rho_previous: (B, n_spin, n, n) the density one frame before the window (default
                rho[:, 0]: zero velocity, as at the start of a trajectory).

        Returns:
            raw: (B, L, bundle, n_spin, n, n) decoded predictions of P(t_{k+j}) before
                projection; projected: the same after the physics projection.
        """
        k = self.config.bundle
        length = rho.shape[1] - k
        if length < 1:
            raise InputError(f"a window needs more than bundle={k} frames")
        z = self.encode(rho[:, :length], batch)
        z_ref = self.reference_latent(rho[:, 0] if rho_initial is None else rho_initial, batch)
        first = z[:, :1] if rho_previous is None else self.encode(rho_previous[:, None], batch)
        dz = self.predict_latents(z, field, batch, z_ref, torch.cat([first, z[:, :-1]], dim=1))                      # (B, L, k, S, T, d)
        b = dz.shape[0]
        change = self.decode(dz.reshape(b, length * k, *dz.shape[3:]), batch)
        shape = (b, length, k, *change.shape[2:])
        raw = rho[:, :length, None].to(torch.complex128) + change.reshape(shape).to(torch.complex128)
        projected = self.project(raw.reshape(b, length * k, *raw.shape[3:]), batch)
        return raw, projected.reshape(shape)

    # -- rollout: recurrent ----------------------------------------------------------------
    @torch.no_grad()
    def rollout(self, rho0: torch.Tensor, field: torch.Tensor, batch: MoleculeBatch) -> torch.Tensor:
        """Free rollout from P(t_0) under a field sequence, recurrent mode.

        Args:
            rho0: (B, n_spin, n, n) initial densities.
            field: (B, T, 3) field at t_0 .. t_{T-1}.

        Returns:
            (B, T, n_spin, n, n) complex128 projected densities; element 0 is ``rho0``.
        """
        b, n_steps = field.shape[:2]
        node_feats, cond = self._token_features(batch)
        ftok = self._field_tokens(field, node_feats, batch.layout)
        # the codec's weights depend on the geometry only: computed once for all steps
        enc_w = self.encoder.group_weights(batch.layout, batch.positions_angstrom)
        dec_w = self.decoder.group_weights(batch.layout, batch.positions_angstrom)
        z = self.encode(rho0[:, None], batch, enc_w)[:, 0]                  # (B, S, T, d)
        n_spin, n_tok, d = z.shape[1:]
        z_ref = self.reference_latent(rho0, batch)
        cond = cond[:, None].expand(-1, n_spin, -1, -1).reshape(b * n_spin * n_tok, -1)
        cache = self.dynamics.init_cache(b * n_spin * n_tok, dtype=self.input.weight.dtype)
        out = [rho0.to(torch.complex128)]
        z_prev = z
        for k in range(n_steps - 1):
            feats, x = self._inputs(z[:, None], z_prev[:, None], z_ref, ftok[:, k:k + 1],
                                    ftok[:, k + 1:k + 2])
            delta, cache = self.dynamics.step(x[:, 0], cond.to(x.dtype), cache)
            delta = delta + self._skip(feats)[:, 0]
            if self.config.bundle > 1:
                delta = delta[:, 0]
            change = self.decode((self.delta_scale * delta.reshape(b, n_spin, n_tok, d))[:, None], batch,
                                 dec_w)
            rho_next = self.project(out[-1][:, None] + change.to(torch.complex128), batch)[:, 0]
            out.append(rho_next.to(torch.complex128))
            # re-encode the physical (projected) density
            z_prev, z = z, self.encode(rho_next[:, None], batch, enc_w)[:, 0]
        return torch.stack(out, dim=1)

    @torch.no_grad()
    def set_scales(self, rho: torch.Tensor, batch: MoleculeBatch,
                   rho_initial: torch.Tensor | None = None) -> None:
        r"""Set the input and output scales from a batch of training windows (B, L, S, n, n).

        :math:`s_z` is the standard deviation of :math:`z_k - z_\text{ref}` (so Mamba sees O(1)
        inputs); :math:`s_\Delta` makes a unit-variance latent update decode to the typical
        one-step density change, :math:`s_\Delta = \mathrm{std}(P_{k+1} - P_k) /
        \mathrm{std}(D(\xi))`, :math:`\xi \sim N(0, 1)`.
        """
        z = self.encode(rho, batch)
        z_ref = self.reference_latent(rho[:, 0] if rho_initial is None else rho_initial, batch)
        self.latent_scale.fill_(float((z - z_ref[:, None]).std().clamp_min(1e-12)))
        self.velocity_scale.fill_(float((z[:, 1:] - z[:, :-1]).std().clamp_min(1e-12)))
        step = (rho[:, 1:] - rho[:, :-1]).abs().std()
        generator = torch.Generator().manual_seed(0)
        unit = torch.randn(z[:, :1].shape, generator=generator, dtype=z.dtype)
        gain = self.decode(unit, batch).abs().std()
        self.delta_scale.fill_(float(step / gain.clamp_min(1e-30)) if step > 0 else 1.0)

    def state_dict_for_checkpoint(self) -> dict:
        return {"model": "rtml", "config": asdict(self.config), "state_dict": self.state_dict()}


class TrajectoryData(NamedTuple):
    """One reference trajectory with everything a model needs (numpy, atomic units; Å)."""

    molecule: str
    rho: np.ndarray                 # (T, n_spin, n, n) complex
    field: np.ndarray               # (T, 3)
    positions_angstrom: np.ndarray  # (n_atoms, 3)
    atomic_numbers: np.ndarray      # (n_atoms,)
    basis_atom_index: np.ndarray
    basis_angular_momentum: np.ndarray
    basis_magnetic_quantum: np.ndarray
    overlap: np.ndarray             # (n, n)
    n_electrons: int
    multiplicity: int


class RTMLPropagator:
    """A trained :class:`RTMLModel` behind the interface the evaluation uses."""

    name = "rtml"

    def __init__(self, model: RTMLModel):
        self.model = model.eval()

    def _batch(self, traj: TrajectoryData) -> MoleculeBatch:
        layout = BasisLayout.from_metadata(traj.basis_atom_index, traj.basis_angular_momentum,
                                           traj.basis_magnetic_quantum, traj.atomic_numbers)
        return MoleculeBatch(layout, torch.as_tensor(traj.positions_angstrom, dtype=torch.float32)[None],
                             torch.as_tensor(traj.atomic_numbers), torch.as_tensor(traj.overlap)[None],
                             n_per_spin_tensor(traj.n_electrons, traj.multiplicity, traj.rho.shape[1], 1))

    @torch.no_grad()
    def one_step(self, traj: TrajectoryData) -> np.ndarray:
        """Teacher-forced one-step predictions of frames 1..T-1 (parallel scan)."""
        k = self.model.config.bundle
        rho = torch.as_tensor(traj.rho)[None]
        field = torch.as_tensor(traj.field)[None]
        if k > 1:  # the last frames have no bundle targets: pad with the last field value
            rho = torch.cat([rho, rho[:, -1:].expand(-1, k - 1, -1, -1, -1)], dim=1)
            field = torch.cat([field, field[:, -1:].expand(-1, k - 1, -1)], dim=1)
        _, projected = self.model(rho, field, self._batch(traj))
        return projected[0, :len(traj.rho) - 1, 0].numpy()

    @torch.no_grad()
    def rollout_trajectory(self, traj: TrajectoryData) -> np.ndarray:
        """Free recurrent rollout from the first frame under the reference field."""
        out = self.model.rollout(torch.as_tensor(traj.rho[:1]), torch.as_tensor(traj.field)[None],
                                 self._batch(traj))
        return out[0].numpy()


def load_rtml(state: dict) -> RTMLPropagator:
    """Rebuild a trained model from its checkpoint dict."""
    model = RTMLModel(ModelConfig(**state["config"]))
    model.load_state_dict(state["state_dict"])
    return RTMLPropagator(model)
