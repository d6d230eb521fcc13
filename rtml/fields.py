r"""External electric fields for RT-TDDFT, in atomic units.

Conventions (length gauge, electrons of charge -1):

.. math::

    \hat H(t) = \hat F[P(t)] + \mathbf E(t)\cdot\hat{\mathbf r},
    \qquad \hat{\mathbf r} = \mathbf r - \mathbf O,

so the field couples through the AO dipole-integral matrices
:math:`D^k_{\mu\nu} = \langle\mu|r_k - O_k|\nu\rangle` (PySCF ``int1e_r``) with the origin
:math:`\mathbf O` at the centre of nuclear charge, and the molecular dipole is
:math:`\boldsymbol\mu = -\mathrm{Tr}(P\mathbf D) + \sum_A Z_A(\mathbf R_A - \mathbf O)`.
The interaction energy is :math:`-\boldsymbol\mu\cdot\mathbf E`; a field along +z pushes
electrons towards -z, so the induced dipole :math:`\delta\mu_z` starts positive.

Field types and their spec strings (numbers in a.u., POL = ``x|y|z|ex,ey,ez``, normalised):

``kick:KAPPA:POL``
    Delta kick :math:`\mathbf E(t) = \kappa\,\delta(t)\,\mathbf e`, applied at t=0 as the
    exact unitary :math:`P \to U P U^\dagger`, :math:`U = \exp(-i\kappa\,\mathbf e\cdot\mathbf D)`
    (in the orthonormal basis) on the ground state, before the first saved frame. The stored
    field values are zero at every saved time.
``gaussian:E0:OMEGA:T0:SIGMA:POL``
    :math:`\mathbf E(t) = E_0\,\exp(-(t-t_0)^2/2\sigma^2)\cos(\omega t)\,\mathbf e`
    (carrier phase referenced to t=0, not to t0).
``resonant:E0:OMEGA:DURATION:POL``
    :math:`\mathbf E(t) = E_0 \sin(\omega t)\,\mathbf e` for :math:`0 \le t \le T`, zero after.
    OMEGA is a number, or ``S<n>`` for the n-th (1-based, ascending energy) excitation of a
    full (not Tamm-Dancoff) LR-TDDFT calculation on the same ground state, or ``B<n>`` for
    its n-th brightest excitation (descending oscillator strength). With such an OMEGA, POL
    may be ``auto``: the direction of that state's transition dipole (sign fixed so its
    largest component is positive). Both are resolved by the engine with
    :func:`resolve_field`.
``none``
    No field (field-free propagation of the ground state).

Conventions, summarised: sign as above (energy :math:`-\boldsymbol\mu\cdot\mathbf E`);
a kick is the exact unitary at t = 0 (strength :math:`\kappa` in a.u. of field x time),
not a short pulse; the Gaussian carrier is :math:`\cos\omega t` with its phase referenced
to t = 0; the resonant drive starts at t = 0 with zero field; dipoles and the dipole
operator are measured from the centre of nuclear charge (for a neutral molecule the origin
changes neither the dynamics nor the dipole).

Mapping onto NWChem's ``rt_tddft`` keywords (engine ``nwchem``,
:func:`rtml.tddft.nwchem.field_blocks`). NWChem couples :math:`-\boldsymbol\mu\cdot\mathbf E`
as we do, so ``max`` keeps our sign; it takes only ``polarization x|y|z``, so a general
**e** becomes one NWChem field per non-zero component with ``max`` :math:`E_0 e_k`, all
exciting the same geometry (NWChem sums them):

=====================  ======================================================================
rtml                   NWChem
=====================  ======================================================================
``gaussian``           ``type gaussian``, ``frequency OMEGA``, ``center T0``, ``width SIGMA``,
                       ``max E0*e_k``, ``phase pi/2`` (NWChem: :math:`\sin(\omega t+\phi)`
                       times :math:`\exp(-(t-t_0)^2/2\sigma^2)`)
``resonant``           ``type cw``, ``frequency OMEGA``, ``phase 0``, ``max E0*e_k``, removed
                       from the restart segments after T (T must be a multiple of dt)
``kick``               no NWChem field: NWChem's ``type delta`` is a rectangle of height
                       ``max`` lasting one step (strength and splitting error depend on dt);
                       the engine applies our unitary to NWChem's ground-state density
                       through its restart file
``none``               no field
=====================  ======================================================================

Time quadrature differs: rtml's Magnus-2 takes the field at the step midpoint, NWChem's
(E(t) + E(t+dt))/2 (an O(dt^2) difference, 4e-6 au in the induced dipole of H2O RT-TDHF
for a 1e-3 au Gaussian pulse over 100 au at dt = 0.2).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace

import numpy as np

from rtml._errors import InputError

__all__ = [
    "Field",
    "parse_field",
    "field_from_json",
    "resolve_field",
    "parse_polarization",
]

_AXES = {"x": (1.0, 0.0, 0.0), "y": (0.0, 1.0, 0.0), "z": (0.0, 0.0, 1.0)}
_KINDS = ("none", "kick", "gaussian", "resonant")
_N_PARAMS = {"none": 0, "kick": 2, "gaussian": 5, "resonant": 4}
_STATE_RE = re.compile(r"^([sSbB])(\d+)$")


def parse_polarization(text: str) -> tuple[float, float, float]:
    """Parse ``x``, ``y``, ``z`` or ``ex,ey,ez`` into a unit vector."""
    text = text.strip().lower()
    if text in _AXES:
        return _AXES[text]
    parts = text.split(",")
    if len(parts) != 3:
        raise InputError(f"polarisation '{text}' must be x, y, z or three numbers ex,ey,ez")
    try:
        vec = np.array([float(p) for p in parts])
    except ValueError:
        raise InputError(f"polarisation '{text}' must be x, y, z or three numbers ex,ey,ez") from None
    norm = float(np.linalg.norm(vec))
    if not np.all(np.isfinite(vec)) or norm == 0.0:
        raise InputError(f"polarisation '{text}' must be a finite non-zero vector")
    if abs(norm - 1.0) > 1e-14:  # leave unit vectors bit-exact so specs round-trip
        vec = vec / norm
    return tuple(float(v) for v in vec)


def _format_number(x: float) -> str:
    return repr(float(x))


def _format_polarization(pol: tuple[float, float, float] | None) -> str:
    if pol is None:
        return "auto"
    for name, axis in _AXES.items():
        if tuple(pol) == axis:
            return name
    return ",".join(_format_number(v) for v in pol)


@dataclass(frozen=True)
class Field:
    """An external electric field, E(t) = amplitude * envelope(t) * carrier(t) * e.

    Attributes
    ----------
    kind : str
        ``"none"``, ``"kick"``, ``"gaussian"`` or ``"resonant"``.
    amplitude : float
        Kick strength kappa (a.u. of field x time) for a kick, else the peak field E0 (a.u.).
    polarization : tuple of 3 floats, or None
        Unit vector e; None means ``auto`` (along the transition dipole of the resonant
        state, see :func:`resolve_field`).
    omega : float or None
        Carrier angular frequency (Hartree). None for kicks and for an unresolved resonant
        drive (see ``omega_source``).
    t0, sigma : float or None
        Centre and width (a.u. of time) of a Gaussian pulse.
    duration : float or None
        Length T (a.u. of time) of a resonant drive.
    omega_source : str or None
        ``"S<n>"`` (n-th LR-TDDFT excitation by energy) or ``"B<n>"`` (n-th brightest)
        when omega comes from LR-TDDFT.
    """

    kind: str
    amplitude: float = 0.0
    polarization: tuple[float, float, float] | None = (0.0, 0.0, 1.0)
    omega: float | None = None
    t0: float | None = None
    sigma: float | None = None
    duration: float | None = None
    omega_source: str | None = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise InputError(f"unknown field type '{self.kind}'; expected one of {', '.join(_KINDS)}")
        numbers = {"amplitude": self.amplitude, "omega": self.omega, "t0": self.t0,
                   "sigma": self.sigma, "duration": self.duration}
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                raise InputError(f"field {self.kind}: {name} must be finite, got {value}")
        if self.kind == "gaussian":
            if self.sigma is None or self.sigma <= 0:
                raise InputError(f"gaussian field: SIGMA must be > 0, got {self.sigma}")
            if self.omega is None or self.omega < 0 or self.t0 is None:
                raise InputError("gaussian field: OMEGA must be >= 0 and T0 given")
        if self.polarization is None and self.omega_source is None:
            raise InputError(f"field {self.kind}: polarisation 'auto' needs a resonant drive "
                             "at an LR-TDDFT state (OMEGA = S<n> or B<n>)")
        if self.kind == "resonant":
            if self.duration is None or self.duration <= 0:
                raise InputError(f"resonant field: DURATION must be > 0, got {self.duration}")
            if self.omega is None and self.omega_source is None:
                raise InputError("resonant field: OMEGA must be a number, S<n> or B<n>")
            if self.omega is not None and self.omega <= 0:
                raise InputError(f"resonant field: OMEGA must be > 0, got {self.omega}")

    # -- evaluation ---------------------------------------------------------------
    @property
    def is_kick(self) -> bool:
        return self.kind == "kick"

    @property
    def is_resolved(self) -> bool:
        """True when frequency and polarisation are numbers (no S<n>/B<n>/auto left)."""
        return self.polarization is not None and (self.kind != "resonant" or self.omega is not None)

    @property
    def kick_vector(self) -> np.ndarray:
        """kappa * e for a kick, zero otherwise; shape (3,)."""
        if self.kind != "kick":
            return np.zeros(3)
        return self.amplitude * np.asarray(self.polarization)

    def envelope(self, t):
        """Scalar field strength E(t) along the polarisation, for an array of times (a.u.).

        Zero at all times for kicks (the kick is applied as a unitary, not as a field).
        """
        t = np.asarray(t, dtype=float)
        if self.kind in ("none", "kick"):
            return np.zeros_like(t)
        if not self.is_resolved:
            raise InputError(f"field '{self.to_spec()}' is unresolved ({self.omega_source}); "
                             "resolve it with LR-TDDFT first")
        if self.kind == "gaussian":
            return (self.amplitude * np.exp(-((t - self.t0) ** 2) / (2.0 * self.sigma ** 2))
                    * np.cos(self.omega * t))
        # resonant drive: E0 sin(omega t) on [0, T]
        on = (t >= 0.0) & (t <= self.duration)
        return np.where(on, self.amplitude * np.sin(self.omega * t), 0.0)

    def values(self, t) -> np.ndarray:
        """E(t) as vectors: shape (*t.shape, 3), a.u."""
        return np.multiply.outer(self.envelope(t), np.asarray(self.polarization))

    # -- serialisation ------------------------------------------------------------
    def to_spec(self) -> str:
        """The short spec string (inverse of :func:`parse_field`)."""
        pol = _format_polarization(self.polarization)
        f = _format_number
        if self.kind == "none":
            return "none"
        if self.kind == "kick":
            return f"kick:{f(self.amplitude)}:{pol}"
        if self.kind == "gaussian":
            return f"gaussian:{f(self.amplitude)}:{f(self.omega)}:{f(self.t0)}:{f(self.sigma)}:{pol}"
        omega = self.omega_source if self.omega is None else f(self.omega)
        return f"resonant:{f(self.amplitude)}:{omega}:{f(self.duration)}:{pol}"

    def to_json_dict(self) -> dict:
        """A JSON-ready dict with every parameter, its units and the spec string."""
        return {
            "kind": self.kind,
            "spec": self.to_spec(),
            "amplitude": self.amplitude,
            "polarization": None if self.polarization is None else list(self.polarization),
            "omega": self.omega,
            "t0": self.t0,
            "sigma": self.sigma,
            "duration": self.duration,
            "omega_source": self.omega_source,
            "units": {"amplitude": "a.u. of field (kick: field x time)", "omega": "hartree",
                      "t0": "a.u. of time", "sigma": "a.u. of time", "duration": "a.u. of time"},
        }

    def to_json(self) -> str:
        return json.dumps(self.to_json_dict(), sort_keys=True)


def parse_field(spec: str) -> Field:
    """Parse a field spec string (see the module docstring) into a :class:`Field`.

    >>> parse_field("kick:1e-4:z").kick_vector
    array([0.    , 0.    , 0.0001])
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("empty field spec")
    parts = spec.strip().split(":")
    kind = parts[0].lower()
    if kind not in _KINDS:
        raise InputError(f"field spec '{spec}': unknown type '{parts[0]}' "
                         f"(expected kick:E0:POL, gaussian:E0:OMEGA:T0:SIGMA:POL, "
                         f"resonant:E0:OMEGA:DURATION:POL or none)")
    params = parts[1:]
    if len(params) != _N_PARAMS[kind]:
        usage = {"none": "none", "kick": "kick:E0:POL", "gaussian": "gaussian:E0:OMEGA:T0:SIGMA:POL",
                 "resonant": "resonant:E0:OMEGA:DURATION:POL"}[kind]
        raise InputError(f"field spec '{spec}': expected {usage}")
    if kind == "none":
        return Field("none")

    def number(text: str, name: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise InputError(f"field spec '{spec}': {name} '{text}' is not a number") from None
        if not math.isfinite(value):
            raise InputError(f"field spec '{spec}': {name} must be finite")
        return value

    pol = None if params[-1].strip().lower() == "auto" else parse_polarization(params[-1])
    amplitude = number(params[0], "E0")
    if kind == "kick":
        return Field("kick", amplitude, pol)
    if kind == "gaussian":
        return Field("gaussian", amplitude, pol, omega=number(params[1], "OMEGA"),
                     t0=number(params[2], "T0"), sigma=number(params[3], "SIGMA"))
    match = _STATE_RE.match(params[1].strip())
    if match:
        letter, n = match.group(1).upper(), int(match.group(2))
        if n < 1:
            raise InputError(f"field spec '{spec}': excited states are numbered from {letter}1")
        return Field("resonant", amplitude, pol, duration=number(params[2], "DURATION"),
                     omega_source=f"{letter}{n}")
    return Field("resonant", amplitude, pol, omega=number(params[1], "OMEGA"),
                 duration=number(params[2], "DURATION"))


def field_from_json(data) -> Field:
    """Rebuild a :class:`Field` from :meth:`Field.to_json_dict` output (dict or JSON string)."""
    if isinstance(data, str):
        data = json.loads(data)
    pol = data["polarization"]
    return Field(kind=data["kind"], amplitude=float(data["amplitude"]),
                 polarization=None if pol is None else tuple(float(v) for v in pol),
                 omega=data.get("omega"), t0=data.get("t0"), sigma=data.get("sigma"),
                 duration=data.get("duration"), omega_source=data.get("omega_source"))


def resolve_field(field: Field, excitations) -> Field:
    """Replace ``S<n>``/``B<n>`` frequencies and ``auto`` polarisations by LR-TDDFT values.

    Args:
        field: a :class:`Field`; resolved fields are returned unchanged.
        excitations: an object with ``energies`` (Hartree, ascending),
            ``oscillator_strengths`` and ``transition_dipoles`` (nstates, 3), such as
            :class:`rtml.tddft.Excitations`; or just the array of energies when neither
            ``B<n>`` nor ``auto`` is used.

    ``S<n>`` is the n-th state by energy, ``B<n>`` the n-th by oscillator strength; ``auto``
    points along that state's transition dipole.
    """
    if field.is_resolved or field.omega_source is None:
        return field
    energies = np.asarray(getattr(excitations, "energies", excitations), dtype=float)
    letter, n = field.omega_source[0], int(field.omega_source[1:])
    if letter == "B" or field.polarization is None:
        if not hasattr(excitations, "oscillator_strengths"):
            raise InputError(f"field '{field.to_spec()}' needs oscillator strengths and "
                             "transition dipoles from LR-TDDFT")
    if n > len(energies):
        raise InputError(f"field '{field.to_spec()}' asks for excited state {field.omega_source} "
                         f"but LR-TDDFT gave only {len(energies)} states")
    if letter == "S":
        state = n - 1
    else:  # stable sort: among equally bright (degenerate) states the lower energy first
        state = int(np.argsort(-np.asarray(excitations.oscillator_strengths), kind="stable")[n - 1])
    polarization = field.polarization
    if polarization is None:
        dipole = np.asarray(excitations.transition_dipoles[state], dtype=float)
        norm = np.linalg.norm(dipole)
        if norm < 1e-8:
            raise InputError(f"field '{field.to_spec()}': state {field.omega_source} is dark "
                             "(zero transition dipole), no 'auto' polarisation")
        dipole = dipole / norm
        dipole = dipole * np.sign(dipole[np.argmax(np.abs(dipole))])
        polarization = tuple(float(v) for v in dipole)
    return replace(field, omega=float(energies[state]), polarization=polarization)
