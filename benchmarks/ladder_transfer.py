"""Across the ladder (issue 16): held-out geometries of rungs 1-6, zero-shot C2H4 and C6H6,
few-shot C2H4, physics after 1000-step rollouts; and the card of the shipped model.

Protocol, on the trajectories of the medium config (``workflow/config/medium.yaml``: PBE0/6-31G,
grid 3, dt 0.2 a.u., 1000 steps, kicks, Gaussian pulses and resonant drives)::

    snakemake assemble_all --profile profiles/local --configfile workflow/config/medium.yaml
    python benchmarks/ladder_transfer.py --results results-medium --work /tmp/ladder

1. **stores** (``WORK/stores``): ``ladder`` (rungs 1-6: H2+, H2, LiH, H2O, NH3, CH4),
   ``c2h4``, ``c6h6`` and ``roadmap`` (rungs 1-5, the roadmap's KPI: carbon never seen).
2. **training** (``WORK/models``, ``--jobs`` processes of ``--threads``): the ``rtml`` ensemble
   (``--members``, defaults of ``rtml train`` but ``--sequence-epochs`` and ``--epochs``), the
   ridge baseline (``linear``) on ``ladder``; with ``--mlp`` the memoryless ablation, with
   ``--roadmap`` an rtml model on ``roadmap``. Validation geometries are carved from the
   training geometries (default split 0.8/0.1/0.1, seed 0); nothing is selected on test data.
3. **few-shot** (``WORK/fewshot``): member 0 fine-tuned with ``rtml adapt`` on K = 5, 10, 20
   C2H4 trajectories of the C2H4 training geometries (split 0.6/0.15/0.25, seed 2: 5 train,
   1 validation, 2 test geometries), and the ridge baseline fitted on the same K shots.
4. **evaluation**: every model rolls out every test trajectory for 1000 steps from its first
   frame under the true field (:func:`rtml.evaluate.evaluate_trajectory`): valid horizon
   (first step with e > 0.1), e@1000 and the relative MSE e@1000², physics of the rollout
   (|Tr PS - N| / N, Hermiticity, the lowest occupation). Rows: held-out geometries of each
   rung; zero-shot C2H4 (all trajectories, and the few-shot test geometries) and C6H6 (when
   the run has its trajectories); the few-shot table. Beside the models: persistence, the
   ridge fit and ``lr-tddft`` (the exact step with ΔG linear in ΔP, nothing learned: the
   default model with its gates closed). ``WORK/results.json`` holds every row; the table is
   printed.
5. ``--card NAME`` writes the model card (``card.json``, ``MODEL_CARD.md``) beside the ensemble
   and copies the ensemble with its card to ``rtml/model/pretrained/NAME`` (the shipped model).

Stages are cached in WORK (delete a folder to redo it).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LADDER = ["h2p", "h2", "lih", "h2o", "nh3", "ch4"]
ROADMAP = ["h2p", "h2", "lih", "h2o", "nh3"]
FEWSHOT_SPLIT = ["--split-fractions", "0.6,0.15,0.25", "--seed", "2"]
#: the tiny trajectory of the card's check (a test regenerates it and compares)
CHECK = {"molecule": "lih", "field": "kick:0.005:x", "dt": 0.2, "steps": 40, "grid_level": 1}
REPO = Path(__file__).resolve().parent.parent


def run(cmd: list[str], log: Path) -> float:
    """Run a command with its output in ``log``; exit with the log's tail on failure."""
    t0 = time.perf_counter()
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if rc != 0:
        sys.exit(f"command failed ({rc}): {' '.join(cmd)[:300]}\n" + log.read_text()[-2000:])
    seconds = time.perf_counter() - t0
    print(f"  {seconds:7.1f} s  {' '.join(cmd[:3])} ... -> {log.stem}", flush=True)
    return seconds


def run_parallel(jobs: list[tuple[list[str], Path]], n: int) -> None:
    """Run commands ``n`` at a time (one thread each); exit if one fails."""
    running = []
    pending = list(jobs)
    while pending or running:
        while pending and len(running) < n:
            cmd, log = pending.pop(0)
            log.parent.mkdir(parents=True, exist_ok=True)
            fh = open(log, "w")
            running.append((cmd, log, time.perf_counter(),
                            subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)))
        for item in list(running):
            cmd, log, t0, proc = item
            if proc.poll() is not None:
                running.remove(item)
                if proc.returncode != 0:
                    sys.exit(f"command failed: {' '.join(cmd)[:300]}\n" + log.read_text()[-2000:])
                print(f"  {time.perf_counter() - t0:7.1f} s  {log.stem}", flush=True)
        time.sleep(2)


