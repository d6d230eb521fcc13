"""Plots of absorption spectra (``rtml spectrum --plot``, the evaluation's spectrum.png), and
the figure helpers every rtml plot uses.

Every spectrum is drawn as S(E) in 1/eV against the photon energy E in eV
(:attr:`Spectrum.strength_per_ev`). A PNG written by :func:`save_figure` carries, in its
``Description`` text chunk, a JSON record of what it shows (:func:`figure_record`: each
panel's title, axis labels, legend entries and marked positions), so a script or a test can
read what a plot says without looking at it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rtml._atomic import atomic_write
from rtml.tddft._spectrum import Spectrum
from rtml.units import HARTREE_EV

__all__ = ["agg_pyplot", "draw_spectrum", "figure_record", "save_figure", "plot_spectrum"]

#: Axis labels of every spectrum plot.
SPECTRUM_XLABEL = "photon energy E (eV)"
SPECTRUM_YLABEL = "dipole strength S(E) (1/eV)"


def agg_pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (files only, no display)."""
    # matplotlib is imported here: it is heavy and only the optional plots need it; the
    # backend is chosen before pyplot is imported, which reads it on import
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_spectrum(ax, spectrum: Spectrum, **style) -> None:
    """Draw S(E) (1/eV) against E (eV) on ``ax`` and label the axes in those units."""
    ax.plot(spectrum.omega_ev, spectrum.strength_per_ev, **style)
    ax.set_xlabel(SPECTRUM_XLABEL)
    ax.set_ylabel(SPECTRUM_YLABEL)


def figure_record(fig) -> dict:
    """What a figure shows, read from the drawn artists themselves: its suptitle and, per
    panel, the title, axis labels, legend entries, texts and ``markers``: ``{gid: x}`` of
    every vertical line drawn with a ``gid`` (a marked position, such as a valid horizon)."""
    panels = []
    for ax in fig.axes:
        legend = ax.get_legend()
        markers = {line.get_gid(): float(np.asarray(line.get_xdata(), dtype=float)[0])
                   for line in ax.get_lines() if line.get_gid()}
        panels.append({"title": ax.get_title(), "xlabel": ax.get_xlabel(),
                       "ylabel": ax.get_ylabel(),
                       "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
                       "text": [t.get_text() for t in ax.texts], "markers": markers})
    return {"suptitle": fig.get_suptitle(), "panels": panels}


def save_figure(fig, path, dpi: int = 110) -> Path:
    """Write ``fig`` atomically (format from the suffix) and close it; a PNG gets
    :func:`figure_record` as JSON in its ``Description`` text chunk."""
    path = Path(path)
    metadata = ({"Description": json.dumps(figure_record(fig))}
                if path.suffix.lower() == ".png" else None)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, metadata=metadata))
    agg_pyplot().close(fig)
    return path


def plot_spectrum(spectrum: Spectrum, peaks: np.ndarray, path, title: str) -> Path:
    """Write a PNG (or any format matplotlib infers from the suffix) of S(E) in 1/eV against
    the photon energy E in eV, with a dotted line at each peak, atomically.

    Args:
        spectrum: the dipole strength function (:func:`absorption_spectrum`).
        peaks: (n_peaks,) peak frequencies, Hartree (:func:`find_peaks`).
        path: destination file.
        title: plot title.

    Returns:
        The destination as a :class:`pathlib.Path`.
    """
    fig, ax = agg_pyplot().subplots(figsize=(7, 4))
    draw_spectrum(ax, spectrum, lw=1.2)
    for w in peaks:
        ax.axvline(w * HARTREE_EV, color="grey", lw=0.6, ls=":")
    ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, dpi=120)
