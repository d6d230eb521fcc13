"""``rtml spectrum``: the absorption spectrum and peaks of a kick trajectory.

Energies are printed in eV (and Hartree), the dipole strength S(E) in 1/eV, as in every
rtml spectrum plot (:attr:`rtml.tddft.Spectrum.strength_per_ev`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rtml._atomic import check_output_path
from rtml._errors import InputError
from rtml.data import read_trajectory
from rtml.tddft import absorption_spectrum, find_peaks, plot_spectrum
from rtml.units import HARTREE_EV


def _check_plot_path(path: Path, force: bool) -> None:
    """Refuse a ``--plot`` destination before any work: its directory must exist and be
    writable, the path must not be a directory, a link, a FIFO or a device, nor an existing
    file without ``force``, and its suffix must name a format matplotlib writes (.png,
    .pdf, .svg, ...)."""
    if not path.parent.is_dir():
        raise InputError(f"--plot '{path}': no directory '{path.parent}' to write it in")
    if path.is_dir() and not path.is_symlink():
        raise InputError(f"--plot '{path}' is a directory; give a file such as "
                         f"'{path / 'spectrum.png'}'")
    # matplotlib is imported here: it is heavy and only --plot needs its list of formats
    from matplotlib.backend_bases import FigureCanvasBase

    formats = FigureCanvasBase.get_supported_filetypes()
    if path.suffix.lower().lstrip(".") not in formats:
        what = f"unknown image type '{path.suffix}'" if path.suffix else "no image type suffix"
        raise InputError(f"--plot '{path}': {what} (known: "
                         f"{', '.join('.' + f for f in sorted(formats))})")
    check_output_path(path, force)  # links, FIFOs, devices, an existing file, no write access


def cmd_spectrum(args) -> int:
    """Print the peaks (eV, Hartree, S(E) in 1/eV) as a table or JSON; ``--plot`` writes S(E)."""
    plot = Path(args.plot) if args.plot else None
    if plot is not None:
        _check_plot_path(plot, args.force)
    traj = read_trajectory(args.file)
    kick = float(traj.extra_attrs.get("kick_strength", 0.0))
    if traj.field_spec.get("kind") != "kick" or kick == 0.0:
        raise InputError(f"'{args.file}' is not a kick trajectory (field "
                         f"{traj.field_spec.get('spec')}); spectra need kick:KAPPA:POL")
    damping = None if args.damping_ev is None else args.damping_ev / HARTREE_EV
    spectrum = absorption_spectrum(traj.time, traj.dipole, kick, traj.field_spec["polarization"],
                                   damping=damping, omega_max=args.max_ev / HARTREE_EV)
    omega, height = find_peaks(spectrum, min_relative_height=args.min_height)
    height_per_ev = height / HARTREE_EV
    if plot is not None:  # before the table: a failed plot prints nothing
        plot_spectrum(spectrum, omega, plot, title=f"{traj.molecule} {traj.field_spec['spec']}")
    if args.json:
        print(json.dumps({"file": str(args.file), "damping_ev": spectrum.damping * HARTREE_EV,
                          "peaks_ev": (omega * HARTREE_EV).tolist(),
                          "heights_per_ev": height_per_ev.tolist()}))
    else:
        print(f"# {traj.molecule} {traj.field_spec['spec']}: {len(omega)} peaks "
              f"(damping {spectrum.damping * HARTREE_EV:.3f} eV HWHM)")
        print(f"# {'E (eV)':>10} {'w (Ha)':>10} {'S(E) (1/eV)':>12}")
        for w, h in zip(omega, height_per_ev):
            print(f"{w * HARTREE_EV:12.4f} {w:10.5f} {h:12.5g}")
    if plot is not None:
        print(f"# plot written to {plot}", file=sys.stderr)
    return 0