def make_stores(results: Path, work: Path) -> dict[str, Path]:
    stores = {}
    for name, molecules in {"ladder": LADDER, "roadmap": ROADMAP, "c2h4": ["c2h4"],
                            "c6h6": ["c6h6"]}.items():
        stores[name] = work / "stores" / f"{name}.zarr"
        if stores[name].exists():
            continue
        stores[name].parent.mkdir(parents=True, exist_ok=True)
        files = sorted(str(f) for m in molecules for f in (results / "trajectories" / m).glob("*/*.h5"))
        if not files and name == "c6h6":  # a run may leave out C6H6 (12 min of the medium set)
            print(f"no C6H6 trajectories under {results}/trajectories: no C6H6 rows", flush=True)
            del stores[name]
            continue
        if not files:
            sys.exit(f"no trajectories of {molecules} under {results}/trajectories")
        run(["rtml", "dataset", "assemble", "-q", "-o", str(stores[name]), *files],
            work / "logs" / f"assemble_{name}.log")
    return stores


def train(work: Path, stores: dict, args) -> dict[str, Path]:
    models = work / "models"
    dirs = {"rtml": models / "rtml", "linear": models / "linear"}
    # every rtml run is started: a finished one resumes from its last checkpoint and returns
    jobs = []
    common = ["--threads", str(args.threads), "-q", "--sequence-epochs", str(args.sequence_epochs)]
    if args.epochs is not None:
        common += ["--epochs", str(args.epochs)]
    for k in range(args.members):
        member = dirs["rtml"] / f"member-{k}"
        jobs.append((["rtml", "train", str(stores["ladder"]), *common, "--init-seed", str(k),
                      "-o", str(member)], work / "logs" / f"train_rtml_member{k}.log"))
    if args.mlp:
        dirs["rtml-mlp"] = models / "rtml-mlp"
        jobs.append((["rtml", "train", str(stores["ladder"]), "--model", "rtml-mlp", *common,
                      "-o", str(dirs["rtml-mlp"])], work / "logs" / "train_rtml_mlp.log"))
    if args.roadmap:
        dirs["roadmap"] = models / "roadmap"
        jobs.append((["rtml", "train", str(stores["roadmap"]), *common, "-o",
                      str(dirs["roadmap"])], work / "logs" / "train_roadmap.log"))
    print("training:", flush=True)
    run_parallel(jobs, args.jobs)
    # every member is trained: list them (rtml train --members 1 would train one more model)
    from rtml.model import write_ensemble
    write_ensemble(dirs["rtml"], [f"member-{k}" for k in range(args.members)])
    if not (dirs["linear"] / "model.pt").is_file():
        run(["rtml", "train", str(stores["ladder"]), "--model", "linear", "-q", "-o",
             str(dirs["linear"])], work / "logs" / "train_linear.log")
    return dirs


def fewshot(work: Path, stores: dict, dirs: dict, shots: list[int], n_jobs: int,
            threads: int = 1) -> dict:
    out = {}
    jobs = []
    for k in shots:
        out[f"adapt-K{k}"] = work / "fewshot" / f"adapt-K{k}"
        jobs.append((["rtml", "adapt", str(dirs["rtml"] / "member-0"), str(stores["c2h4"]),
                      "--shots", str(k), *FEWSHOT_SPLIT, "--threads", str(threads), "-q", "-o",
                      str(out[f"adapt-K{k}"])], work / "logs" / f"adapt_K{k}.log"))
        out[f"linear-K{k}"] = work / "fewshot" / f"linear-K{k}"
        if not (out[f"linear-K{k}"] / "model.pt").is_file():
            jobs.append((["rtml", "train", str(stores["c2h4"]), "--model", "linear", "--shots",
                          str(k), *FEWSHOT_SPLIT, "-q", "-o", str(out[f"linear-K{k}"])],
                         work / "logs" / f"linear_K{k}.log"))
    print("few-shot:", flush=True)
    run_parallel(jobs, n_jobs)
    return out


