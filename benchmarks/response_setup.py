"""Setup of the linear-response corrector: the XC kernel on the SCF's grid against the kernel
on the coarser grid the engine uses (``rtml.tddft.KERNEL_GRID_COARSENING``), in
one run, with what the coarser kernel costs in accuracy.

For each molecule (equilibrium geometry, PBE0/6-31G, SCF grid 3) this prints:

- the time of the XC kernel and of the whole response (J, K and XC) on each grid, and the
  kernel's relative Frobenius error against the SCF grid's;
- a short propagation of 8 fields (kicks of 1e-4 along x, y, z, then 1e-3, 1e-2 and
  Gaussian pulses; Magnus-2, dt 0.2, the default linear corrector) with each response: Fock
  builds per step and the largest difference of the dipoles, against the induced dipole's
  size (the corrector's fixed point is the same up to ``pc_tol``, so only the number of
  builds should move).

``--ground-states DIR`` reads ``DIR/<molecule>/g00.h5`` (``rtml ground-state``, the
equilibrium geometry) to skip the SCF (C6H6 takes about 200 s). Example::

    OMP_NUM_THREADS=2 python benchmarks/response_setup.py h2o c6h6 \\
        --ground-states results-medium/ground_states --steps 100 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

FIELDS = ["kick:1e-4:x", "kick:1e-4:y", "kick:1e-4:z", "kick:1e-3:z", "kick:1e-2:z",
          "gaussian:0.01:0.3:4:2:z", "gaussian:0.05:0.3:4:2:x", "kick:1e-4:0.6,0.0,0.8"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("molecules", nargs="+")
    parser.add_argument("--steps", type=int, nargs="+", default=[100],
                        help="steps per molecule (one value for all, or one each)")
    parser.add_argument("--ground-states", default=None, metavar="DIR")
    args = parser.parse_args(argv)

    from rtml.chem import SystemSpec, load_molecule
    from rtml.data import read_ground_state
    from rtml.fields import parse_field
    from rtml.tddft import (KERNEL_GRID_COARSENING, KERNEL_GRID_MIN_LEVEL, PropagationSettings,
                            converged_ground_state, fock_response, kernel_context, propagate,
                            resolve_fields, xc_kernel)

    steps = dict(zip(args.molecules, args.steps * len(args.molecules) if len(args.steps) == 1
                     else args.steps))
    print(f"{'molecule':8s} {'kernel grid':>12s} {'points':>8s} {'XC kernel s':>12s} "
          f"{'response s':>11s} {'kernel error':>13s} {'builds/step':>12s} {'max dipole diff':>16s}")
    for name in args.molecules:
        spec = load_molecule(name)
        saved = None
        if args.ground_states:
            path = Path(args.ground_states) / name / "g00.h5"
            saved = read_ground_state(path) if path.exists() else None
        system = SystemSpec(molecule=spec, grid_level=3,
                            positions_angstrom=None if saved is None else saved.positions_angstrom)
        gs = converged_ground_state(system, saved=saved)
        fields = resolve_fields([parse_field(f) for f in FIELDS], gs)
        settings = PropagationSettings(dt=0.2, n_steps=steps[name])
        runs = {}
        for coarsening in (0, KERNEL_GRID_COARSENING):
            ctx = kernel_context(gs.context, 3, coarsening)
            t0 = time.perf_counter()
            kernel = xc_kernel(ctx, gs.density)
            t_kernel = time.perf_counter() - t0
            t0 = time.perf_counter()
            fock_response(gs, coarsening)           # kept on gs: the propagation uses it
            t_response = time.perf_counter() - t0
            frames, stats = propagate(gs, fields, settings)
            points = sum(len(b.weights) for b in ctx.grid_blocks)
            runs[coarsening] = (kernel, frames["dipole"], stats["builds_per_step"])
            err = np.linalg.norm(kernel - runs[0][0]) / np.linalg.norm(runs[0][0])
            dip = np.abs(frames["dipole"] - runs[0][1]).max()
            induced = np.abs(runs[0][1] - runs[0][1][:1]).max()
            level = max(3 - coarsening, KERNEL_GRID_MIN_LEVEL) if coarsening else 3
            print(f"{name:8s} {'level ' + str(level):>12s} {points:8d} {t_kernel:12.1f} "
                  f"{t_response:11.1f} {err:13.1e} {stats['builds_per_step']:12.2f} "
                  f"{dip:9.1e} of {induced:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
