r"""Latent dynamics: a conditioned Mamba stack (and its MLP ablation) predicting residual updates.

The dynamics act on a latent state :math:`z_t \in \mathbb R^{d}` (the encoded density at
saved step :math:`t`), conditioned on a vector :math:`c` (the geometry embedding, optionally
time dependent), and predict residual updates

.. math:: z_{t+j} = z_t + \Delta_j(z_{\le t}, c), \qquad j = 1, \dots, k,

with :math:`k` = ``bundle`` (temporal bundling; :math:`k = 1` is the plain one-step map).

:class:`MambaDynamics` is a stack of pre-norm residual Mamba mixer blocks, each followed by
FiLM conditioning,

.. math::

    h \leftarrow h + \mathrm{Mixer}(\mathrm{RMSNorm}(h)), \qquad
    h \leftarrow (1 + \gamma(c)) \odot h + \beta(c),

then a final RMSNorm and a linear head. The mixer is the selective state-space block of
Gu & Dao (Mamba, arXiv:2312.00752) with mamba-ssm's parameter names and shapes
(``layers.{i}.mixer.in_proj.weight``, ``conv1d.weight``, ``x_proj.weight``,
``dt_proj.weight``, ``A_log``, ``D``, ``out_proj.weight``, ...; ``layers.{i}.norm.weight``
as in mamba-ssm's ``MixerModel``), so mixer weights load across. It is computed by mambapy
(pure PyTorch) or, for CUDA inputs when the optional ``mamba_ssm`` package imports, by
mamba-ssm's fused kernels sharing the same parameters. Training uses the parallel scan over
the sequence (:meth:`MambaDynamics.forward`); rollout carries the recurrent state one step at
a time (:meth:`MambaDynamics.step`, constant cost per step). The two agree to round-off.

:class:`MLPDynamics` is the memory-less ablation: :math:`\Delta = \mathrm{MLP}([z_t, c])`.
"""

from __future__ import annotations

import torch
from torch import nn
from mambapy.mamba import MambaConfig, RMSNorm, ResidualBlock

from rtml._errors import InputError
from rtml.model._summary import module_summary

__all__ = ["FiLM", "MambaDynamics", "MLPDynamics", "make_dynamics", "mamba_ssm_available"]

_BACKENDS = ("auto", "mambapy", "mamba_ssm")
_KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_MAMBA_SSM: list = []           # [class or None] once the import was tried


def _load_mamba_ssm():
    """``mamba_ssm.Mamba`` if the optional GPU package imports, else None (tried once).

    Any exception counts as unavailable: on CPU machines the package may install but fail
    to import its compiled extension (``No module named 'selective_scan_cuda'``).
    """
    if not _MAMBA_SSM:
        try:
            from mamba_ssm import Mamba  # optional GPU extra: imported only when asked for
        except Exception:  # noqa: BLE001 - optional extra, any failure means "not usable"
            Mamba = None
        _MAMBA_SSM.append(Mamba)
    return _MAMBA_SSM[0]


def mamba_ssm_available() -> bool:
    """Whether mamba-ssm's CUDA kernels can be used (the package imports)."""
    return _load_mamba_ssm() is not None


def _on_kernel_device(x: torch.Tensor) -> bool:
    """Whether mamba-ssm's kernels accept ``x`` (CUDA, float32/float16/bfloat16)."""
    return x.is_cuda and x.dtype in _KERNEL_DTYPES