def score(model, ds, rows, mol: str) -> list[dict]:
    """Per-trajectory metrics of 1000-step rollouts (:func:`rtml.evaluate.evaluate_trajectory`)."""
    from rtml.evaluate import evaluate_trajectory, reference

    out = []
    for row in rows:
        ref = reference(ds, row, mol)
        m = evaluate_trajectory(model, ref, horizons=(100, 1000))
        n = float(np.sum(ref.n_per_spin))
        out.append({"trajectory": str(ds.traj_id.values[row]), "valid_horizon": m["valid_horizon"],
                    "e_at_1000": m.get("rollout_error_at_1000", float("nan")),
                    "e_at_100": m.get("rollout_error_at_100", float("nan")),
                    "dipole_nrmse": m["dipole_nrmse"], "one_step_mse": m["one_step_mse"],
                    "trace_error_rel": m["trace_error"] / n,
                    "hermiticity_error": m["hermiticity_error"],
                    "min_occupation": m["min_eigenvalue"], "static": m["static_reference"]})
    return out


def summary_row(model: str, case: str, mol: str, items: list[dict]) -> dict:
    def med(key):
        values = [r[key] for r in items if not np.isnan(r[key])]
        return float(np.median(values)) if values else float("nan")
    return {"model": model, "case": case, "molecule": mol, "n": len(items),
            "median_valid_horizon": med("valid_horizon"), "median_e_at_1000": med("e_at_1000"),
            "median_relative_mse_1000": med("e_at_1000") ** 2,
            "median_dipole_nrmse": med("dipole_nrmse"), "one_step_mse": med("one_step_mse"),
            "max_trace_error_rel": max(r["trace_error_rel"] for r in items),
            "max_hermiticity_error": max(r["hermiticity_error"] for r in items),
            "min_occupation": min(r["min_occupation"] for r in items)}


def evaluate(work: Path, stores: dict, dirs: dict, few: dict, only=None) -> list[dict]:
    from rtml.data import open_store_groups, trajectory_splits
    from rtml.model import LinearResponsePropagator, PersistenceModel, load_model

    models = {name: load_model(d)[0] for name, d in dirs.items()
              if only is None or name in only or name == "rtml member-0"}
    models["persistence"] = PersistenceModel()
    # the exact step with ΔG linear in ΔP and nothing learned: what the default model
    # (learned="xc-nonlinear") is with its gates closed, so the rows show what learning adds
    models["lr-tddft"] = LinearResponsePropagator()
    rows = []

    def add(name, case, mol, ds, which):
        if only is not None and name not in only:
            return
        # rows are cached (WORK/rows): a rerun with more models computes only the new ones
        cache = work / "rows" / f"{name}__{case}__{mol}.json".replace(" ", "_").replace("=", "")
        if cache.is_file():
            rows.append(json.loads(cache.read_text()))
        else:
            items = score(models[name] if name in models else load_model(few[name])[0], ds, which, mol)
            rows.append(summary_row(name, case, mol, items) | {"trajectories": items})
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(rows[-1], default=float))
        r = rows[-1]
        print(f"  {name:12s} {case:22s} {mol:5s} n {r['n']:3d} vh {r['median_valid_horizon']:6.0f} "
              f"e@1000 {r['median_e_at_1000']:.3f} dip {r['median_dipole_nrmse']:.3f} "
              f"trace/N {r['max_trace_error_rel']:.1e} occ {r['min_occupation']:.1e}", flush=True)

    print("evaluation (1000-step rollouts):", flush=True)
    ladder = open_store_groups(stores["ladder"])
    splits = trajectory_splits(ladder, (0.8, 0.1, 0.1), 0)
    for mol, ds in ladder.items():
        for name in [n for n in ("rtml", "rtml-mlp", "lr-tddft", "linear", "persistence")
                     if n in models]:
            add(name, "held-out geometries", mol, ds, splits[mol]["test"])
    c2h4 = open_store_groups(stores["c2h4"])["c2h4"]
    all_c2h4 = list(range(c2h4.sizes["traj_id"]))
    for name in [n for n in ("rtml", "roadmap", "lr-tddft", "persistence") if n in models]:
        add(name, "zero-shot (all)", "c2h4", c2h4, all_c2h4)
    if "c6h6" in stores:
        c6h6 = open_store_groups(stores["c6h6"])["c6h6"]
        for name in [n for n in ("rtml", "lr-tddft", "persistence") if n in models]:
            add(name, "zero-shot (all)", "c6h6", c6h6, list(range(c6h6.sizes["traj_id"])))
    test = trajectory_splits({"c2h4": c2h4}, (0.6, 0.15, 0.25), 2)["c2h4"]["test"]
    if only is None or "rtml member-0" in only:
        models["rtml member-0"] = load_model(dirs["rtml"] / "member-0")[0]
    add("rtml member-0", "few-shot K=0", "c2h4", c2h4, test)
    add("lr-tddft", "few-shot test", "c2h4", c2h4, test)
    add("persistence", "few-shot test", "c2h4", c2h4, test)
    for name in few:
        k = name.rsplit("K", 1)[1]
        add(name, f"few-shot K={k}", "c2h4", c2h4, test)
    return rows


