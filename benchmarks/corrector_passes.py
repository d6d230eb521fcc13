"""What the exact step's corrector passes change: a trained model (by default the shipped
ensemble) stepped with the passes it was trained with and with two, beside ``lr-tddft``
(nothing learned) with one and two passes, the ridge baseline (``linear``, fitted on the
training split) and persistence, on the held-out geometries of a store.

The engine solves the Magnus-2 trapezoid to self-consistency; one pass leaves an O(dt³)
phase error per step (README, "The step's corrector passes"). Split 0.8/0.1/0.1 by geometry
with seed 0 (the shipped card's; the split of a geometry does not depend on the other
molecules in the store), 1000-step rollouts from the first frame under the true field,
per molecule: medians of valid horizon and e@1000 and the mean e@1000, as
``benchmarks/ladder_transfer.py`` scores them::

    rtml dataset assemble -o /tmp/small.zarr results-medium/trajectories/{h2p,h2,lih}/g??/*.h5
    OMP_NUM_THREADS=1 python benchmarks/corrector_passes.py /tmp/small.zarr --out rows.json
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np


def _ladder_transfer():
    """``benchmarks/ladder_transfer.py`` (its scoring), loaded by path."""
    spec = importlib.util.spec_from_file_location("ladder_transfer",
                                                  Path(__file__).with_name("ladder_transfer.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("store", help="Zarr store with the trajectories")
    parser.add_argument("--model", default=None,
                        help="model or ensemble (default: the shipped one)")
    parser.add_argument("--molecules", nargs="+", default=None, help="default: every molecule")
    parser.add_argument("--out", type=Path, required=True, help="rows (JSON)")
    args = parser.parse_args(argv)

    import torch

    from rtml.data import open_store_groups, trajectory_splits
    from rtml.model import (LinearResponsePropagator, PersistenceModel, fit_linear, load_model,
                            resolve_model_dir)

    torch.set_num_threads(1)
    lt = _ladder_transfer()
    groups = open_store_groups(args.store, args.molecules)
    splits = trajectory_splits(groups, (0.8, 0.1, 0.1), 0)
    model_dir = resolve_model_dir(args.model)
    trained, _ = load_model(model_dir)
    passes = trained.members[0].config.corrector_iterations
    models = {"lr-tddft, 1 pass": LinearResponsePropagator(1),
              "lr-tddft, 2 passes": LinearResponsePropagator(2),
              f"model, {passes} pass{'es' if passes > 1 else ''} (as trained)": trained}
    if passes != 2:  # the same weights stepped with two passes (each member has its config)
        two = copy.deepcopy(trained)
        for member in two.members:
            member.config.corrector_iterations = 2
        models["model, 2 passes"] = two
    # the baselines of every evaluation table: the ridge map fitted on the training split
    models["linear"] = fit_linear(groups, splits)
    models["persistence"] = PersistenceModel()
    rows = []
    for mol, ds in groups.items():
        for name, model in models.items():
            t0 = time.perf_counter()
            items = lt.score(model, ds, splits[mol]["test"], mol)
            row = lt.summary_row(name, "held-out geometries", mol, items)
            row["mean_e_at_1000"] = float(np.mean([i["e_at_1000"] for i in items]))
            rows.append(row | {"trajectories": items})
            print(f"{mol:5s} {name:28s} n {row['n']:2d}"
                  f"  valid horizon {row['median_valid_horizon']:6.0f}"
                  f"  e@1000 median {row['median_e_at_1000']:.2e} mean {row['mean_e_at_1000']:.2e}"
                  f"  ({time.perf_counter() - t0:.0f} s)", flush=True)
    result = {"model": str(model_dir), "store": str(args.store), "rows": rows}
    args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
