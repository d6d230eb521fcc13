r"""A learned ground-state guess: the SCF's starting density for a new geometry.

The network predicts the correction that PySCF's default guess (``minao``, a superposition
of atomic densities projected onto the basis) lacks, in the Löwdin basis
:math:`P' = S^{1/2} P S^{1/2}`:

.. math::

    \Delta P'_\theta(\mathbf R) \approx P_0' - P'_\text{minao},

from the geometry alone, O(3)-equivariantly: atom tokens start from their element, atom-pair
tokens from the elements, the distance and the spherical harmonics :math:`Y^{1,2}(\hat r_{AB})`
of the bond; the model's :class:`~rtml.model.TokenInteraction` layers pass messages between
them and its :class:`~rtml.model.DensityDecoder` writes the shell-pair blocks. The guess is
then made a density exactly (:func:`purify_density`): the natural orbitals of
:math:`P'_\text{minao} + \Delta P'_\theta` with the largest occupations are filled, N_α and
N_β electrons, so it is symmetric, idempotent per spin and has the right trace. An untrained
head (zero correction) gives the purified minao guess.

Irreps: tokens carry ``irreps_hidden`` (the shell pairs of an s/p basis make 0e, 1o, 1e, 2e);
spin is not an input (the total density is predicted; open shells fill N_α and N_β natural
orbitals of it).
"""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch
from e3nn import o3
from torch import nn

from rtml._errors import InputError
from rtml.model._basis_layout import BasisLayout
from rtml.model._config import ModelConfig
from rtml.model._density_codec import DensityDecoder, DensityLatent
from rtml.model._geometry import RadialBasis
from rtml.model._rtml import TokenInteraction, message_geometry
from rtml.tddft import lowdin_orthogonalizer
from rtml.units import ANGSTROM_BOHR

#: Name of the weights file in a guess directory.
GUESS_FILE = "ground_state_guess.pt"


def purify_density(p_total_orth: np.ndarray, n_alpha: int, n_beta: int) -> np.ndarray:
    r"""An exact density from an approximate total Löwdin density (n, n):

    .. math:: P'_\sigma = \sum_{k \le N_\sigma} c_k c_k^T, \qquad P' c_k = n_k c_k,\ n_1 \ge n_2 \ge \dots

    Returns (2, n, n) per-spin Löwdin densities (α, β): symmetric, idempotent, trace N_σ."""
    sym = 0.5 * (p_total_orth + p_total_orth.T)
    w, v = np.linalg.eigh(sym)
    v = v[:, np.argsort(-w, kind="stable")]
    return np.stack([v[:, :k] @ v[:, :k].T for k in (n_alpha, n_beta)])