def print_table(rows: list[dict]) -> None:
    print(f"\n{'model':14s} {'case':22s} {'mol':5s} {'n':>3s} {'med vh':>7s} {'med e@1000':>10s} "
          f"{'rel MSE':>8s} {'dip nRMSE':>9s} {'|TrPS-N|/N':>10s} {'herm':>8s} {'min occ':>9s}")
    for r in rows:
        print(f"{r['model']:14s} {r['case']:22s} {r['molecule']:5s} {r['n']:3d} "
              f"{r['median_valid_horizon']:7.0f} {r['median_e_at_1000']:10.3f} "
              f"{r['median_relative_mse_1000']:8.3f} {r['median_dipole_nrmse']:9.3f} "
              f"{r['max_trace_error_rel']:10.1e} {r['max_hermiticity_error']:8.1e} "
              f"{r['min_occupation']:9.1e}")


def check_one_step_mse(model_dir, trajectory_file, store) -> float:
    """One-step MSE of the model at ``model_dir`` on the trajectory file, through a store
    (what the card records and the tests reproduce)."""
    from rtml.data import open_store_groups, trajectory_data
    from rtml.model import load_model

    if not Path(store).exists():
        subprocess.run(["rtml", "dataset", "assemble", "-q", "-o", str(store), str(trajectory_file)],
                       check=True)
    ds = open_store_groups(store)[CHECK["molecule"]]
    data = trajectory_data(ds, 0, CHECK["molecule"])
    pred = load_model(model_dir)[0].one_step(data)
    return float(np.mean(np.abs(pred - data.rho[1:]) ** 2))


def check_entry(model_dir: Path, work: Path) -> dict:
    """The card's check: the shipped weights' one-step MSE on a tiny LiH trajectory."""
    out = work / "check" / "check.h5"
    if not out.is_file():
        run(["rtml", "propagate", CHECK["molecule"], "--field", CHECK["field"], "--dt",
             str(CHECK["dt"]), "--steps", str(CHECK["steps"]), "--grid-level",
             str(CHECK["grid_level"]), "-q", "-o", str(out)], work / "logs" / "check.log")
    mse = check_one_step_mse(model_dir, out, work / "check" / "check.zarr")
    return {**CHECK, "one_step_mse": mse, "rtol": 1e-3}


