"""What the research plan costs: CPU-hours of the workflow's trajectories, from short runs.

For each molecule of the plan (``workflow/config/full.yaml`` by default: 655 trajectories of
5000 steps at dt 0.2 a.u., PBE0/6-31G, grid level 3, every step saved), this runs the
workflow's own jobs on one geometry (the equilibrium), with the plan's settings but fewer
steps, and extrapolates:

1. ``rtml ground-state`` (SCF + LR-TDDFT states, as the workflow's ``ground_state`` rule):
   its wall time W_gs, once per geometry;
2. ``rtml propagate --ground-state`` with the molecule's whole batch of plan fields (as the
   workflow's ``propagate_<mol>`` rule), at two lengths n1 < n2 steps: the slope
   s = (W2 - W1) / (n2 - n1) is the cost of a step of the batch and W1 - n1 s its fixed
   cost (start-up, the linear-response model's setup, writing); a job of the plan costs
   W_job = W1 + (steps - n1) s;
3. NWChem (``rtml propagate --engine nwchem``, 2 MPI ranks, one kick per run, where
   ``nwchem`` is installed), the same two lengths: its cost per trajectory of the plan.

CPU-hours are wall time x threads (``--threads``, default 1: measured single-threaded, so
these are the fewest CPU-hours; jobs run with more threads spend at least as many) and, for
NWChem, x 2 ranks. Geometry sampling (``sample_geometries``, a finite-difference Hessian per
molecule) is not included. The totals are printed against the roadmap's budget of 12,200
CPU-hours and the NWChem estimate of the same plan; everything goes to ``OUT/ladder_cost.csv``.

    python benchmarks/ladder_cost.py --out /tmp/cost                    # all 8 molecules
    python benchmarks/ladder_cost.py --out /tmp/cost --molecules h2o c2h4 --no-nwchem

Other jobs on the machine slow every run alike but distort the absolute numbers: the script
prints ``uptime`` load averages at the start and the end; rerun when they are high.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rtml.tddft.nwchem import nwchem_available  # noqa: E402
from rtml.workflow import field_plan, load_config, resources, validate_config  # noqa: E402

#: The roadmap's estimate of the full plan's cost (CPU-hours).
ROADMAP_CPU_HOURS = 12_200
NWCHEM_RANKS = 2


@dataclass
class MoleculeCost:
    """Measured and extrapolated costs of one molecule of the plan (seconds, CPU-hours)."""

    molecule: str
    nbf: int
    geometries: int
    trajectories: int
    fields_per_job: int
    ground_state_s: float
    rtml_fixed_s: float
    rtml_step_s: float          # one step of the whole batch
    rtml_job_s: float           # one propagate job of the plan (all fields of a geometry)
    rtml_cpu_hours: float       # every ground-state and propagate job of the molecule
    nwchem_fixed_s: float | None
    nwchem_step_s: float | None  # one step of one trajectory
    nwchem_cpu_hours: float | None


def timed(command: list[str], log: Path, env: dict) -> float:
    """Wall seconds of ``command``; exit with the log's tail if it fails."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.call(command, stdout=fh, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if rc != 0:
        sys.exit(f"failed ({rc}): {' '.join(command)}\n{log.read_text()[-2000:]}")
    return wall


def slope_and_fixed(walls: dict[int, float]) -> tuple[float, float]:
    """(seconds per step, fixed seconds) of a job from its wall times at two lengths."""
    (n1, w1), (n2, w2) = sorted(walls.items())
    step = (w2 - w1) / (n2 - n1)
    return step, w1 - n1 * step


