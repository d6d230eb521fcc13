"""The hybrid engine against the engines it stands between, on the same case in one run.

For one molecule (optionally a held-out geometry) and each field, runs ``rtml propagate``'s
engines through :func:`rtml.engines.run_engine` (each does its own SCF, as a user's run):

- ``pyscf``, the reference;
- ``hybrid`` (the model, re-anchored by the pyscf engine) with the given settings;
- ``model`` (the model alone);
- ``nwchem`` on ``--ranks`` MPI ranks, where installed (``--no-nwchem`` skips it);

and prints, per engine, the wall time and its ratio to the others, and against the pyscf
reference (the engine's default settings: the carried linear-response corrector): the
relative trajectory MSE (mean over frames of e(t)², e(t) = ‖P̂(t) − P(t)‖_F /
max_t ‖P(t) − P(0)‖_F), max e(t), the induced dipole's RMS error relative to the RMS of the
reference's induced dipole, the hybrid's anchors, model and engine steps and its own error
estimate. Example (H2O, a held-out geometry of the medium set)::

    OMP_NUM_THREADS=2 python benchmarks/hybrid.py h2o --geometry results-medium/geometries/h2o/g02.xyz \\
        --field kick:0.005:y --field resonant:0.005:B1:100:auto --steps 5000
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def relative_errors(pred, ref) -> np.ndarray:
    """e(t) of AO densities (T, S, n, n)."""
    scale = np.linalg.norm((ref - ref[:1]).reshape(len(ref), -1), axis=1).max()
    return np.linalg.norm((pred - ref).reshape(len(ref), -1), axis=1) / scale


def dipole_error(pred, ref) -> float:
    """RMS error of the induced dipole over the RMS of the reference's induced dipole."""
    d_ref, d_pred = ref - ref[:1], pred - ref[:1]
    return float(np.sqrt(np.mean((d_pred - d_ref) ** 2)) / np.sqrt(np.mean(d_ref ** 2)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("molecule")
    parser.add_argument("--geometry", default=None)
    parser.add_argument("--field", action="append", required=True)
    parser.add_argument("--dt", type=float, default=0.2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--model", default=None, help="model or ensemble (default: the shipped one)")
    parser.add_argument("--ranks", type=int, default=2, help="NWChem MPI ranks")
    parser.add_argument("--no-nwchem", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a HybridSettings field (repeat), e.g. --set error_tol=0.2")
    args = parser.parse_args(argv)

    from rtml.chem import load_molecule, read_matching_geometry
    from rtml.engines import EngineOptions, run_engine
    from rtml.fields import parse_field
    from rtml.model import HybridSettings, resolve_model_dir
    from rtml.tddft import PropagationSettings, SimulationInputs
    from rtml.tddft.nwchem import nwchem_available

    spec = load_molecule(args.molecule)
    positions, geometry_id = (read_matching_geometry(spec, args.geometry) if args.geometry
                              else (None, "eq"))
    hybrid = HybridSettings(**{k: type(getattr(HybridSettings(), k))(v)
                               for k, v in (s.split("=", 1) for s in args.set)})
    model_dir = resolve_model_dir(args.model)
    engines = ["pyscf", "hybrid", "model"]
    if not args.no_nwchem and nwchem_available():
        engines.append("nwchem")
    print(f"{args.molecule} ({geometry_id}), dt {args.dt}, {args.steps} steps, grid "
          f"{args.grid_level}; model {model_dir}; {hybrid}", flush=True)
    for spec_text in args.field:
        field = parse_field(spec_text)
        settings = PropagationSettings(dt=args.dt, n_steps=args.steps)
        inputs = SimulationInputs(molecule=spec, fields=[field], settings=settings,
                                  positions_angstrom=positions, geometry_id=geometry_id,
                                  grid_level=args.grid_level)
        runs = {}
        for engine in engines:
            options = EngineOptions(model_dir=model_dir if engine in ("hybrid", "model") else None,
                                    ranks=args.ranks, hybrid=hybrid, show_progress=False)
            t0 = time.perf_counter()
            runs[engine] = (run_engine(engine, inputs, options)[0], time.perf_counter() - t0)
            print(f"  {spec_text}: {engine} {runs[engine][1]:.1f} s", flush=True)
        ref = runs["pyscf"][0]
        print(f"\n{spec_text}")
        print(f"{'engine':8s} {'wall s':>8s} {'vs pyscf':>9s} {'vs nwchem':>9s} {'rel MSE':>9s} "
              f"{'max e':>8s} {'dipole':>8s}  hybrid")
        for engine, (traj, wall) in runs.items():
            e = relative_errors(traj.density, ref.density)
            vs_nw = f"{runs['nwchem'][1] / wall:8.2f}x" if "nwchem" in runs else f"{'-':>9s}"
            extra = ""
            if engine == "hybrid":
                a = traj.extra_attrs
                times = a["hybrid_step_seconds"]
                extra = (f"{len(a['hybrid_anchors'])} anchors, {a['hybrid_model_steps']} model / "
                         f"{a['hybrid_engine_steps']} engine steps, estimate "
                         f"{a['hybrid_error_estimate']:.3f}; first anchor: "
                         f"{1e3 * times['model']:.2f} ms per model step, "
                         f"{1e3 * times['engine']:.2f} ms per engine step")
            same_grid = traj.density.shape == ref.density.shape
            print(f"{engine:8s} {wall:8.1f} {runs['pyscf'][1] / wall:8.2f}x {vs_nw} "
                  f"{np.mean(e ** 2) if same_grid else float('nan'):9.1e} "
                  f"{e.max() if same_grid else float('nan'):8.1e} "
                  f"{dipole_error(traj.dipole, ref.dipole):8.1e}  {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