def write_card(name: str, work: Path, stores: dict, dirs: dict, rows: list[dict]) -> Path:
    from rtml.data import open_store_groups
    from rtml.model import ensemble_members, load_model, model_sha256

    ens = dirs["rtml"]
    members = [m.name for m in ensemble_members(ens)]
    state = load_model(ens)[1]  # the first member's model.pt (members share data and split)
    store_hash = state["dataset_sha256"]
    counts = {m: int(ds.sizes["traj_id"]) for m, ds in open_store_groups(stores["ladder"]).items()}
    card = {
        "name": name, "format": 1,
        "description": f"rtml ensemble of {len(members)} ({state['config'].get('dynamics')} "
                       f"dynamics, learned='{state['config'].get('learned')}'), trained on the "
                       "medium config's rungs 1-6 (H2+, H2, LiH, H2O, NH3, CH4), PBE0/6-31G",
        "units": "atomic units; geometry in Å; AO order PySCF's",
        "data": {"config": "workflow/config/medium.yaml", "store": "ladder (rungs 1-6)",
                 "store_sha256": store_hash, "trajectories": counts,
                 "summary": f"medium config (PBE0/6-31G, grid 3, dt 0.2, 1000 steps): "
                            f"{sum(counts.values())} trajectories of "
                            f"{', '.join(f'{m} {n}' for m, n in counts.items())}"},
        "settings": {"train_config": state["train_config"], "model_config": state["config"],
                     "members": members},
        "hashes": {"model_sha256": model_sha256(ens),
                   "members": {m: hashlib.sha256((ens / m / "model.pt").read_bytes()).hexdigest()
                               for m in members}},
        "metrics": [{k: v for k, v in r.items() if k != "trajectories"} for r in rows],
        "check": check_entry(ens, work),
    }
    ladder_rows = [r for r in rows if r["model"] == "rtml" and r["case"] == "held-out geometries"]
    zero = [r for r in rows if r["model"] == "rtml" and r["case"].startswith("zero-shot")]
    card["summary"] = (
        ["held-out geometries (median valid horizon, steps): "
         + ", ".join(f"{r['molecule']} {r['median_valid_horizon']:.0f}" for r in ladder_rows)]
        + [f"zero-shot {r['molecule']}: median valid horizon {r['median_valid_horizon']:.0f}, "
           f"e@1000 {r['median_e_at_1000']:.3f}" for r in zero])
    (ens / "card.json").write_text(json.dumps(card, indent=1, default=float) + "\n")
    lines = [f"# Model card: {name}", "", card["description"] + ".", "",
             f"- Data: {card['data']['config']}, store sha256 {store_hash[:16]}…",
             f"- Members: {', '.join(members)} (initial-weight seeds 0..{len(members) - 1}, split "
             "seed 0, fractions 0.8/0.1/0.1 by geometry)",
             f"- Ensemble sha256: {card['hashes']['model_sha256']}",
             f"- Check: one-step MSE {card['check']['one_step_mse']:.6e} on {CHECK}", "",
             "| model | case | molecule | n | median valid horizon | median e@1000 | rel. MSE | "
             "dipole nRMSE | max abs(Tr PS - N)/N | max Hermiticity | min occupation |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in card["metrics"]:
        lines.append(f"| {r['model']} | {r['case']} | {r['molecule']} | {r['n']} | "
                     f"{r['median_valid_horizon']:.0f} | {r['median_e_at_1000']:.3f} | "
                     f"{r['median_relative_mse_1000']:.3f} | {r['median_dipole_nrmse']:.3f} | "
                     f"{r['max_trace_error_rel']:.1e} | {r['max_hermiticity_error']:.1e} | "
                     f"{r['min_occupation']:.1e} |")
    (ens / "MODEL_CARD.md").write_text("\n".join(lines) + "\n")
    target = REPO / "rtml" / "model" / "pretrained" / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for item in ["ensemble.json", "card.json", "MODEL_CARD.md"]:
        shutil.copy2(ens / item, target / item)
    for m in members:
        (target / m).mkdir()
        for item in ["model.pt", "train_metrics.csv"]:
            shutil.copy2(ens / m / item, target / m / item)
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file()) / 1e6
    print(f"shipped {target} ({size:.1f} MB)")
    return target


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="the medium run's results dir")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--members", type=int, default=3)
    parser.add_argument("--sequence-epochs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of each rtml training (default: rtml train's)")
    parser.add_argument("--jobs", type=int, default=2, help="processes at a time")
    parser.add_argument("--threads", type=int, default=1, help="threads of each training and adapt process")
    parser.add_argument("--shots", default="5,10,20", help="few-shot K values ('' for none)")
    parser.add_argument("--mlp", action="store_true", help="also train the MLP ablation")
    parser.add_argument("--roadmap", action="store_true", help="also train on rungs 1-5 only")
    parser.add_argument("--stage", choices=["stores", "train", "fewshot", "all"], default="all")
    parser.add_argument("--no-train", action="store_true",
                        help="evaluate the models already trained in WORK (run nothing)")
    parser.add_argument("--eval-models", default=None, type=lambda t: t.split(","),
                        help="evaluate only these rows' models (comma-separated names)")
    parser.add_argument("--card", default=None, metavar="NAME",
                        help="write the model card and ship the ensemble as NAME")
    args = parser.parse_args(argv)
    work = args.work
    stores = make_stores(args.results, work)
    if args.stage == "stores":
        return 0
    if args.no_train:  # evaluate what is there (e.g. baselines while members still train)
        dirs = {"rtml": work / "models" / "rtml", "linear": work / "models" / "linear"}
        dirs.update({n: work / "models" / n for n in ("rtml-mlp", "roadmap")
                     if (work / "models" / n / "model.pt").is_file()})
    else:
        dirs = train(work, stores, args)
    if args.stage == "train":
        return 0
    few = fewshot(work, stores, dirs, [int(k) for k in args.shots.split(",") if k], args.jobs,
                  args.threads)
    if args.stage == "fewshot":
        return 0
    rows = evaluate(work, stores, dirs, few, args.eval_models)
    (work / "results.json").write_text(json.dumps(rows, indent=1, default=float))
    print_table(rows)
    if args.card:
        write_card(args.card, work, stores, dirs, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