def measure(molecule: str, config: dict, work: Path, lengths: tuple[int, int], threads: int,
            nwchem: bool) -> MoleculeCost:
    """Run the molecule's jobs at the two lengths and extrapolate to the plan."""
    mol_cfg = config["molecules"][molecule]
    prop, theory = config["propagation"], config["level_of_theory"]
    fields = field_plan(mol_cfg["trajectories"], config["fields"], molecule, theory["basis"])
    rtml = [sys.executable, "-m", "rtml"]
    level = ["--grid-level", str(theory["grid_level"])]
    for key in ("xc", "basis"):
        if theory[key]:
            level += [f"--{key}", str(theory[key])]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = work / molecule
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    gs_file = out / "ground_state.h5"
    gs_s = timed(rtml + ["ground-state", molecule, "--nstates", str(config["ground_state"]["nstates"]),
                         *level, "--threads", str(threads), "-o", str(gs_file)],
                 out / "ground_state.log", env)
    run = ["--dt", str(prop["dt"]), "--save-every", str(prop["save_every"]),
           "--propagator", prop["propagator"], "--corrector", prop["corrector"], *level, "-q"]
    walls = {}
    for n in lengths:
        walls[n] = timed(rtml + ["propagate", molecule, "--ground-state", str(gs_file),
                                 *[a for f in fields for a in ("--field", f)], *run,
                                 "--steps", str(n), "--threads", str(threads),
                                 "--output-dir", str(out / f"rtml_{n}")],
                         out / f"rtml_{n}.log", env)
        print(f"  {molecule}: rtml {len(fields)} fields x {n} steps {walls[n]:.1f} s", flush=True)
    step, fixed = slope_and_fixed(walls)
    job = fixed + prop["steps"] * step
    rtml_hours = mol_cfg["geometries"] * (gs_s + job) * threads / 3600
    nw_step = nw_fixed = nw_hours = None
    if nwchem:
        kick = next(f for f in fields if f.startswith("kick"))  # the plan's first kick
        nw_walls = {}
        for n in lengths:
            nw_walls[n] = timed(rtml + ["propagate", molecule, "--engine", "nwchem",
                                        "--field", kick, *run, "--steps", str(n), "--threads", str(NWCHEM_RANKS),
                                        "-o", str(out / f"nwchem_{n}.h5")],
                                out / f"nwchem_{n}.log", env)
            print(f"  {molecule}: nwchem 1 field x {n} steps {nw_walls[n]:.1f} s", flush=True)
        nw_step, nw_fixed = slope_and_fixed(nw_walls)
        nw_hours = (mol_cfg["geometries"] * mol_cfg["trajectories"]
                    * (nw_fixed + prop["steps"] * nw_step) * NWCHEM_RANKS / 3600)
    return MoleculeCost(molecule, resources.nbf(molecule, theory["basis"]),
                        mol_cfg["geometries"], mol_cfg["trajectories"], len(fields), gs_s,
                        fixed, step, job, rtml_hours, nw_fixed, nw_step, nw_hours)


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_table(rows: list[MoleculeCost], config: dict, threads: int) -> None:
    prop = config["propagation"]
    print(f"\nplan: {sum(r.geometries * r.trajectories for r in rows)} trajectories of "
          f"{prop['steps']} steps (dt {prop['dt']} a.u.); rtml at {threads} thread(s), "
          f"NWChem at {NWCHEM_RANKS} ranks")
    print(f"{'molecule':9s} {'nbf':>4s} {'traj':>5s} {'fields/job':>10s} {'gs s':>7s} "
          f"{'rtml s/step':>11s} {'rtml job s':>10s} {'rtml CPU-h':>10s} "
          f"{'NWChem s/step':>13s} {'NWChem CPU-h':>12s} {'ratio':>6s}")
    for r in rows:
        ratio = None if r.nwchem_cpu_hours is None else r.nwchem_cpu_hours / r.rtml_cpu_hours
        print(f"{r.molecule:9s} {r.nbf:4d} {r.geometries * r.trajectories:5d} "
              f"{r.fields_per_job:10d} {r.ground_state_s:7.1f} {r.rtml_step_s:11.4f} "
              f"{r.rtml_job_s:10.0f} {r.rtml_cpu_hours:10.2f} {_fmt(r.nwchem_step_s, '13.4f')} "
              f"{_fmt(r.nwchem_cpu_hours, '12.1f')} {_fmt(ratio, '6.1f')}")
    total = sum(r.rtml_cpu_hours for r in rows)
    print(f"\nrtml: {total:.1f} CPU-hours for the plan's trajectories "
          f"({ROADMAP_CPU_HOURS / total:.0f}x under the roadmap's {ROADMAP_CPU_HOURS:,} CPU-hours)")
    if all(r.nwchem_cpu_hours is not None for r in rows):
        nw_total = sum(r.nwchem_cpu_hours for r in rows)
        print(f"NWChem ({NWCHEM_RANKS} ranks, one trajectory per run): {nw_total:.1f} CPU-hours "
              f"for the same plan, {nw_total / total:.1f}x rtml's")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="work and result directory")
    parser.add_argument("--config", type=Path, default=ROOT / "workflow/config/full.yaml",
                        help="workflow config whose plan is costed (default: full.yaml)")
    parser.add_argument("--molecules", nargs="+", help="default: every molecule of the plan")
    parser.add_argument("--steps", type=lambda s: tuple(int(x) for x in s.split(",")),
                        default=(20, 100), help="the two short lengths, N1,N2 (default 20,100)")
    parser.add_argument("--threads", type=int, default=1, help="threads of each rtml job")
    parser.add_argument("--no-nwchem", action="store_true", help="skip the NWChem runs")
    args = parser.parse_args(argv)
    if len(args.steps) != 2 or not 0 < args.steps[0] < args.steps[1]:
        parser.error("--steps takes two lengths N1,N2 with 0 < N1 < N2")
    config = validate_config(load_config(args.config))
    molecules = args.molecules or list(config["molecules"])
    unknown = sorted(set(molecules) - set(config["molecules"]))
    if unknown:
        parser.error(f"not in the plan of {args.config}: {', '.join(unknown)}")
    nwchem = not args.no_nwchem and nwchem_available()
    if not args.no_nwchem and not nwchem:
        print("nwchem is not installed: NWChem columns left empty")
    args.out.mkdir(parents=True, exist_ok=True)
    print("load at start:", os.getloadavg())
    rows = [measure(m, config, args.out, args.steps, args.threads, nwchem) for m in molecules]
    print("load at end:", os.getloadavg())
    with open(args.out / "ladder_cost.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in rows)
    print_table(rows, config, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