def _positive_int(name: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")
    return value


def _conditioning(cond: torch.Tensor, z: torch.Tensor, d_cond: int) -> torch.Tensor:
    """(B, d_cond) or (B, L, d_cond) -> broadcastable against z (B, L, d)."""
    if cond.shape[-1] != d_cond:
        raise InputError(f"cond must end in d_cond = {d_cond}, got shape {tuple(cond.shape)}")
    if cond.dim() == 2:
        return cond.unsqueeze(1)
    if cond.dim() == 3 and cond.shape[1] in (1, z.shape[1]):
        return cond
    raise InputError(f"cond must be (B, d_cond) or (B, L, d_cond) with L = {z.shape[1]}, "
                     f"got shape {tuple(cond.shape)}")


def _check_latent(z: torch.Tensor, d_model: int, dims: int) -> None:
    if z.dim() != dims or z.shape[-1] != d_model:
        want = "(B, L, d_model)" if dims == 3 else "(B, d_model)"
        raise InputError(f"z must be {want} with d_model = {d_model}, got shape {tuple(z.shape)}")


def _split_bundle(delta: torch.Tensor, bundle: int, out_dim: int) -> torch.Tensor:
    """(..., bundle * out_dim) -> (..., bundle, out_dim), or unchanged when bundle = 1."""
    return delta if bundle == 1 else delta.unflatten(-1, (bundle, out_dim))


class FiLM(nn.Module):
    r"""Feature-wise linear modulation by a conditioning vector.

    .. math:: h \leftarrow (1 + \gamma(c)) \odot h + \beta(c), \qquad
              [\gamma, \beta] = W c + b,

    with :math:`W, b` initialised to zero, so the layer starts as the identity.

    Parameters
    ----------
    d_cond : int
        Size of the conditioning vector :math:`c`.
    d_model : int
        Size of the modulated features :math:`h`.
    """

    def __init__(self, d_cond: int, d_model: int):
        super().__init__()
        self.d_cond = _positive_int("d_cond", d_cond)
        self.d_model = _positive_int("d_model", d_model)
        self.proj = nn.Linear(d_cond, 2 * d_model)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """h (..., d_model), cond (..., d_cond) broadcastable against h -> (..., d_model)."""
        gamma, beta = self.proj(cond).chunk(2, dim=-1)
        return (1 + gamma) * h + beta

    def __repr__(self) -> str:
        return f"FiLM(d_cond={self.d_cond} -> 2x{self.d_model})"


class _MambaLayer(ResidualBlock):
    r"""mambapy's pre-norm residual block, :math:`h + \mathrm{Mixer}(\mathrm{RMSNorm}(h))`, with
    an optional mamba-ssm kernel path that shares the mixer's parameters."""

    def forward(self, x: torch.Tensor, kernel_class=None) -> torch.Tensor:
        """One block; with ``kernel_class`` (``mamba_ssm.Mamba``) through the fused kernels."""
        h = self.norm(x)
        return x + (self._kernel_mixer(kernel_class)(h) if kernel_class is not None else self.mixer(h))

    def step(self, x: torch.Tensor, cache):
        """mambapy's recurrent step with the depthwise causal convolution of the last
        ``d_conv`` inputs written as a weighted sum (``torch.conv1d`` on a (B, ED, d_conv)
        window cost ~0.6 ms a call on the CPU, most of a rollout step); same arithmetic."""
        mixer = self.mixer
        h, inputs = cache
        xz = mixer.in_proj(self.norm(x))
        xb, z = xz.chunk(2, dim=1)
        window = torch.cat([inputs, xb.unsqueeze(2)], dim=2)                  # (B, ED, d_conv)
        #: conv[b, e] = sum_k w[e, 0, k] window[b, e, k] + bias[e]
        conv = (window * mixer.conv1d.weight[:, 0, :]).sum(dim=-1)
        if mixer.conv1d.bias is not None:
            conv = conv + mixer.conv1d.bias
        y, h = mixer.ssm_step(nn.functional.silu(conv), h)
        out = mixer.out_proj(y * nn.functional.silu(z))
        return x + out, (h, window[:, :, 1:])

    def _kernel_mixer(self, cls) -> nn.Module:
        """A ``mamba_ssm.Mamba`` whose parameters *are* this block's mixer parameters.

        Built once, kept outside the module tree (so it adds nothing to ``state_dict`` or
        ``parameters()``), and re-pointed at the mixer's current submodules/parameters on
        every call, so ``.to()``, ``load_state_dict`` and optimiser updates apply to both.
        """
        kernel = self.__dict__.get("_kernel")
        if kernel is None:
            c = self.mixer.config
            kernel = cls(d_model=c.d_model, d_state=c.d_state, d_conv=c.d_conv, expand=c.expand_factor,
                         dt_rank=c.dt_rank, conv_bias=c.conv_bias, bias=c.bias)
            self.__dict__["_kernel"] = kernel
        for name in ("in_proj", "conv1d", "x_proj", "dt_proj", "out_proj"):
            kernel._modules[name] = getattr(self.mixer, name)
        kernel._parameters["A_log"] = self.mixer.A_log
        kernel._parameters["D"] = self.mixer.D
        return kernel


class MambaDynamics(nn.Module):
    r"""Stack of FiLM-conditioned Mamba blocks mapping latent states to residual updates.

    .. math::

        h^{(0)} = z, \quad
        h^{(i)} = \mathrm{FiLM}_i\big(h^{(i-1)} + \mathrm{Mamba}_i(\mathrm{RMSNorm}(h^{(i-1)})),
                  \, c\big), \quad
        \Delta = W_\text{head}\,\mathrm{RMSNorm}(h^{(n)}) + b_\text{head}.

    Parameters
    ----------
    d_model : int
        Latent size :math:`d` of :math:`z` (the Mamba model width).
    d_cond : int
        Size of the conditioning vector :math:`c`.
    n_layers : int
        Number of Mamba blocks (each followed by a FiLM layer).
    d_state : int
        SSM state size :math:`N` per channel.
    d_conv : int
        Width of the causal depthwise convolution.
    expand : int
        Inner width factor (:math:`d_\text{inner} = \text{expand}\cdot d`).
    backend : {"auto", "mambapy", "mamba_ssm"}
        ``"auto"``: mamba-ssm's fused CUDA kernels for the parallel forward when the
        package imports *and* the input is on CUDA in float32/16/bf16, else mambapy;
        ``"mambapy"``: always the pure-PyTorch path; ``"mamba_ssm"``: require the kernels
        (error otherwise). :meth:`step` always runs mambapy's recurrence (any device).
    out_dim : int, optional
        Size of each update :math:`\Delta_j` (default ``d_model``).
    bundle : int
        Temporal bundling :math:`k`: updates per time step.
    dt_rank : int or "auto"
        Rank of the :math:`\Delta t` projection (``ceil(d_model / 16)`` for "auto").
    norm_eps : float
        RMSNorm epsilon.

    Shapes
    ------
    ``forward``: z (B, L, d_model), cond (B, d_cond) or (B, L, d_cond) ->
    (B, L, out_dim) for ``bundle = 1``, (B, L, bundle, out_dim) otherwise.
    ``step``: z_t (B, d_model), cond (B, d_cond) -> (B, out_dim) or (B, bundle, out_dim).

    Notes
    -----
    mambapy evaluates :math:`A = -\exp(A_\log)` and :math:`D` in float32 (as mamba-ssm
    does), also in a float64 model; forward and step use the same values, so they still
    agree to float64 round-off.
    """

    def __init__(self, d_model: int, d_cond: int, n_layers: int = 2, d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, backend: str = "auto", *, out_dim: int | None = None, bundle: int = 1,
                 dt_rank: int | str = "auto", norm_eps: float = 1e-5):
        super().__init__()
        self.d_model = _positive_int("d_model", d_model)
        self.d_cond = _positive_int("d_cond", d_cond)
        self.n_layers = _positive_int("n_layers", n_layers)
        self.out_dim = _positive_int("out_dim", d_model if out_dim is None else out_dim)
        self.bundle = _positive_int("bundle", bundle)
        if backend not in _BACKENDS:
            raise InputError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if dt_rank != "auto":
            _positive_int("dt_rank", dt_rank)
        self.backend = backend
        self.config = MambaConfig(d_model=d_model, n_layers=n_layers, dt_rank=dt_rank,
                                  d_state=_positive_int("d_state", d_state),
                                  expand_factor=_positive_int("expand", expand),
                                  d_conv=_positive_int("d_conv", d_conv), rms_norm_eps=norm_eps)
        self.layers = nn.ModuleList(_MambaLayer(self.config) for _ in range(n_layers))
        self.films = nn.ModuleList(FiLM(d_cond, d_model) for _ in range(n_layers))
        self.norm_f = RMSNorm(d_model, norm_eps)
        self.head = nn.Linear(d_model, self.bundle * self.out_dim)
        nn.init.zeros_(self.head.bias)

    # -- backend -----------------------------------------------------------------------
    #: Where the fused kernels come from: ``kernel_class()`` is ``mamba_ssm.Mamba`` or None,
    #: ``kernel_accepts(x)`` says whether they take ``x``. Class attributes, so that another
    #: kernel package (or a CPU stand-in in the tests) can be substituted.
    kernel_class = staticmethod(_load_mamba_ssm)
    kernel_accepts = staticmethod(_on_kernel_device)

    def _kernels_for(self, x: torch.Tensor):
        """The kernel class to run ``x`` with, or None for mambapy's path."""
        if self.backend == "mambapy":
            return None
        cls = self.kernel_class()
        usable = self.kernel_accepts(x) and cls is not None
        if self.backend == "mamba_ssm" and not usable:
            raise RuntimeError("backend='mamba_ssm' needs the mamba_ssm package (importable) and a "
                               f"CUDA float32/float16/bfloat16 input; got {x.device}, {x.dtype}, "
                               f"mamba_ssm importable: {cls is not None}")
        return cls if usable else None

    # -- parallel (training) -------------------------------------------------------------
    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Updates for every time step of a sequence (parallel scan over L).

        Parameters
        ----------
        z : torch.Tensor
            (B, L, d_model) latent states :math:`z_0 \\dots z_{L-1}`.
        cond : torch.Tensor
            (B, d_cond), or (B, L, d_cond) for time-dependent conditioning.

        Returns
        -------
        torch.Tensor
            (B, L, out_dim), or (B, L, bundle, out_dim) with bundling: the update at
            position t depends on :math:`z_{\\le t}` only (causal).
        """
        _check_latent(z, self.d_model, 3)
        c = _conditioning(cond, z, self.d_cond)
        kernel_class = self._kernels_for(z)
        h = z
        for layer, film in zip(self.layers, self.films):
            h = film(layer(h, kernel_class), c)
        return _split_bundle(self.head(self.norm_f(h)), self.bundle, self.out_dim)

    # -- recurrent (rollout) -------------------------------------------------------------
    def init_cache(self, batch_size: int, device=None, dtype=None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Zero recurrent state, one ``(h, conv_inputs)`` per layer.

        ``h`` (B, d_inner, d_state) is the SSM state, ``conv_inputs`` (B, d_inner, d_conv - 1)
        the last inputs of the causal convolution. Zeros are exactly the state the parallel
        forward starts from. ``device``/``dtype`` default to the parameters'.
        """
        p = self.head.weight
        device = p.device if device is None else device
        dtype = p.dtype if dtype is None else dtype
        c = self.config
        return [(torch.zeros(batch_size, c.d_inner, c.d_state, device=device, dtype=dtype),
                 torch.zeros(batch_size, c.d_inner, c.d_conv - 1, device=device, dtype=dtype))
                for _ in range(self.n_layers)]

    def step(self, z_t: torch.Tensor, cond: torch.Tensor, cache: list) -> tuple[torch.Tensor, list]:
        """One recurrent step: the update for :math:`z_t` given the state of all earlier steps.

        Parameters
        ----------
        z_t : torch.Tensor
            (B, d_model) latent state at the current step.
        cond : torch.Tensor
            (B, d_cond) conditioning at the current step.
        cache : list
            From :meth:`init_cache` or the previous :meth:`step`; not modified.

        Returns
        -------
        delta_t : torch.Tensor
            (B, out_dim), or (B, bundle, out_dim) with bundling.
        cache : list
            The new recurrent state (a new list).
        """
        _check_latent(z_t, self.d_model, 2)
        if cond.dim() != 2 or cond.shape[-1] != self.d_cond:
            raise InputError(f"cond must be (B, d_cond) with d_cond = {self.d_cond}, got {tuple(cond.shape)}")
        if len(cache) != self.n_layers:
            raise InputError(f"cache has {len(cache)} layers, the model {self.n_layers}")
        h = z_t
        new_cache = []
        for layer, film, layer_cache in zip(self.layers, self.films, cache):
            h, layer_cache = layer.step(h, layer_cache)
            h = film(h, cond)
            new_cache.append(layer_cache)
        return _split_bundle(self.head(self.norm_f(h)), self.bundle, self.out_dim), new_cache

    def __repr__(self) -> str:
        c = self.config
        return module_summary(
            self, "MambaDynamics",
            f"z {self.d_model} + cond {self.d_cond} -> delta {self.bundle}x{self.out_dim}",
            f"{self.n_layers} layers, d_state={c.d_state}, d_conv={c.d_conv}, "
            f"expand={c.expand_factor}, dt_rank={c.dt_rank}, backend={self.backend!r}")


class MLPDynamics(nn.Module):
    r"""Memory-less ablation of :class:`MambaDynamics`: an MLP per time step.

    .. math:: \Delta_t = \mathrm{MLP}([z_t, c_t]),

    ``n_layers`` hidden layers of width ``hidden`` with SiLU, then a linear output of
    ``bundle * out_dim``. Same interface as :class:`MambaDynamics`; :meth:`init_cache`
    returns None and :meth:`step` carries nothing.

    Parameters
    ----------
    d_model, d_cond : int
        Latent and conditioning sizes.
    hidden : int
        Hidden width.
    n_layers : int
        Number of hidden layers.
    bundle : int
        Updates per time step.
    out_dim : int, optional
        Size of each update (default ``d_model``).

    Shapes
    ------
    As :class:`MambaDynamics`.
    """

    def __init__(self, d_model: int, d_cond: int, hidden: int = 128, n_layers: int = 2, bundle: int = 1,
                 *, out_dim: int | None = None):
        super().__init__()
        self.d_model = _positive_int("d_model", d_model)
        self.d_cond = _positive_int("d_cond", d_cond)
        self.hidden = _positive_int("hidden", hidden)
        self.n_layers = _positive_int("n_layers", n_layers)
        self.bundle = _positive_int("bundle", bundle)
        self.out_dim = _positive_int("out_dim", d_model if out_dim is None else out_dim)
        layers: list[nn.Module] = []
        width = d_model + d_cond
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, self.bundle * self.out_dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """z (B, L, d_model), cond (B, d_cond) or (B, L, d_cond) -> (B, L[, bundle], out_dim)."""
        _check_latent(z, self.d_model, 3)
        c = _conditioning(cond, z, self.d_cond).expand(-1, z.shape[1], -1)
        return _split_bundle(self.mlp(torch.cat([z, c], dim=-1)), self.bundle, self.out_dim)

    def init_cache(self, batch_size: int, device=None, dtype=None) -> None:
        """No recurrent state."""
        return None

    def step(self, z_t: torch.Tensor, cond: torch.Tensor, cache=None) -> tuple[torch.Tensor, None]:
        """z_t (B, d_model), cond (B, d_cond) -> ((B[, bundle], out_dim), None)."""
        _check_latent(z_t, self.d_model, 2)
        if cond.dim() != 2 or cond.shape[-1] != self.d_cond:
            raise InputError(f"cond must be (B, d_cond) with d_cond = {self.d_cond}, got {tuple(cond.shape)}")
        return _split_bundle(self.mlp(torch.cat([z_t, cond], dim=-1)), self.bundle, self.out_dim), None

    def __repr__(self) -> str:
        return module_summary(
            self, "MLPDynamics",
            f"z {self.d_model} + cond {self.d_cond} -> delta {self.bundle}x{self.out_dim}",
            f"{self.n_layers}x{self.hidden} SiLU")


_KINDS = {"mamba": MambaDynamics, "mlp": MLPDynamics}


def make_dynamics(kind: str, d_model: int, d_cond: int, **kwargs) -> MambaDynamics | MLPDynamics:
    """Build a dynamics model by name.

    Parameters
    ----------
    kind : {"mamba", "mlp"}
        :class:`MambaDynamics` or its ablation :class:`MLPDynamics`.
    d_model, d_cond : int
        Latent and conditioning sizes.
    **kwargs
        Passed to the class (``n_layers``, ``bundle``, ``out_dim``, ``d_state``, ``hidden``, ...).
    """
    try:
        cls = _KINDS[kind]
    except KeyError:
        raise InputError(f"unknown dynamics kind {kind!r} (known: {', '.join(_KINDS)})") from None
    return cls(d_model, d_cond, **kwargs)
