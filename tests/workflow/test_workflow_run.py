"""A real local run of a tiny config: H2 and LiH, 2-3 geometries x 2 fields, 50 steps.

``train_lih`` plus the full dataset, then the store is checked array by array against the
trajectory HDF5 files; then ``evaluate_lih`` and the HTML report.
"""

import os
import subprocess

import pytest

from smk_helpers import (REPO, SNAKEFILE, assert_store_matches_files, h5_files,
                         snakemake_run, write_config)

TINY = {
    "molecules": {"h2": {"geometries": 2, "trajectories": 2},
                  "lih": {"geometries": 3, "trajectories": 2}},  # 3: train/val/test
    "level_of_theory": {"grid_level": 1},
    "ground_state": {"nstates": 4},
    "propagation": {"dt": 0.2, "steps": 50, "checkpoint_every": 25},
    "fields": {"gaussian": {"t0": 5.0, "sigma": 2.0},
               "resonant": {"duration": 10.0, "count": 1}},
    "training_sets": {"lih": {"molecules": ["lih"]}, "tiny": {"molecules": ["h2", "lih"]}},
    "train": {"window": 4, "epochs": 1, "threads": 1},
}

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # keep going: the data checks below stand even if training fails
    dag = snakemake_run(workdir, ["train_lih", "results/dataset.zarr"], config=TINY,
                        dryrun=False, cores=2, keep_going=True)
    return workdir, dag


def test_run_makes_whole_dataset_and_only_the_lih_set(tiny_run):
    workdir, dag = tiny_run
    results = workdir / "results"
    assert dict(dag.counts) == {"sample_geometries": 2, "ground_state": 5, "propagate_h2": 2,
                                "propagate_lih": 3, "assemble": 1, "assemble_all": 1,
                                "train": 1, "train_lih": 1}
    assert not (results / "models" / "tiny").exists()
    assert not (results / "datasets" / "tiny.zarr").exists()
    assert len(h5_files(workdir)) == 10
    assert not list(results.rglob("*.ckpt")), "checkpoints are removed after success"
    for log in ("sample_geometries/lih.log", "ground_state/lih/g01.log",
                "propagate/lih/g01.log", "propagate/h2/g00.log", "assemble/lih.log",
                "assemble/all.log", "train/lih.log"):
        assert (results / "logs" / log).is_file(), log


def test_train_lih_makes_the_model(tiny_run):
    workdir, dag = tiny_run
    log = workdir / "results" / "logs" / "train" / "lih.log"
    assert dag.error is None, log.read_text() if log.exists() else dag.error
    model_dir = workdir / "results" / "models" / "lih"
    assert (model_dir / "model.pt").stat().st_size > 0
    assert (model_dir / "train_metrics.csv").stat().st_size > 0


def test_full_store_matches_hdf5_files(tiny_run):
    workdir, _ = tiny_run
    assert_store_matches_files(workdir / "results" / "dataset.zarr", h5_files(workdir))


def test_set_store_holds_only_its_molecules(tiny_run):
    from rtml.data import open_dataset

    workdir, _ = tiny_run
    store = workdir / "results" / "datasets" / "lih.zarr"
    assert list(open_dataset(store)) == ["lih"]
    lih_files = [f for f in h5_files(workdir) if "/lih/" in str(f)]
    assert_store_matches_files(store, lih_files)


def test_evaluate_and_report(tiny_run):
    workdir, first = tiny_run
    assert first.error is None, "training failed (see test_train_lih_makes_the_model)"
    dag = snakemake_run(workdir, ["evaluate_lih"], config=TINY, dryrun=False, cores=2)
    assert dict(dag.counts) == {"evaluate": 1, "evaluate_lih": 1}
    evaluation = workdir / "results" / "evaluation" / "lih"
    for name in ("metrics.json", "metrics.tsv", "dipole.png", "error_vs_horizon.png",
                 "spectrum.png"):
        assert (evaluation / name).stat().st_size > 0, name
    lines = (evaluation / "metrics.tsv").read_text().splitlines()
    assert len(lines) >= 2  # header + the trained model (+ baselines)
    report = workdir / "report.html"
    run = subprocess.run(
        ["snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
         "--configfile", str(write_config(workdir / "report-config.yaml", TINY)),
         "--replace-workflow-config", "--report", str(report), "evaluate_lih"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    html = report.read_text(errors="replace")
    for name in ("metrics.tsv", "dipole.png", "error_vs_horizon.png", "spectrum.png",
                 "train_metrics.csv"):
        assert name in html, name


def test_ensemble_of_the_set_is_trained_and_calibrated(tiny_run):
    """train.ensemble 2 on the same data: only the ensemble's two jobs run (the set's model
    and evaluation stand), its members are listed in ensemble.json and its evaluation
    writes the spread-error calibration for the set's molecules."""
    import json

    workdir, first = tiny_run
    assert first.error is None, "training failed (see test_train_lih_makes_the_model)"
    config = {**TINY, "training_sets": {**TINY["training_sets"],
                                        "lih": {"molecules": ["lih"], "ensemble": 2}}}
    dag = snakemake_run(workdir, ["evaluate_lih"], config=config, dryrun=False, cores=2)
    assert dag.counts["train_ensemble"] == dag.counts["evaluate_ensemble"] == 1
    assert "train" not in dag.counts
    ensemble = workdir / "results" / "models" / "lih" / "ensemble"
    assert json.loads((ensemble / "ensemble.json").read_text())["members"] == ["member-0", "member-1"]
    for k in (0, 1):
        assert (ensemble / f"member-{k}" / "model.pt").stat().st_size > 0
    evaluation = workdir / "results" / "evaluation" / "lih" / "ensemble"
    calibration = json.loads((evaluation / "calibration.json").read_text())
    assert set(calibration["monotonic"]) == {"one_step", "rollout"}
    assert "lih" in calibration["one_step"]
    assert (evaluation / "calibration.png").stat().st_size > 0
