"""Plots of absorption spectra (``rtml spectrum --plot``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml._atomic import atomic_write
from rtml.tddft._spectrum import Spectrum
from rtml.units import HARTREE_EV

__all__ = ["plot_spectrum"]


def plot_spectrum(spectrum: Spectrum, peaks: np.ndarray, path, title: str) -> Path:
    """Write a PNG (or any format matplotlib infers from the suffix) of S(ω) in 1/eV against
    the photon energy in eV, with a dotted line at each peak, atomically.

    Args:
        spectrum: the dipole strength function (:func:`absorption_spectrum`).
        peaks: (n_peaks,) peak frequencies, Hartree (:func:`find_peaks`).
        path: destination file.
        title: plot title.

    Returns:
        The destination as a :class:`pathlib.Path`.
    """
    # matplotlib is imported here: it is heavy and only this optional output needs it
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(spectrum.omega_ev, spectrum.strength * 1 / HARTREE_EV, lw=1.2)
    for w in peaks:
        ax.axvline(w * HARTREE_EV, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("photon energy (eV)")
    ax.set_ylabel("dipole strength S(ω) (1/eV)")
    ax.set_title(title)
    fig.tight_layout()
    path = atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120))
    plt.close(fig)
    return path
