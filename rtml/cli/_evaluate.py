"""``rtml evaluate``: a trained model and the baselines on the test split."""

from __future__ import annotations

from rtml.cli._threads import set_threads
from rtml.evaluate import evaluate


def cmd_evaluate(args) -> int:
    """Evaluate and print one line of metrics per model and molecule."""
    set_threads(args.threads)
    baselines = [b for b in args.baselines.split(",") if b] if args.baselines else []
    summary = evaluate(args.store, args.model, args.output, baselines=baselines,
                       molecules=args.molecules, compare=args.compare or ())
    for name, per_mol in summary.items():
        for mol, m in per_mol.items():
            zero_shot = "  (zero-shot: molecule held out)" if m["held_out"] == "molecule" else ""
            print(f"{name:<22} {mol:<6} one-step MSE {m['one_step_mse']:.3e}  "
                  f"median valid horizon {m['median_valid_horizon']:.0f}  "
                  f"dipole nRMSE {m['dipole_nrmse']:.3f}"
                  f"{zero_shot}")
    return 0
