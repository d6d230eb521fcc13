"""`snakemake --lint` is clean and both profiles load (CLI, in a temporary directory)."""

import os
import subprocess

from smk_helpers import REPO


def _snakemake(*args, cwd, env=None):
    return subprocess.run(["snakemake", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_lint_is_clean(tmp_path):
    run = _snakemake("--lint", "--snakefile", str(REPO / "Snakefile"), "--directory",
                     str(tmp_path), cwd=REPO)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert "Lints for" not in out, out
    assert "Congratulations" in out


def test_profiles_load_and_plan(tmp_path):
    common = ("--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
              "--dry-run", "train_lih")
    local = _snakemake("--profile", "profiles/local", *common, cwd=REPO)
    assert local.returncode == 0, local.stderr
    env = {"RTML_SLURM_ACCOUNT": "acct", "RTML_SLURM_PARTITION": "cpu",
           "RTML_SLURM_GPU_PARTITION": "gpu"}
    slurm = _snakemake("--profile", "profiles/slurm", *common, cwd=REPO, env=env)
    out = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, out
    assert "slurm_account=acct" in out and "slurm_partition=cpu" in out
    train = out[out.index("rule train:"):]
    assert "slurm_partition=gpu" in train.split("rule ")[1] and "gpu=1" in train
    assert not (REPO / "profiles" / "default").exists()


def test_slurm_profile_trains_on_cpus_without_gpu_partition(tmp_path):
    """No RTML_SLURM_GPU_PARTITION: train jobs ask for no GPU, in the normal partition
    (a GPU request on a cluster without GPUs makes sbatch refuse the job)."""
    env = {"RTML_SLURM_ACCOUNT": "acct", "RTML_SLURM_PARTITION": "cpu",
           "RTML_SLURM_GPU_PARTITION": ""}
    slurm = _snakemake("--profile", "profiles/slurm", "--snakefile", str(REPO / "Snakefile"),
                       "--directory", str(tmp_path), "--dry-run", "train_lih", cwd=REPO, env=env)
    out = slurm.stdout + slurm.stderr
    assert slurm.returncode == 0, out
    train = out[out.index("rule train:"):].split("rule ")[1]
    assert "slurm_partition=cpu" in train and "gpu=0" in train, train
