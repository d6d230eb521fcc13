"""Inference time per step of the rtml model against the RT-TDDFT engine's time per step.

For each molecule (default H2O and C6H6, ladder geometry, PBE0/6-31G) this

1. converges the ground state and propagates a delta kick with the PySCF engine for a few
   steps (one field, and a batch of ``--batch`` fields), giving the engine's wall time per
   step per trajectory (Fock builds, predictor-corrector and all), with its default
   settings (the linear-response model carried between Fock builds: after a weak kick a
   build every few dozen steps) and with one build per step (``carry_model=False``, what a
   field the carried model cannot follow costs);
2. runs the model as an engine (:func:`rtml.model.propagate_model`, what ``rtml propagate
   --engine model`` runs) from the same ground state under the same kicks: an
   :class:`rtml.model.RTMLModel` in its default configuration with random non-zero gate
   weights (the cost does not depend on the values), for one trajectory and a batch;

and prints seconds per step per trajectory and the headline speedup
``engine time per step / model time per step``, measured in the same run. With ``--out``
it also writes ``model_inference.csv`` and a bar plot ``model_inference.png``::

    python benchmarks/model_inference.py                       # H2O and C6H6, 2 threads
    python benchmarks/model_inference.py --molecules h2o --engine-steps 40 --out bench/

The engine runs at the workflow's default DFT grid (level 3) unless ``--grid-level`` says
otherwise. The model's time per step includes both network calls of its predictor-corrector
(the network's linear maps, the exact Coulomb/exchange and XC-kernel maps, the Mamba gate
step) and both unitary steps, i.e. everything a rollout pays; its one-off setup per geometry
(the dense Coulomb/exchange maps, the XC kernel on the molecule's frame grid, the network's
linear maps) is printed apart, as the engine's linear-response setup is excluded from its
time per step.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rtml import atomic_write, atomic_write_text
from rtml.chem import build_mole, load_molecule
from rtml.cli import set_threads
from rtml.fields import parse_field
from rtml.model import ModelConfig, RTMLModel, RTMLPropagator, propagate_model
from rtml.tddft import (PropagationSettings, SimulationInputs, fock_response,
                        prepare_ground_state, simulate)


def engine_time_per_step(name: str, n_steps: int, batch: int, grid_level: int, dt: float,
                         carry: bool | None = None, gs=None):
    """(ground state, {batch size: s/step/trajectory}) for the PySCF engine on a kick
    (``carry``: the settings' ``carry_model``, None = the engine's default)."""
    spec = load_molecule(name)
    settings = PropagationSettings(dt=dt, n_steps=n_steps, carry_model=carry)
    pols = ["x", "y", "z"]
    fields = [parse_field(f"kick:{1e-3 * (1 + i // 3):g}:{pols[i % 3]}") for i in range(batch)]
    if gs is None:
        gs, _ = prepare_ground_state(SimulationInputs(spec, fields[:1], settings,
                                                      grid_level=grid_level))
    fock_response(gs)  # the corrector's linear-response model: setup, once per geometry
    out = {}
    for size in sorted({1, batch}):
        run = SimulationInputs(spec, fields[:size], settings, grid_level=grid_level)
        t0 = time.perf_counter()
        trajs = simulate(run, ground_state=gs)
        out[size] = (time.perf_counter() - t0) / n_steps / size
    return gs, trajs[0], out


def model_time_per_step(gs, batch: int, n_steps: int, dt: float):
    """(setup seconds, {batch size: s/step/trajectory}) of the model as an engine.

    Runs :func:`rtml.model.propagate_model` (what ``rtml propagate --engine model`` runs) from
    the engine's own ground state under kicks, with an untrained :class:`RTMLModel` whose gates
    are given random non-zero weights (a trained model costs the same). The one-off setup per
    geometry (exact Coulomb/exchange maps, the network's linear maps) is timed apart, as the
    engine's linear-response setup is.
    """
    torch.manual_seed(0)
    model = RTMLModel(ModelConfig()).to(torch.float64)
    with torch.no_grad():
        for p in model.dynamics.head.parameters():
            p.normal_(std=0.1)
    prop = RTMLPropagator(model)
    pols = ["x", "y", "z"]
    out, setup = {}, float("nan")
    for size in sorted({1, batch}):
        fields = [parse_field(f"kick:{1e-3 * (1 + i // 3):g}:{pols[i % 3]}") for i in range(size)]
        settings = PropagationSettings(dt=dt, n_steps=3)
        _, warm = propagate_model(gs, fields, settings, prop)       # warm-up, setup cached
        if size == 1:
            setup = warm["setup_s"]
        _, stats = propagate_model(gs, fields, PropagationSettings(dt=dt, n_steps=n_steps), prop)
        out[size] = stats["wall_time_s"] / n_steps / size
    return setup, out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--molecules", nargs="+", default=["h2o", "c6h6"])
    parser.add_argument("--engine-steps", type=int, default=None,
                        help="engine steps per molecule (default 100 for nbf < 40, else 40)")
    parser.add_argument("--model-steps", type=int, default=100)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--grid-level", type=int, default=3)
    parser.add_argument("--dt", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="directory for CSV and PNG")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    torch.set_num_threads(args.threads)

    rows = []
    for name in args.molecules:
        nao = build_mole(load_molecule(name)).nao
        steps = args.engine_steps or (100 if nao < 40 else 40)
        print(f"{name}: nbf {nao}, engine {steps} steps at grid level {args.grid_level} ...",
              flush=True)
        gs, _, engine = engine_time_per_step(name, steps, args.batch, args.grid_level, args.dt)
        _, _, full = engine_time_per_step(name, steps, args.batch, args.grid_level, args.dt,
                                          carry=False, gs=gs)
        setup, model = model_time_per_step(gs, args.batch, args.model_steps, args.dt)
        for size in sorted(model):
            rows.append({"molecule": name, "nbf": nao, "device": "cpu", "batch": size,
                         "engine_s_per_step": engine[size], "model_s_per_step": model[size],
                         "speedup": engine[size] / model[size], "model_setup_s": setup,
                         "engine_one_build_s_per_step": full[size],
                         "speedup_one_build": full[size] / model[size]})

    header = f"{'molecule':9s} {'nbf':>4s} {'device':6s} {'batch':>5s} {'engine s/step':>14s} " \
             f"{'model s/step':>13s} {'speedup':>9s} {'1-build s/step':>15s} {'speedup':>9s} " \
             f"{'model setup s':>14s}"
    print(header)
    for r in rows:
        print(f"{r['molecule']:9s} {r['nbf']:4d} {r['device']:6s} {r['batch']:5d} "
              f"{r['engine_s_per_step']:14.3e} {r['model_s_per_step']:13.3e} {r['speedup']:8.1f}x "
              f"{r['engine_one_build_s_per_step']:15.3e} {r['speedup_one_build']:8.1f}x "
              f"{r['model_setup_s']:14.1f}")
    if args.out is not None:
        write_outputs(rows, args.out)
    return 0


def write_outputs(rows: list[dict], out: Path) -> None:
    """``model_inference.csv`` and a bar plot of the speedups."""
    import matplotlib  # heavy, and only for the plot

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = [",".join(rows[0])] + [",".join(str(v) for v in r.values()) for r in rows]
    atomic_write_text(out / "model_inference.csv", "\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{r['molecule']}\n{r['device']} b{r['batch']}" for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["speedup"] for r in rows], 0.4, label="engine default (carried model)")
    ax.bar(x + 0.2, [r["speedup_one_build"] for r in rows], 0.4, label="engine, one build per step")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.legend(fontsize=8)
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("engine time / model time per step")
    ax.set_title("rtml model inference vs RT-TDDFT engine (per trajectory)")
    fig.tight_layout()
    atomic_write(out / "model_inference.png", lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    print(f"wrote {out / 'model_inference.csv'} and {out / 'model_inference.png'}")


if __name__ == "__main__":
    sys.exit(main())
