"""Run the workflow through ``snakemake.api.SnakemakeApi`` from the tests.

Every run uses a temporary working directory (outputs under ``<workdir>/results``) and
``replace_workflow_config=True``, so a test config replaces the Snakefile's default
config instead of being merged into it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
FULL_CONFIG = REPO / "workflow" / "config" / "full.yaml"
DEFAULT_CONFIG = REPO / "workflow" / "config" / "config.yaml"
MEDIUM_CONFIG = REPO / "workflow" / "config" / "medium.yaml"


@dataclass
class DagResult:
    """Jobs Snakemake planned (dry run) or ran: rule name and outputs of each."""

    jobs: list[tuple[str, list[str]]] = field(default_factory=list)
    error: Exception | None = None

    @property
    def counts(self) -> Counter:
        return Counter(rule for rule, _ in self.jobs)

    def outputs(self, rule_prefix: str = "") -> list[str]:
        return [f for rule, outs in self.jobs if rule.startswith(rule_prefix) for f in outs]

    def trajectory_files(self) -> list[str]:
        return [f for f in self.outputs("propagate_") if f.endswith(".h5")]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake_run(workdir: Path, targets=(), configfile: Path | None = None, *,
                  config: dict | None = None, dryrun: bool = True, cores: int = 2,
                  rerun_incomplete: bool = False, replace_config: bool = True,
                  keep_going: bool = False) -> DagResult:
    """Build the DAG for ``targets`` and execute it (dry run by default).

    Args:
        workdir: working directory of the run (created).
        configfile: a config file; with ``config``, a dict written to ``workdir``.
        replace_config: discard the Snakefile's default config (the default), else merge.
        keep_going: run what can run after a job fails; the failure is then recorded in
            ``DagResult.error`` instead of raised.

    Returns:
        The jobs that needed to run (dry run: that would run), with their outputs.

    Raises whatever Snakemake raises (``WorkflowError`` for an invalid config).
    """
    from snakemake.api import SnakemakeApi
    from snakemake.scheduling.greedy import SchedulerSettings as GreedySchedulerSettings
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        ExecutionSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
        SchedulingSettings,
        StorageSettings,
    )

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if config is not None:
        configfile = write_config(workdir / "config.yaml", config)
    configfiles = [Path(configfile).resolve()] if configfile is not None else []
    result = DagResult()
    cwd = os.getcwd()
    try:
        with SnakemakeApi(OutputSettings(quiet={Quietness.ALL}, printshellcmds=False,
                                         show_failed_logs=True)) as api:
            wf = api.workflow(
                resource_settings=ResourceSettings(cores=cores),
                config_settings=ConfigSettings(configfiles=configfiles,
                                               replace_workflow_config=replace_config),
                storage_settings=StorageSettings(),
                snakefile=SNAKEFILE,
                workdir=workdir,
            )
            dag = wf.dag(DAGSettings(targets=set(targets), force_incomplete=rerun_incomplete))
            updated: list[str] = []
            try:
                dag.execute_workflow(
                    executor="local",
                    pseudo_executor="dryrun" if dryrun else None,
                    execution_settings=ExecutionSettings(latency_wait=5, keep_going=keep_going),
                    scheduling_settings=SchedulingSettings(scheduler="greedy"),
                    scheduler_settings=GreedySchedulerSettings(),
                    updated_files=updated,
                )
            except Exception as error:
                if not keep_going or wf._workflow.dag is None:
                    raise
                result.error = error
            needed = set(updated)
            result.jobs = [(job.rule.name, [str(f) for f in job.output])
                           for job in wf._workflow.dag.jobs
                           if not job.output and job.rule.norun or needed & set(map(str, job.output))]
    finally:
        os.chdir(cwd)
    return result


def h5_files(workdir: Path) -> list[Path]:
    """Every trajectory file under ``workdir/results/trajectories``, sorted."""
    return sorted((Path(workdir) / "results" / "trajectories").rglob("*.h5"))


def assert_store_matches_files(store: Path, files: list[Path]):
    """Every array of every trajectory in ``store`` equals its HDF5 file, bit for bit."""
    import h5py
    import numpy as np

    from rtml.data import open_dataset

    groups = open_dataset(store)
    seen = []
    for molecule, ds in groups.items():
        for row in range(ds.sizes["traj_id"]):
            one = ds.isel(traj_id=row)
            source = Path(str(one["source_file"].values))
            match = [f for f in files if f.parts[-4:] == source.parts[-4:]]
            assert len(match) == 1, (molecule, source)
            seen.append(match[0])
            with h5py.File(match[0], "r") as h5:
                assert h5.attrs["molecule"] == molecule
                rho = h5["dynamics/density_real"][...] + 1j * h5["dynamics/density_imag"][...]
                np.testing.assert_array_equal(one["rho"].values, rho)
                for name in ("dipole", "field", "energy"):
                    np.testing.assert_array_equal(one[name].values, h5[f"dynamics/{name}"][...])
                # the store's time is the file's made exact (step * dt)
                np.testing.assert_allclose(one["time"].values, h5["dynamics/time"][...],
                                           rtol=0, atol=1e-12)
                np.testing.assert_array_equal(one["positions"].values,
                                              h5["geometry/positions"][...])
                np.testing.assert_array_equal(one["overlap"].values, h5["matrices/overlap"][...])
                np.testing.assert_array_equal(one["core_hamiltonian"].values,
                                              h5["matrices/core_hamiltonian"][...])
                np.testing.assert_array_equal(one["atomic_numbers"].values,
                                              h5["geometry/atomic_numbers"][...])
                for name, suffix in (("atom_index", "atom"), ("angular_momentum", "l"),
                                     ("magnetic_quantum", "m")):
                    np.testing.assert_array_equal(one[f"ao_i_{suffix}"].values,
                                                  h5[f"basis/{name}"][...])
    assert sorted(seen) == sorted(files), "every trajectory file is in the store exactly once"
