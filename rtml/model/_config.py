"""Hyper-parameters of the rtml model (:class:`ModelConfig`) and the command-line options
derived from them.

Kept apart from the network so that ``rtml train --help`` reads them without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from rtml._config_options import add_config_options, config_options
from rtml._errors import InputError

__all__ = ["ModelConfig", "LEARNED", "add_model_options", "model_options"]

#: What the network learns: the exchange-correlation change, the exchange-correlation change
#: beyond its linear response at the ground state, or all of ΔG.
LEARNED = ("xc", "xc-nonlinear", "two-electron")


@dataclass
class ModelConfig:
    """Hyper-parameters of :class:`RTMLModel` (stored in checkpoints).

    A field whose metadata has a ``help`` is a command-line option of ``rtml train``
    (:func:`add_model_options`), with the metadata's ``choices`` when it has them.
    """

    #: channels on atoms and atom pairs (default: enough for the 6-31G ladder, see below)
    irreps_hidden: str | None = None
    #: per-atom output of the e3nn geometry encoder (its invariants condition the gates)
    irreps_geometry: str = "16x0e+8x1o+4x2e"
    #: equivariant message-passing layers between the tokens
    n_interactions: int = 2
    #: what the network learns (the rest of ΔG is exact)
    learned: str = dc_field(default="xc-nonlinear", metadata={
        "choices": LEARNED,
        "help": "xc-nonlinear (default): Coulomb and exact exchange of ΔP and the XC kernel's "
                "linear response at the ground state exact (LR-TDDFT), the network learns the "
                "XC change beyond it; xc: only Coulomb and exchange exact, the network learns "
                "the whole XC change; two-electron: the network learns all of ΔG"})
    #: gate dynamics: "mamba" (memory along time) or "mlp" (current frame only, the ablation)
    dynamics: str = "mamba"
    d_model: int = dc_field(default=32, metadata={"help": "width of the gate dynamics (Mamba/MLP)"})
    #: Mamba blocks (or MLP layers) of the gate dynamics
    n_layers: int = 2
    #: SSM state size N per Mamba channel
    d_state: int = 8
    #: highest angular momentum of the basis shells the codec handles (1: s and p)
    lmax_basis: int = 1
    #: largest nuclear charge Z (elements enter one-hot, Z in 1..n_elements)
    n_elements: int = 20
    #: radial basis functions of the interatomic distance
    n_radial: int = 8
    #: cutoff of the radial basis, bohr
    r_cut_bohr: float = 12.0
    #: hidden width of the radial networks that weight the tensor products
    radial_hidden: int = 32
    #: corrector passes of the exact step (one network call each, after the predictor's):
    #: 2 all but converges the implicit trapezoid that the RT engine solves (1, the plain
    #: predictor-corrector of checkpoints without this key, drifts in phase: lr-tddft's
    #: e@1000 after an H2O kick of 1e-3 at dt 0.2 is 1.7e-2 with 1, 2.6e-4 with 2 or more)
    corrector_iterations: int = dc_field(default=2, metadata={
        "help": "corrector passes of each exact step (default 2; 1 is the plain "
                "predictor-corrector of earlier models)"})

    @property
    def real_response(self) -> bool:
        """The network maps Re ΔP' to a real symmetric XC change (``learned`` "xc" or
        "xc-nonlinear"); else complex ΔP' to all of ΔG'."""
        return self.learned != "two-electron"

    @property
    def exact_xc_kernel(self) -> bool:
        """The XC kernel's linear response at the ground state is part of the exact step."""
        return self.learned == "xc-nonlinear"

    @property
    def residual_gates(self) -> bool:
        r"""The gated channels are the learned part itself, :math:`(\gamma\,a)\odot h` with
        :math:`a_c` the size of channel c, instead of :math:`(1+\gamma)\odot h`
        (``learned="xc-nonlinear"``): nothing is added to the exact linear response to
        first order in ΔP', nor at all with the gates closed (γ = 0, as initialised)."""
        return self.exact_xc_kernel

    def __post_init__(self):
        if self.dynamics not in ("mamba", "mlp"):
            raise InputError(f"dynamics must be 'mamba' or 'mlp', got '{self.dynamics}'")
        if self.learned not in LEARNED:
            raise InputError(f"learned must be one of {', '.join(LEARNED)}, got '{self.learned}'")
        if self.irreps_hidden is None:
            # enough channels per irrep for every atom and atom pair of the 6-31G ladder
            # (C-C pairs: 13 real 0e, 12 real 1o; twice that for complex ΔP), so the codec is
            # injective on what the network reads (checked per molecule in forward)
            self.irreps_hidden = ("16x0e+12x1o+4x1e+4x2e" if self.real_response
                                  else "32x0e+24x1o+8x1e+8x2e")
        if self.n_interactions < 0:
            raise InputError(f"n_interactions must be >= 0, got {self.n_interactions}")
        if isinstance(self.corrector_iterations, bool) or not isinstance(self.corrector_iterations, int) \
                or self.corrector_iterations < 1:
            raise InputError(f"corrector_iterations must be an integer >= 1, got "
                             f"{self.corrector_iterations!r}")


#: What a checkpoint written before a field existed meant by it (its value then).
CHECKPOINT_DEFAULTS = {"corrector_iterations": 1}


def model_config_from_checkpoint(config: dict) -> ModelConfig:
    """The :class:`ModelConfig` of a stored model config; a field the checkpoint predates
    takes the value the model was trained with (:data:`CHECKPOINT_DEFAULTS`)."""
    return ModelConfig(**{**CHECKPOINT_DEFAULTS, **config})


def add_model_options(parser) -> None:
    """Add ``--<field-name>`` (``_`` written ``-``) to an :class:`argparse.ArgumentParser`
    for every :class:`ModelConfig` field that is a command-line option: the field's default
    and type, its metadata's ``help`` and ``choices`` (see :mod:`rtml._config_options`)."""
    add_config_options(parser, ModelConfig)


def model_options(args) -> dict:
    """``{field name: value}`` of the options :func:`add_model_options` added, from the parsed
    ``args``, in field order: keyword arguments of :class:`ModelConfig`."""
    return config_options(args, ModelConfig)
