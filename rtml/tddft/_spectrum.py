r"""Absorption spectra from delta-kick trajectories, and a peak finder.

After a kick :math:`\mathbf E(t) = \kappa\,\delta(t)\,\mathbf e`, the induced dipole gives the
dynamic polarisability along the kick,

.. math::

    \alpha_{ee}(\omega) = \frac1\kappa\int_0^T \mathbf e\cdot\delta\boldsymbol\mu(t)\,
        e^{i\omega t}\,e^{-\gamma t}\,dt,
    \qquad \delta\boldsymbol\mu(t) = \boldsymbol\mu(t) - \boldsymbol\mu(0),

(exponential damping :math:`\gamma` = Lorentzian half width at half maximum, zero padding for
a fine frequency grid) and the dipole strength function

.. math:: S_e(\omega) = \frac{2\omega}{\pi}\,\mathrm{Im}\,\alpha_{ee}(\omega),

whose integral over a peak is :math:`2\omega_n|\langle 0|\mathbf e\cdot\mathbf r|n\rangle|^2`;
the average over x, y and z kicks integrates to the oscillator strengths, which sum to N
(Thomas-Reiche-Kuhn). Frequencies are angular frequencies in Hartree (:math:`\hbar = 1`)
and S is per Hartree; what a user reads (``rtml spectrum``, every plot) is per eV of photon
energy :math:`E = \hbar\omega`: :math:`S(E) = S(\omega)/27.211\ldots` (eV per Hartree), so
that :math:`\int S(E)\,dE = \int S(\omega)\,d\omega` (:attr:`Spectrum.strength_per_ev`).
The kick leaves the t=0 dipole unchanged to first order in :math:`\kappa`, so
:math:`\boldsymbol\mu(0)` is the ground-state dipole.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.signal

from rtml._errors import InputError
from rtml.units import HARTREE_EV

__all__ = ["Spectrum", "absorption_spectrum", "find_peaks", "default_damping"]


@dataclass
class Spectrum:
    """A dipole strength function on a frequency grid.

    Attributes
    ----------
    omega : (nw,) angular frequencies, Hartree
    strength : (nw,) S(omega), 1/Hartree
    polarizability : (nw,) complex alpha_ee(omega), a.u.
    damping : float, Hartree (HWHM of the Lorentzian broadening)
    """

    omega: np.ndarray
    strength: np.ndarray
    polarizability: np.ndarray
    damping: float

    @property
    def omega_ev(self) -> np.ndarray:
        """(nw,) photon energies E = ħω, eV."""
        return self.omega * HARTREE_EV

    @property
    def strength_per_ev(self) -> np.ndarray:
        """(nw,) S(E) = S(ω) / (eV per Hartree), 1/eV: the unit of every printed or plotted
        spectrum (same integral over a peak in either unit)."""
        return self.strength / HARTREE_EV


def default_damping(duration: float) -> float:
    """Damping giving e^-4 attenuation at the end of the signal: gamma = 4 / T (Hartree)."""
    return 4.0 / duration


def absorption_spectrum(time: np.ndarray, dipole: np.ndarray, kick_strength: float,
                        polarization, damping: float | None = None,
                        omega_max: float = 2.0, resolution: float = 2e-4) -> Spectrum:
    """Dipole strength function S(omega) of a kick trajectory (see module docstring).

    Args:
        time: (nt,) uniformly spaced times, a.u., starting at the kick (t=0).
        dipole: (nt, 3) total dipole, e*bohr.
        kick_strength: kappa, a.u.
        polarization: (3,) kick direction (normalised here).
        damping: Lorentzian HWHM gamma in Hartree; default 4/T.
        omega_max: highest frequency returned, Hartree.
        resolution: target frequency spacing of the zero-padded grid, Hartree.

    Returns:
        :class:`Spectrum` with frequencies in (0, omega_max].
    """
    time = np.asarray(time, dtype=float)
    dipole = np.asarray(dipole, dtype=float)
    if time.ndim != 1 or len(time) < 4 or dipole.shape != (len(time), 3):
        raise InputError("spectrum needs at least 4 frames of time (nt,) and dipole (nt, 3)")
    if kick_strength == 0:
        raise InputError("spectrum needs a kick trajectory with non-zero kick strength")
    steps = np.diff(time)
    dt = steps[0]
    if dt <= 0 or np.abs(steps - dt).max() > 1e-8 * max(1.0, dt):
        raise InputError("spectrum needs uniformly spaced, increasing times")
    e = np.asarray(polarization, dtype=float)
    e = e / np.linalg.norm(e)
    duration = time[-1] - time[0]
    gamma = default_damping(duration) if damping is None else float(damping)
    signal = (dipole - dipole[0]) @ e * np.exp(-gamma * (time - time[0]))
    # trapezoid weights: the signal starts at the kick
    signal[0] *= 0.5
    signal[-1] *= 0.5
    n_fft = int(2 ** np.ceil(np.log2(max(2 * np.pi / (dt * resolution), 2 * len(signal)))))
    #: alpha(w_k) = dt/kappa * sum_n x_n exp(+i w_k t_n); numpy's rfft uses exp(-i ...)
    alpha = dt / kick_strength * np.conj(np.fft.rfft(signal, n=n_fft))
    omega = 2.0 * np.pi * np.fft.rfftfreq(n_fft, d=dt)
    keep = (omega > 0) & (omega <= omega_max)
    omega, alpha = omega[keep], alpha[keep]
    return Spectrum(omega=omega, strength=2.0 * omega / np.pi * alpha.imag,
                    polarizability=alpha, damping=gamma)


def find_peaks(spectrum: Spectrum, min_relative_height: float = 0.01,
               min_prominence: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions and heights of S(omega), refined by parabolic interpolation.

    Args:
        min_relative_height: keep peaks at least this fraction of the highest one.
        min_prominence: and at least this prominence, as a fraction of the highest peak.

    Returns:
        (omega_peaks in Hartree, heights), ascending in frequency.
    """
    s = spectrum.strength
    top = s.max()
    if not top > 0:
        return np.zeros(0), np.zeros(0)
    idx, _ = scipy.signal.find_peaks(s, height=min_relative_height * top,
                                     prominence=min_prominence * top)
    idx = idx[(idx > 0) & (idx < len(s) - 1)]
    y0, y1, y2 = s[idx - 1], s[idx], s[idx + 1]
    denom = y0 - 2 * y1 + y2
    shift = np.where(denom != 0, 0.5 * (y0 - y2) / np.where(denom != 0, denom, 1.0), 0.0)
    step = spectrum.omega[1] - spectrum.omega[0]
    omega = spectrum.omega[idx] + shift * step
    height = y1 - 0.25 * (y0 - y2) * shift
    return omega, height
