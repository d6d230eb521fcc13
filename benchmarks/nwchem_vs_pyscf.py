"""Cross-code check: the same RT-TDDFT run with NWChem's rt_tddft and with rtml's PySCF engine.

Runs one molecule under one field with both engines (same geometry, basis data, functional,
field and dt) and prints

- the agreement of the induced dipoles, max_t |dmu_nwchem(t) - dmu_pyscf(t)| (e*bohr),
  and of the AO densities at the harvested frames;
- for a kick, the dipole-strength peaks of both engines (eV) and their differences;
- both engines' wall time per step and the ratio NWChem/PySCF, measured in this run.

NWChem runs as one job for the whole window (no restart segments: only dipoles), plus a
separate job harvesting densities every ``--density-every`` steps when asked for. The
PySCF engine runs the single field (batch size 1). Example (H2O PBE0/6-31G, 200 au)::

    OMP_NUM_THREADS=1 python benchmarks/nwchem_vs_pyscf.py --molecule h2o --xc pbe0 \\
        --field kick:1e-4:z --steps 1000
    python benchmarks/nwchem_vs_pyscf.py --xc hf --field gaussian:0.001:0.3:30:8:z --steps 500 \\
        --density-every 250
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--molecule", default="h2o")
    parser.add_argument("--xc", default="pbe0")
    parser.add_argument("--basis", default="6-31g")
    parser.add_argument("--field", default="kick:1e-4:z")
    parser.add_argument("--dt", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=1, help="NWChem MPI ranks")
    parser.add_argument("--interpol-tol", type=float, default=1e-10,
                        help="NWChem Magnus self-consistency tolerance (its own default: 1e-7)")
    parser.add_argument("--density-every", type=int, default=0,
                        help="also harvest NWChem densities every N steps (0: no)")
    args = parser.parse_args(argv)

    from rtml.chem import build_mole, load_molecule
    from rtml.fields import parse_field
    from rtml.tddft import (PropagationSettings, SimulationInputs, absorption_spectrum,
                            find_peaks, simulate)
    from rtml.tddft.nwchem import nwchem_available, propagate_nwchem
    from rtml.units import HARTREE_EV

    if not nwchem_available():
        print("nwchem not on PATH: nothing to compare", file=sys.stderr)
        return 2
    spec = load_molecule(args.molecule)
    mol = build_mole(spec, basis=args.basis)
    field = parse_field(args.field)

    nw = propagate_nwchem(mol, args.xc, field, args.dt, args.steps, args.steps,
                          grid_level=args.grid_level, ranks=args.ranks, harvest_density=False,
                          interpol_tol=args.interpol_tol)
    inputs = SimulationInputs(molecule=spec, fields=[field], xc=args.xc, basis=args.basis,
                              grid_level=args.grid_level,
                              settings=PropagationSettings(dt=args.dt, n_steps=args.steps))
    t0 = time.perf_counter()
    py = simulate(inputs)[0]
    py_wall = time.perf_counter() - t0  # includes the PySCF SCF, as NWChem's job start-up
    nw_per_step = nw.wall_time_s / args.steps
    py_per_step = py_wall / args.steps

    induced = np.abs((nw.dipole - nw.dipole[0]) - (py.dipole - py.dipole[0])).max()
    print(f"# {args.molecule} {args.xc}/{args.basis} {field.to_spec()} dt={args.dt} "
          f"steps={args.steps} ({args.steps * args.dt:g} au), grid level {args.grid_level}, "
          f"NWChem interpol tolerance {args.interpol_tol:g}")
    print(f"ground-state dipole |mu_nw(0) - mu_py(0)|     {np.abs(nw.dipole[0] - py.dipole[0]).max():.3e} e*bohr")
    print(f"induced dipole max_t |dmu_nw - dmu_py|        {induced:.3e} e*bohr "
          f"(max |dmu| {np.abs(py.dipole - py.dipole[0]).max():.3e})")
    print(f"energy max_t |E_nw - E_py|                    {np.abs(nw.energy - py.energy).max():.3e} Ha")
    if field.is_kick and field.amplitude != 0:
        peaks = []
        for t, mu in ((nw.time, nw.dipole), (py.time, py.dipole)):
            spectrum = absorption_spectrum(t, mu, field.amplitude, field.polarization,
                                           omega_max=30 / HARTREE_EV)
            omega, _ = find_peaks(spectrum, min_relative_height=0.05)
            peaks.append(omega * HARTREE_EV)
        print("kick spectrum peaks, eV: nwchem", np.round(peaks[0], 4).tolist())
        print("                         pyscf ", np.round(peaks[1], 4).tolist())
        if len(peaks[0]) == len(peaks[1]):
            print(f"max peak difference                          "
                  f"{np.abs(peaks[0] - peaks[1]).max():.4f} eV")
    if args.density_every:
        nwd = propagate_nwchem(mol, args.xc, field, args.dt, args.steps, args.density_every,
                               grid_level=args.grid_level, ranks=args.ranks,
                               interpol_tol=args.interpol_tol)
        full = simulate(SimulationInputs(
            molecule=spec, fields=[field], xc=args.xc, basis=args.basis,
            grid_level=args.grid_level,
            settings=PropagationSettings(dt=args.dt, n_steps=args.steps,
                                         save_every=args.density_every)))[0]
        print(f"density max |P_nw - P_py| at {len(nwd.frame_steps)} frames        "
              f"{np.abs(nwd.density - full.density).max():.3e}")
    print(f"wall time per step: nwchem {nw_per_step * 1e3:.2f} ms ({args.ranks} rank(s), "
          f"propagation jobs only), pyscf {py_per_step * 1e3:.2f} ms (SCF included); "
          f"ratio nwchem/pyscf = {nw_per_step / py_per_step:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
