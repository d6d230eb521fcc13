"""The SLURM profile against a real SLURM 22.05 cluster on localhost.

``tests/slurm/start_cluster.sh`` starts munge, MariaDB, slurmdbd, slurmctld and slurmd
(one node with this machine's cores and memory, partitions ``main`` and ``gpu``, an account
``rtmlci``). The tiny workflow below (H2+ and H2, one geometry and one field each, 50
steps, plus a linear model) then runs twice, exactly as a user would run it, at the same
time (the SLURM run mostly waits on job start-up and status polling):

- ``snakemake --profile profiles/slurm train_small results/dataset.zarr`` with
  ``RTML_SLURM_ACCOUNT=rtmlci RTML_SLURM_PARTITION=main RTML_SLURM_GPU_PARTITION=gpu``;
- ``snakemake --profile profiles/local results/dataset.zarr`` in another directory.

The tests read ``sacct`` (accounting through slurmdbd): every non-local job went through
``sbatch``, with the account, partition, memory, time limit, CPUs and GPU that the rules and
the profile ask for; the two datasets are equal. The H2 propagation's memory is overridden
(a copy of the profile with one more ``set-resources`` entry) by an expression of
``attempt`` that is too small on the first attempt,
so SLURM kills the job for memory (OverMemoryKill) and Snakemake's ``retries`` from the
profile resubmit it with more: ``sacct`` shows both attempts.

Needs root and the Debian packages (``.ci/run`` installs them); skipped otherwise, except
with ``CI=true``, where a missing cluster fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DAEMONS = ("munged", "slurmctld", "slurmd", "slurmdbd", "sacct", "sbatch", "mariadbd",
           "mariadb-install-db")

CONFIG = {
    "molecules": {"h2p": {"geometries": 1, "trajectories": 1},
                  "h2": {"geometries": 1, "trajectories": 1}},
    "level_of_theory": {"grid_level": 1},
    "ground_state": {"nstates": 4},
    "propagation": {"dt": 0.2, "steps": 50, "checkpoint_every": 25},
    "fields": {"gaussian": {"t0": 5.0, "sigma": 2.0}},
    # one geometry per molecule: split by molecule (H2+ held out) instead of by geometry
    "training_sets": {"small": {"molecules": ["h2p", "h2"], "split_by": "molecule",
                                "held_out_molecules": ["h2p"]}},
    "train": {"model": "linear", "window": 4, "epochs": 1, "threads": 1, "mem_mb": 2000,
              "runtime": 30},
}
ACCOUNT = "rtmlci"
#: First attempt of the H2 propagation: far below what Python + PySCF need (~350 MB measured
#: for the job step), so SLURM kills it; the second attempt gets 6x that.
OOM_MEM_EXPR = "200*6**(attempt-1)"

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(900)]


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the SLURM test cluster needs root"
    missing = [exe for exe in DAEMONS if shutil.which(exe) is None]
    if missing:
        return ("SLURM/munge/MariaDB not installed (missing " + ", ".join(missing) +
                "; apt-get install munge slurmctld slurmd slurm-client slurmdbd mariadb-server)")
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running cluster: yields the environment for its clients; stops what it started."""
    reason = _unavailable()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the SLURM test, but {reason}")
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm-cluster")
    start = subprocess.run(["bash", str(HERE / "start_cluster.sh"), str(state)],
                           capture_output=True, text=True, timeout=300)
    try:
        if start.returncode != 0:
            message = f"start_cluster.sh failed: {start.stderr.strip()}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(HERE / "stop_cluster.sh"), str(state)], timeout=120)


def _snakemake(workdir: Path, profile: Path, targets: list[str], env: dict,
               extra: list[str] = (), wait: bool = True):
    """Run Snakemake with a profile in ``workdir``; its output goes to snakemake.log.

    Returns the finished process (``returncode``), or with ``wait=False`` the running one.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.yaml"
    configfile.write_text(yaml.safe_dump(CONFIG, sort_keys=False))
    cmd = ["snakemake", "--profile", str(profile), "--directory", str(workdir),
           "--configfile", str(configfile), "--replace-workflow-config", *targets, *extra]
    with open(workdir / "snakemake.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    if wait:
        proc.wait(timeout=600)
    return proc


@pytest.fixture(scope="module")
def runs(cluster, tmp_path_factory):
    """The tiny workflow through the SLURM profile, then through the local profile."""
    root = tmp_path_factory.mktemp("profiles")
    env = {**cluster, "OMP_NUM_THREADS": "1", "RTML_SLURM_ACCOUNT": ACCOUNT,
           "RTML_SLURM_PARTITION": "main", "RTML_SLURM_GPU_PARTITION": "gpu"}
    # profiles/slurm plus one set-resources entry. (On the command line, --set-resources
    # would replace the profile's set-resources, and with it the train GPU settings.)
    profile = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    profile["set-resources"]["propagate_h2"] = {"mem_mb": OOM_MEM_EXPR}
    # first status check after 2 s, not 40 s: the jobs here are short
    profile["slurm-init-seconds-before-status-checks"] = 2
    (root / "profile").mkdir()
    (root / "profile" / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))

    local = _snakemake(root / "local", REPO / "profiles" / "local", ["results/dataset.zarr"],
                       {**os.environ, "OMP_NUM_THREADS": "1"}, wait=False)
    try:
        slurm = _snakemake(root / "slurm", root / "profile",
                           ["train_small", "results/dataset.zarr"], env)
    finally:
        local.wait(timeout=600)
    return root, slurm, local


def _minutes(timelimit: str) -> int:
    """sacct Timelimit ``[D-]HH:MM:SS`` -> minutes."""
    days, _, hms = timelimit.rpartition("-")
    h, m, s = (int(x) for x in hms.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


@pytest.fixture(scope="module")
def jobs(runs, cluster):
    """sacct records of the SLURM run, grouped by the plugin's comment (rule + wildcards)."""
    root, slurm, _ = runs
    assert slurm.returncode == 0, (root / "slurm" / "snakemake.log").read_text()[-6000:]
    log = (root / "slurm" / "snakemake.log").read_text()
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    fields = ["JobIDRaw", "JobName", "Comment", "Partition", "Account", "State", "ReqMem",
              "Timelimit", "AllocCPUS", "AllocTRES"]
    out = subprocess.run(["sacct", "-X", "-P", "-n", "--starttime", "now-1days",
                          "--name", run_id, "--format", ",".join(fields)],
                         env=cluster, capture_output=True, text=True, check=True).stdout
    by_comment = defaultdict(list)
    for line in out.splitlines():
        record = dict(zip(fields, line.split("|")))
        by_comment[record["Comment"]].append(record)
    for records in by_comment.values():
        records.sort(key=lambda r: int(r["JobIDRaw"]))
    return by_comment


