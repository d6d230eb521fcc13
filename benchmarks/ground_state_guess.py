"""SCF cost from the learned ground-state guess against PySCF's default guess, on held-out
geometries.

For every test geometry of the guess's own split (the stores, fractions and seed recorded in
its weights, so nothing it trained or was selected on is scored), runs rtml's SCF
(:func:`rtml.chem.converged_scf`: PBE0 or the store's functional, grid 3, orbital gradient
1e-10) from three starting densities:

- ``minao``: PySCF's default;
- ``learned``: :func:`rtml.model.guess_density` (its prediction time is counted);
- ``nearest``: the recorded ground state of the nearest training geometry of the same molecule
  (the strongest data-only baseline: same atoms, same frame, AO density reused as is);

and prints, per geometry and as medians per molecule, the guess's relative density error
(Löwdin basis), the SCF cycles to an orbital gradient of 1e-8 (where DIIS has done its work;
the last two decades are a slow walk at the grid's noise floor that no guess shortens),
the total cycles, and the wall time (median of ``--repeats``), with the ratios minao /
learned. Example::

    OMP_NUM_THREADS=2 python benchmarks/ground_state_guess.py --guess GUESS_DIR --repeats 3
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def scf_run(mol, xc: str, dm0, grid_level: int = 3):
    """Cycles to |g| < 1e-8, total cycles, wall time of rtml's SCF from ``dm0``."""
    from rtml.chem import converged_scf

    gradients = []
    t0 = time.perf_counter()
    mf = converged_scf(mol, xc, grid_level, 0, 200, dm0=dm0() if callable(dm0) else dm0,
                       callback=lambda env: gradients.append(env.get("norm_gorb", np.nan)))
    wall = time.perf_counter() - t0
    g = np.asarray(gradients, dtype=float)
    below = np.nonzero(g < 1e-8)[0]
    return (int(below[0]) + 1 if len(below) else len(g)), len(g), wall, mf.e_tot


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guess", required=True, help="directory from rtml train-guess")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--molecules", nargs="*", default=None)
    args = parser.parse_args(argv)

    import torch
    from rtml.model import guess_density, load_guess, relative_density_error
    from rtml.train import guess_samples
    torch.set_num_threads(2)

    guess = load_guess(args.guess)
    training = torch.load(f"{args.guess}/ground_state_guess.pt", weights_only=False)["training"]
    samples = guess_samples(training["stores"], tuple(training["fractions"]), training["seed"],
                            tuple(training["held_out_molecules"]))
    train = [s for s in samples if s.split == "train"]
    test = [s for s in samples if s.split == "test"
            and (not args.molecules or s.molecule in args.molecules)]
    print(f"guess {args.guess} (best epoch {training['best_epoch']}); {len(test)} test "
          f"geometries; medians of {args.repeats} runs; cycles to |g| < 1e-8 / total")
    print(f"{'molecule':9s} {'geometry':16s} {'error minao/learned/nearest':>30s} "
          f"{'minao':>10s} {'learned':>10s} {'nearest':>10s} {'time m/l/n s':>18s}")
    rows = []
    for s in test:
        nearest = min((t for t in train if t.molecule == s.molecule),
                      key=lambda t: np.linalg.norm(t.positions_angstrom - s.positions_angstrom),
                      default=None)
        starts = {"minao": None, "learned": lambda s=s: guess_density(guess, s.mol)}
        if nearest is not None:
            starts["nearest"] = (nearest.rho_ground.sum(0) if s.mol.spin == 0
                                 else nearest.rho_ground)
        errors = {"minao": s.minao_error,
                  "learned": relative_density_error(guess_density(guess, s.mol), s.rho_ground,
                                                    s.overlap)}
        if nearest is not None:
            errors["nearest"] = relative_density_error(starts["nearest"], s.rho_ground, s.overlap)
        result, energy = {}, {}
        for name, dm0 in starts.items():
            runs = [scf_run(s.mol, s.xc, dm0) for _ in range(args.repeats)]
            result[name] = tuple(float(np.median([r[i] for r in runs])) for i in range(3))
            energy[name] = runs[0][3]
        for name, e in energy.items():
            if abs(e - energy["minao"]) > 1e-8:
                print(f"  warning: from {name} the SCF reached E = {e:.10f}, from minao "
                      f"{energy['minao']:.10f}")
        rows.append((s, errors, result))
        cyc = lambda n: (f"{result[n][0]:4.0f}/{result[n][1]:<4.0f}" if n in result else f"{'-':>9s}")
        err = "/".join(f"{errors.get(n, np.nan):.3f}" for n in ("minao", "learned", "nearest"))
        times = "/".join(f"{result[n][2]:.2f}" if n in result else "-" for n in result)
        print(f"{s.molecule:9s} {s.geometry_id:16s} {err:>30s} {cyc('minao'):>10s} "
              f"{cyc('learned'):>10s} {cyc('nearest'):>10s} {times:>18s}", flush=True)
    print("\nper molecule (medians): minao / learned ratios of cycles to 1e-8, total cycles, "
          "wall time; density errors")
    for mol_name in dict.fromkeys(s.molecule for s, _, _ in rows):
        sel = [(e, r) for s, e, r in rows if s.molecule == mol_name]
        ratio = [np.median([r["minao"][i] / r["learned"][i] for _, r in sel]) for i in range(3)]
        err = [np.median([e[k] for e, _ in sel]) for k in ("minao", "learned")]
        near = [r["nearest"] for _, r in sel if "nearest" in r]
        near_text = (f"; nearest: {np.median([r['minao'][0] / n[0] for (_, r), n in zip(sel, near)]):.2f}x "
                     f"to 1e-8" if near else "")
        print(f"  {mol_name:6s} cycles to 1e-8 {ratio[0]:.2f}x, total {ratio[1]:.2f}x, wall "
              f"{ratio[2]:.2f}x; error {err[0]:.3f} -> {err[1]:.3f}{near_text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
