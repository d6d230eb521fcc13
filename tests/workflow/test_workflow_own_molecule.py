"""A molecule of your own in the workflow config: ``molecules: {heh: {file: mine/heh.xyz}}``
(README "Your own molecule", workflow/config/README.md). The config loader accepts it and
refuses what cannot run, naming the key; Snakemake plans and runs it like a ladder molecule."""

import h5py
import pytest
from snakemake.exceptions import WorkflowError

from rtml.workflow import ConfigError, WorkflowPlan, validate_config
from smk_helpers import snakemake_run

#: HeH+ at RT-TDHF/STO-3G: charge and multiplicity from the extended-XYZ comment line
HEH_XYZ = """2
charge=1 multiplicity=1 basis=sto-3g xc=hf
He  0.000  0.000  0.000
H   0.000  0.000  0.774
"""


def _config(file="mine/heh.xyz", name="heh", **molecule):
    return {"molecules": {"lih": {"geometries": 3, "trajectories": 2},
                          name: {"file": file, "geometries": 3, "trajectories": 2, **molecule}},
            "propagation": {"steps": 50}, "train": {"window": 4},
            "training_sets": {"both": {"molecules": ["lih", name], "held_out_molecules": [name]}}}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A working directory holding mine/heh.xyz (relative config paths start here)."""
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "heh.xyz").write_text(HEH_XYZ)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_config_accepts_a_molecule_of_your_own(workdir):
    plan = WorkflowPlan(validate_config(_config()))
    assert plan.molecules == ["lih", "heh"]
    assert plan.source("heh") == "mine/heh.xyz" and plan.source("lih") == "lih"
    # a linear molecule in an s-only basis responds only along its axis (z)
    assert plan.fields("heh") == ["kick:0.001:z", "gaussian:0.01:0.1:50.0:10.0:z"]
    assert plan.nbf("heh") == 2
    assert len(plan.set_trajectories("both")) == 3 * 2 + 3 * 2


@pytest.mark.parametrize("config,key,words", [
    (_config(file="mine/nothere.xyz"), "molecules.heh.file", "no such file 'mine/nothere.xyz'"),
    (_config(name="mymol"), "molecules.mymol.file", "stem 'heh' is not the molecule's name"),
    (_config(name="h2"), "molecules.h2.file", "'h2' is a ladder molecule"),
    (_config(file="mine/heh.txt"), "molecules.heh.file", "does not match"),
    (_config(charge=1), "molecules.heh.charge", "read from the molecule's geometry file"),
    ({"molecules": {"heh": {"geometries": 1}}}, "molecules.heh",
     "a molecule of your own needs its geometry file"),
])
def test_config_refuses_what_cannot_run_naming_the_key(workdir, config, key, words):
    with pytest.raises(ConfigError, match=f"config key '{key}'") as error:
        validate_config(config)
    assert words in str(error.value)


def test_impossible_charge_in_the_file_is_a_config_error(workdir):
    (workdir / "mine" / "heh.xyz").write_text(HEH_XYZ.replace("multiplicity=1", "multiplicity=2"))
    with pytest.raises(ConfigError, match="config key 'molecules.heh.file': .*multiplicity"):
        validate_config(_config())


def test_dry_run_lists_its_trajectories(workdir):
    dag = snakemake_run(workdir, ["all"], config=_config())
    heh = [f for f in dag.trajectory_files() if "/heh/" in f]
    assert sorted(heh) == sorted(f"results/trajectories/heh/g0{g}/{t}" for g in range(3)
                                 for t in ("t00-kick_0.001_z.h5",
                                           "t01-gaussian_0.01_0.1_50.0_10.0_z.h5"))
    assert dag.counts["propagate_heh"] == 3 and dag.counts["propagate_lih"] == 3


def test_missing_file_stops_snakemake_before_any_job(workdir):
    with pytest.raises(WorkflowError, match="config key 'molecules.heh.file': no such file"):
        snakemake_run(workdir, ["all"], config=_config(file="mine/nothere.xyz"))
    assert not (workdir / "results").exists()


def test_its_jobs_read_the_file(workdir):
    """Sampling, ground state and propagation of one geometry, 5 steps: the trajectory is
    HeH+ as its file says."""
    config = {"molecules": {"heh": {"file": "mine/heh.xyz"}},
              "level_of_theory": {"grid_level": 1}, "ground_state": {"nstates": 1},
              "fields": {"resonant": {"count": 1}}, "propagation": {"steps": 5}}
    out = "results/trajectories/heh/g00/t00-kick_0.001_z.h5"
    snakemake_run(workdir, [out], config=config, dryrun=False)
    with h5py.File(workdir / out, "r") as h5:
        attrs = {k: h5.attrs[k] for k in ("molecule", "charge", "multiplicity", "basis", "xc")}
    assert attrs == {"molecule": "heh", "charge": 1, "multiplicity": 1, "basis": "sto-3g",
                     "xc": "hf"}