class GroundStateGuess(nn.Module):
    """See the module docstring. Parameters do not depend on the molecule.

    Args:
        config: the token and codec settings of :class:`~rtml.model.ModelConfig`
            (``irreps_hidden``, ``n_interactions``, ``lmax_basis``, ``n_elements``,
            ``n_radial``, ``r_cut_bohr``, ``radial_hidden``); its dynamics settings do not
            apply here.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = c = config or ModelConfig()
        self.irreps_hidden = irreps = o3.Irreps(c.irreps_hidden)
        self.irreps_sh = o3.Irreps.spherical_harmonics(2)
        self.radial_basis = RadialBasis(c.n_radial, c.r_cut_bohr)
        # the irreps that the first tokens are made of: scalars, and the bond's Y^1, Y^2
        self._slots = {(ir.l, ir.p): (sl, mul) for sl, (mul, ir) in zip(irreps.slices(), irreps)}
        for need in ((0, 1), (1, -1), (2, 1)):
            if need not in self._slots:
                raise ValueError(f"irreps_hidden={c.irreps_hidden!r} needs 0e, 1o and 2e")
        n0, n1, n2 = (self._slots[k][1] for k in ((0, 1), (1, -1), (2, 1)))
        self.atom_embedding = nn.Linear(c.n_elements, n0)
        self.pair_embedding = nn.Sequential(
            nn.Linear(2 * c.n_elements + c.n_radial, c.radial_hidden), nn.SiLU(),
            nn.Linear(c.radial_hidden, n0 + n1 + n2))
        self.interactions = nn.ModuleList(
            TokenInteraction(c.irreps_hidden, str(self.irreps_sh), c.n_radial, c.n_elements,
                             c.radial_hidden) for _ in range(c.n_interactions))
        self.decoder = DensityDecoder(irreps_latent=c.irreps_hidden, lmax_basis=c.lmax_basis,
                                      n_elements=c.n_elements, r_cut_bohr=c.r_cut_bohr,
                                      n_radial=c.n_radial)
        self.register_buffer("output_scale", torch.ones((), dtype=torch.float64))

    @property
    def dtype(self) -> torch.dtype:
        return self.atom_embedding.weight.dtype

    def _tokens(self, layout: BasisLayout, pos: torch.Tensor) -> torch.Tensor:
        """First token features (B, T, d): element scalars on atoms; on pairs A < B, scalars
        of (Z_A, Z_B, |r_AB|) and their weights on Y^1, Y^2 of r̂_AB."""
        c, dt = self.config, self.dtype
        b, n_atoms = pos.shape[0], layout.n_atoms
        z = torch.as_tensor(layout.atomic_numbers, dtype=torch.long)
        oh = nn.functional.one_hot(z - 1, c.n_elements).to(dt)
        src, dst = (torch.as_tensor(x, dtype=torch.long) for x in layout.edge_index)
        vec = (pos[:, dst] - pos[:, src]) * ANGSTROM_BOHR                           # (B, E, 3)
        desc = torch.cat([oh[src].expand(b, -1, -1), oh[dst].expand(b, -1, -1),
                          self.radial_basis(vec.norm(dim=-1))], -1)
        w = self.pair_embedding(desc)                                               # (B, E, .)
        y = o3.spherical_harmonics(self.irreps_sh, vec, normalize=True, normalization="component")
        (s0, n0), (s1, n1), (s2, n2) = (self._slots[k] for k in ((0, 1), (1, -1), (2, 1)))
        h = torch.zeros(b, n_atoms + layout.n_edges, self.irreps_hidden.dim, dtype=dt)
        h[:, :n_atoms, s0] = self.atom_embedding(oh).expand(b, -1, -1)
        h[:, n_atoms:, s0] = w[..., :n0]
        h[:, n_atoms:, s1] = (w[..., n0:n0 + n1, None] * y[..., None, 1:4]).flatten(-2)
        h[:, n_atoms:, s2] = (w[..., n0 + n1:, None] * y[..., None, 4:9]).flatten(-2)
        return h

    def forward(self, layout: BasisLayout, positions_angstrom: torch.Tensor) -> torch.Tensor:
        """ΔP' (B, n, n) real symmetric, the correction to the minao guess (Löwdin basis),
        for B geometries (B, n_atoms, 3) Å of one molecule."""
        pos = torch.as_tensor(positions_angstrom).to(self.dtype)
        msg, sh, desc = message_geometry(layout, pos, self.irreps_sh, self.radial_basis,
                                         self.config.n_elements)
        h = self._tokens(layout, pos)[:, None]                                    # (B, 1, T, d)
        for layer in self.interactions:
            h = layer(h, layout.n_atoms, msg, sh, desc)
        n_atoms = layout.n_atoms
        out = self.decoder(DensityLatent(h[:, :, :n_atoms], h[:, :, n_atoms:]), layout, pos)
        return self.output_scale * out[:, 0].real.to(torch.float64)

    def state_dict_for_checkpoint(self) -> dict:
        return {"model": "ground-state-guess", "config": asdict(self.config),
                "state_dict": self.state_dict()}


def minao_density(mol) -> np.ndarray:
    """PySCF's default (minao) guess as one total AO density (n, n)."""
    from pyscf.scf import hf
    return np.asarray(hf.init_guess_by_minao(mol))


@torch.no_grad()
def guess_density(model: GroundStateGuess, mol) -> np.ndarray:
    """The learned guess for a PySCF molecule: AO density, (n, n) total for a closed shell,
    (2, n, n) α, β otherwise (the ``dm0`` PySCF's RKS/UKS take)."""
    layout = BasisLayout.from_mole(mol)
    s_inv_half, s_half = lowdin_orthogonalizer(mol.intor("int1e_ovlp"))
    pos = torch.as_tensor(mol.atom_coords(unit="Angstrom"))[None]
    try:
        dp = model(layout, pos)[0].numpy()
    except ValueError as err:   # a basis or element the guess was not built for
        raise InputError(f"the learned ground-state guess cannot start {mol.basis} for this "
                         f"molecule: {err}") from None
    p_orth = s_half @ minao_density(mol) @ s_half + dp
    n_alpha, n_beta = mol.nelec
    spins = np.stack([s_inv_half @ p @ s_inv_half for p in purify_density(p_orth, n_alpha, n_beta)])
    return spins.sum(0) if mol.spin == 0 else spins


def load_guess(path) -> GroundStateGuess:
    """A trained guess from its directory (``GUESS_FILE``) or file."""
    from pathlib import Path
    path = Path(path)
    file = path / GUESS_FILE if path.is_dir() else path
    state = torch.load(file, map_location="cpu", weights_only=False)
    if state.get("model") != "ground-state-guess":
        raise ValueError(f"{file} is not a ground-state guess")
    with torch.no_grad():
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            model = GroundStateGuess(ModelConfig(**state["config"]))
        finally:
            torch.set_default_dtype(prev)
        model.load_state_dict(state["state_dict"])
    return model.eval()


def relative_density_error(guess_ao: np.ndarray, p0_ao: np.ndarray, overlap: np.ndarray) -> float:
    r""":math:`\|P'_\text{guess} - P_0'\|_F / \|P_0'\|_F` of total densities in the Löwdin basis."""
    _, s_half = lowdin_orthogonalizer(overlap)
    g = guess_ao.sum(0) if guess_ao.ndim == 3 else guess_ao
    p = p0_ao.sum(0) if p0_ao.ndim == 3 else p0_ao
    return float(np.linalg.norm(s_half @ (g - p) @ s_half) / max(np.linalg.norm(s_half @ p @ s_half),
                                                                   math.ulp(1.0)))