def _expected():
    """Threads, mem_mb and runtime (attempt 1) of each submitted job, from rtml.workflow."""
    import copy

    from rtml.workflow import WorkflowPlan, validate_config

    plan = WorkflowPlan(validate_config(copy.deepcopy(CONFIG)))

    class W(dict):
        __getattr__ = dict.__getitem__

    expected = {}
    for mol in ("h2p", "h2"):
        expected[f"rule_sample_geometries_wildcards_{mol}"] = ("sample_geometries", mol,
                                                               W(mol=mol))
        expected[f"rule_ground_state_wildcards_{mol}_g00"] = ("ground_state", mol,
                                                              W(mol=mol, geom="g00"))
        expected[f"rule_propagate_{mol}_wildcards_g00"] = ("propagate", mol, W(geom="g00"))
    expected["rule_train_wildcards_small"] = ("train", None, W(set="small"))
    out = {}
    for comment, (stage, mol, wildcards) in expected.items():
        fixed = mol if stage == "propagate" else None  # propagate_<mol> has no {mol}
        out[comment] = dict(
            threads=plan.threads(stage, mol),
            mem_mb=plan.resource(stage, "mem_mb", fixed)(wildcards, 1),
            runtime=plan.resource(stage, "runtime", fixed)(wildcards, 1),
        )
    return out


def test_every_cluster_job_went_through_sbatch_and_succeeded(jobs, runs):
    root, slurm, _ = runs
    expected = _expected()
    assert set(jobs) == set(expected), sorted(jobs)
    for comment, records in jobs.items():
        assert records[-1]["State"] == "COMPLETED", (comment, records)
    # the light rules ran on the submitting host, not as SLURM jobs
    assert not [c for c in jobs if "assemble" in c]
    assert (root / "slurm" / "results" / "models" / "small" / "model.pt").stat().st_size > 0


def test_requested_resources_reach_the_jobs(jobs):
    for comment, want in _expected().items():
        first = jobs[comment][0]
        assert first["Account"] == ACCOUNT, first
        assert first["Partition"] == ("gpu" if "rule_train" in comment else "main"), first
        assert int(first["AllocCPUS"]) == want["threads"], first
        assert _minutes(first["Timelimit"]) == want["runtime"], first
        if comment != "rule_propagate_h2_wildcards_g00":  # overridden: see the retry test
            assert first["ReqMem"] == f"{want['mem_mb']}M", first
        gpus = re.search(r"gres/gpu=(\d+)", first["AllocTRES"])
        assert (int(gpus.group(1)) if gpus else 0) == (1 if "rule_train" in comment else 0)


def test_job_killed_for_memory_is_retried_with_more(jobs, runs):
    root, _, _ = runs
    records = jobs["rule_propagate_h2_wildcards_g00"]
    assert [r["ReqMem"] for r in records] == ["200M", "1200M"], records
    assert records[0]["State"] in ("FAILED", "OUT_OF_MEMORY"), records
    assert records[1]["State"] == "COMPLETED", records
    # SLURM's own log of the killed attempt (kept because it failed) says why
    log = (root / "slurm" / ".snakemake" / "slurm_logs" / "rule_propagate_h2" / "g00" /
           f"{records[0]['JobIDRaw']}.log")
    assert "exceeded memory limit" in log.read_text(), log
    # every other job succeeded on its first attempt
    assert all(len(r) == 1 for c, r in jobs.items() if c != "rule_propagate_h2_wildcards_g00")


def test_slurm_dataset_equals_local_dataset(runs):
    from rtml.data import open_dataset

    root, _, local = runs
    assert local.returncode == 0, (root / "local" / "snakemake.log").read_text()[-6000:]
    a = open_dataset(root / "slurm" / "results" / "dataset.zarr")
    b = open_dataset(root / "local" / "results" / "dataset.zarr")
    assert list(a) == list(b) == ["h2p", "h2"]
    for molecule in a:
        _assert_same_group(a[molecule].load(), b[molecule].load())


def _assert_same_group(ds_a, ds_b):
    assert ds_a.sizes == ds_b.sizes and ds_a.sizes["traj_id"] == 1
    assert sorted(ds_a.data_vars) == sorted(ds_b.data_vars)
    for name in ds_a.data_vars:
        va, vb = ds_a[name].values, ds_b[name].values
        if name == "source_file":  # relative to each run's results directory
            va = [Path(str(p)).parts[-4:] for p in va.ravel()]
            vb = [Path(str(p)).parts[-4:] for p in vb.ravel()]
            assert va == vb
        elif va.dtype.kind in "fc":
            np.testing.assert_array_equal(va, vb, err_msg=name)
        else:
            assert (va == vb).all(), name
