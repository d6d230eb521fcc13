"""``rtml spectrum``: the absorption spectrum and peaks of a kick trajectory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rtml._errors import InputError
from rtml.data import read_trajectory
from rtml.tddft import absorption_spectrum, find_peaks, plot_spectrum
from rtml.units import HARTREE_EV


def cmd_spectrum(args) -> int:
    """Print the peaks (eV, Hartree, S(ω)) as a table or JSON; ``--plot`` writes S(ω)."""
    traj = read_trajectory(args.file)
    kick = float(traj.extra_attrs.get("kick_strength", 0.0))
    if traj.field_spec.get("kind") != "kick" or kick == 0.0:
        raise InputError(f"'{args.file}' is not a kick trajectory (field "
                         f"{traj.field_spec.get('spec')}); spectra need kick:KAPPA:POL")
    damping = None if args.damping_ev is None else args.damping_ev / HARTREE_EV
    spectrum = absorption_spectrum(traj.time, traj.dipole, kick, traj.field_spec["polarization"],
                                   damping=damping, omega_max=args.max_ev / HARTREE_EV)
    omega, height = find_peaks(spectrum, min_relative_height=args.min_height)
    if args.json:
        print(json.dumps({"file": str(args.file), "damping_ev": spectrum.damping * HARTREE_EV,
                          "peaks_ev": (omega * HARTREE_EV).tolist(),
                          "heights": height.tolist()}))
    else:
        print(f"# {traj.molecule} {traj.field_spec['spec']}: {len(omega)} peaks "
              f"(damping {spectrum.damping * HARTREE_EV:.3f} eV HWHM)")
        print(f"# {'eV':>10} {'Hartree':>10} {'S(w) 1/Ha':>12}")
        for w, h in zip(omega, height):
            print(f"{w * HARTREE_EV:12.4f} {w:10.5f} {h:12.5g}")
    if args.plot:
        plot_spectrum(spectrum, omega, Path(args.plot), title=f"{traj.molecule} {traj.field_spec['spec']}")
        print(f"# plot written to {args.plot}", file=sys.stderr)
    return 0
