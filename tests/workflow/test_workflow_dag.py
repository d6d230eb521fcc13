"""Dry runs through snakemake.api: the DAG of the research plan, targets, bad configs."""

import re
import subprocess
import sys

import pytest
from snakemake.exceptions import WorkflowError

from rtml.workflow import WorkflowPlan, load_config
from smk_helpers import FULL_CONFIG, REPO, snakemake_run, write_config


@pytest.fixture(scope="module")
def full_dag(tmp_path_factory):
    return snakemake_run(tmp_path_factory.mktemp("full"), ["all"], FULL_CONFIG)


def test_full_plan_has_655_trajectories(full_dag):
    files = full_dag.trajectory_files()
    assert len(files) == len(set(files)) == 655
    assert all(re.fullmatch(r"results/trajectories/[a-z0-9]+/g\d\d/t\d\d-.+\.h5", f) for f in files)


def test_full_plan_job_counts(full_dag):
    config = load_config(FULL_CONFIG)
    plan = WorkflowPlan(config)
    n_sets = len(config["training_sets"])
    expected = {"sample_geometries": 8, "ground_state": 79, "assemble": n_sets,
                "assemble_all": 1, "train": n_sets, "evaluate": n_sets, "all": 1}
    expected.update({f"propagate_{m}": config["molecules"][m]["geometries"]
                     for m in plan.molecules})
    assert dict(full_dag.counts) == expected
    assert sum(v for k, v in expected.items() if k.startswith("propagate_")) == 79


def test_trajectories_per_molecule_and_field_order(full_dag):
    config = load_config(FULL_CONFIG)
    plan = WorkflowPlan(config)
    files = full_dag.trajectory_files()
    for mol in plan.molecules:
        n = config["molecules"][mol]["geometries"] * config["molecules"][mol]["trajectories"]
        assert sum(f"/trajectories/{mol}/" in f for f in files) == n
    assert set(files) == set(plan.all_trajectories())


def test_train_lih_touches_only_lih(tmp_path):
    dag = snakemake_run(tmp_path, ["train_lih"], FULL_CONFIG)
    assert dict(dag.counts) == {"sample_geometries": 1, "ground_state": 7, "propagate_lih": 7,
                                "assemble": 1, "train": 1, "train_lih": 1}
    outputs = dag.outputs()
    assert len(dag.trajectory_files()) == 7 * 15
    for f in outputs:
        assert "/lih" in f, f
    assert "results/datasets/lih.zarr" in outputs
    assert not any(f.endswith("dataset.zarr") for f in outputs)


def test_evaluate_target_builds_its_model(tmp_path):
    dag = snakemake_run(tmp_path, ["evaluate_small"], FULL_CONFIG)
    counts = dag.counts
    assert counts["evaluate"] == counts["train"] == counts["assemble"] == 1
    assert counts["sample_geometries"] == 3 and counts["ground_state"] == 20 + 20 + 7
    assert set(k for k in counts if k.startswith("propagate_")) == {
        "propagate_h2p", "propagate_h2", "propagate_lih"}


def test_default_config_plans_every_stage(tmp_path):
    dag = snakemake_run(tmp_path, [], None, replace_config=False)
    for rule in ("sample_geometries", "ground_state", "assemble", "assemble_all", "train",
                 "evaluate", "all"):
        assert dag.counts[rule] >= 1, rule
    # the MLP ablation is trained for each training set and evaluated in the same table
    assert dag.counts["train_ablation"] == dag.counts["train"] == dag.counts["evaluate"]


def test_ensemble_is_trained_with_its_members_and_evaluated_with_its_calibration(tmp_path):
    """train.ensemble: one job trains the set's N members (rtml train --members N, its
    runtime N trainings'), another evaluates them with the spread-error calibration; a set
    may override the count, and 0 (the default) plans neither."""
    config = _tiny()
    config["train"]["ensemble"] = 3
    config["training_sets"]["plain"] = {"molecules": ["lih"], "ensemble": 0}
    dag = snakemake_run(tmp_path / "api", ["evaluate_lih", "evaluate_plain"], config=config)
    assert dag.counts["train_ensemble"] == dag.counts["evaluate_ensemble"] == 1
    assert dag.counts["train"] == 2
    assert {"results/evaluation/lih/ensemble/calibration.json",
            "results/evaluation/lih/ensemble/calibration.png"} <= set(dag.outputs("evaluate_ensemble"))
    assert dag.outputs("train_ensemble") == ["results/models/lih/ensemble/ensemble.json"]
    assert not any("/plain/ensemble" in f for f in dag.outputs())
    # the job's command and runtime, as the command line prints them (targets before
    # --configfile, which takes several values)
    cfg = write_config(tmp_path / "config.yaml", config)
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--directory",
                          str(tmp_path / "cli"), "evaluate_lih", "--configfile", str(cfg)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    jobs = {block.split(":", 1)[0]: block for block in re.split(r"\n(?:local)?rule ", run.stdout)}
    assert "--members 3" in jobs["train_ensemble"]
    assert "-o results/models/lih/ensemble" in jobs["train_ensemble"]
    runtime = {name: int(re.search(r"runtime=(\d+)", jobs[name]).group(1))
               for name in ("train", "train_ensemble")}
    assert runtime["train_ensemble"] == 3 * runtime["train"]


def _tiny():
    return {"molecules": {"lih": {"geometries": 3, "trajectories": 2}},
            "propagation": {"steps": 50}, "train": {"window": 4},
            "training_sets": {"lih": {"molecules": ["lih"]}}}


BAD = [
    (("propagation", "time_step"), 0.2, "propagation.time_step"),
    (("molecules", "benzene"), {"geometries": 1}, "molecules.benzene"),
    (("propagation", "dt"), -0.2, "propagation.dt"),
    (("molecules", "lih", "geometries"), 0, "molecules.lih.geometries"),
    (("molecules", "lih", "trajectories"), 40, "molecules.lih.trajectories"),
]


@pytest.mark.parametrize("path,value,key", BAD, ids=[b[2] for b in BAD])
def test_bad_config_fails_before_any_job(tmp_path, path, value, key):
    config = _tiny()
    node = config
    for k in path[:-1]:
        node = node.setdefault(k, {})
    node[path[-1]] = value
    with pytest.raises(WorkflowError, match=re.escape(f"config key '{key}'")):
        snakemake_run(tmp_path, ["all"], config=config)
    assert not (tmp_path / "results").exists()
