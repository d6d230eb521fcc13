"""Each profile selects its config: `snakemake --profile profiles/slurm -n all` plans the
research plan (655 trajectories), `--profile profiles/local` the quick config, and a
`--configfile` on the command line replaces the profile's (as tests/slurm relies on).

The dry runs go through the command line exactly as a user types them, from the repository
root, with no SLURM client on PATH and no RTML_SLURM_* variables: planning needs no cluster.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rtml.workflow import WorkflowPlan, load_config
from smk_helpers import DEFAULT_CONFIG, FULL_CONFIG, REPO, write_config

#: `rule NAME:` or `localrule NAME:` at the start of a job in Snakemake's dry-run listing
JOB_HEADER = re.compile(r"^(?:local)?rule (\S+):$")


def _bare_env(tmp_path: Path) -> dict:
    """The environment without SLURM: PATH holds only `which` and `bash` (the SLURM executor
    plugin runs `which sacct`/`which squeue` to pick its status command, even for a dry run;
    Snakemake looks for bash)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("which", "bash"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RTML_SLURM_", "SLURM_"))}
    env["PATH"] = str(bin_dir)
    return env


def _dry_run(tmp_path: Path, *args: str) -> dict[str, list[str]]:
    """`snakemake --directory TMP ARGS` from the repository root; outputs per rule name."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "--directory", str(tmp_path / "run"),
                          *args],
                         cwd=REPO, env=_bare_env(tmp_path), capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    outputs: dict[str, list[str]] = {}
    rule = None
    for line in run.stdout.splitlines():
        if header := JOB_HEADER.match(line):
            rule = header.group(1)
        elif rule and line.startswith("    output: "):
            outputs.setdefault(rule, []).extend(line.removeprefix("    output: ").split(", "))
    return outputs


def _trajectory_files(outputs: dict[str, list[str]]) -> list[str]:
    return [f for rule, files in outputs.items() if rule.startswith("propagate_")
            for f in files if f.endswith(".h5")]


def _planned_trajectories(config_file: Path) -> set[str]:
    return set(WorkflowPlan(load_config(config_file)).all_trajectories())


def test_slurm_profile_dry_run_lists_the_655_trajectories_of_the_research_plan(tmp_path):
    files = _trajectory_files(_dry_run(tmp_path, "--profile", "profiles/slurm", "-n", "all"))
    assert len(files) == len(set(files)) == 655
    assert set(files) == _planned_trajectories(FULL_CONFIG)


def test_local_profile_plans_the_quick_config(tmp_path):
    files = _trajectory_files(_dry_run(tmp_path, "--profile", "profiles/local", "-n", "all"))
    quick = _planned_trajectories(DEFAULT_CONFIG)
    assert set(files) == quick and len(files) == len(quick)
    assert len(quick) < 100, "the quick config is a smoke test, not the research plan"


@pytest.mark.parametrize("profile", ["profiles/slurm", "profiles/local"])
def test_command_line_configfile_replaces_the_profile_config(tmp_path, profile):
    config = {"molecules": {"h2p": {"geometries": 1, "trajectories": 1},
                            "h2": {"geometries": 1, "trajectories": 1}},
              "training_sets": {"small": {"molecules": ["h2p", "h2"], "split_by": "molecule",
                                          "held_out_molecules": ["h2p"]}}}
    tiny = write_config(tmp_path / "tiny.yaml", config)
    outputs = _dry_run(tmp_path, "--profile", profile, "-n", "--configfile", str(tiny),
                       "--replace-workflow-config", "--", "all")
    assert sorted(_trajectory_files(outputs)) == sorted(_planned_trajectories(tiny))
    assert len(_trajectory_files(outputs)) == 2
