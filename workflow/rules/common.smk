# Shared by all the workflow files: config validation, the plan of all outputs, input
# functions and wildcard constraints. Everything computed here comes from rtml.workflow;
# this file defines no rules.

import shlex
from pathlib import Path
from snakemake.exceptions import WorkflowError

from rtml.workflow import ConfigError, WorkflowPlan, validate_config

# Validate against workflow/schemas/config.schema.yaml, fill in its defaults and check
# what a schema cannot (field plan large enough, training sets name configured molecules).
# Fails before the DAG is built, naming every offending key.
try:
    validate_config(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
except ConfigError as error:
    raise WorkflowError(str(error)) from None

PLAN = WorkflowPlan(config)
RESULTS = PLAN.results
MOLECULES = PLAN.molecules
TRAINING_SETS = PLAN.training_sets


# (a regex quantifier such as {2,} breaks Snakemake's wildcard patterns: write \d\d+)
wildcard_constraints:
    mol="|".join(MOLECULES),
    geom=r"g\d\d+",
    set=r"[A-Za-z][A-Za-z0-9_]*",
    ablation="rtml|rtml-mlp|linear",


def options(**flags):
    """Command-line options from keyword arguments: None, False and [] are left out,
    True gives a bare flag, a list gives one --flag with several values; '_' -> '-'."""
    parts = []
    for name, value in flags.items():
        flag = f"--{name.replace('_', '-')}"
        if value is None or value is False or value == []:
            continue
        if value is True:
            parts.append(flag)
        elif isinstance(value, (list, tuple)):
            parts.append(" ".join([flag] + [shlex.quote(str(v)) for v in value]))
        else:
            parts.append(f"{flag} {shlex.quote(str(value))}")
    return " ".join(parts)


def sampling_options():
    """Optional sample-geometries flags (Hessian level of theory)."""
    s = config["sampling"]
    return options(hessian_xc=s["hessian_xc"], hessian_basis=s["hessian_basis"])


def theory_options():
    """--xc/--basis/--grid-level shared by the ground-state and propagation jobs."""
    lot = config["level_of_theory"]
    return options(xc=lot["xc"], basis=lot["basis"], grid_level=lot["grid_level"])


def molecule_argument(mol):
    """The MOLECULE argument of the jobs of `mol`: its ladder name, or the geometry file of
    a molecule of your own (molecules.<mol>.file)."""
    return shlex.quote(PLAN.source(mol))


def molecule_files(wildcards):
    """The geometry file of a molecule of your own, an input of its geometry sampling."""
    return PLAN.source_files(wildcards.mol)


def field_options(mol):
    """One --field SPEC per trajectory of each geometry of `mol` (the field plan)."""
    return " ".join(f"--field {shlex.quote(spec)}" for spec in PLAN.fields(mol))


def trajectory_outputs(mol):
    """Trajectory files of one geometry of `mol`, with a {geom} wildcard."""
    return PLAN.trajectory_files(mol)


def geometry_file(wildcards, input):
    """The sampled geometry of a job, inside the molecule's geometry directory."""
    return f"{input.geometries}/{wildcards.geom}.xyz"


def get_set_trajectories(wildcards):
    """Every trajectory file of the molecules of training set {set}, nothing else."""
    return PLAN.set_trajectories(wildcards.set)


def get_all_trajectories():
    return PLAN.all_trajectories()


def train_options(wildcards):
    """Optional train flags of training set {set} (held-out molecules)."""
    tset = config["training_sets"][wildcards.set]
    return options(held_out_molecules=tset["held_out_molecules"])


def ensemble_train_options(wildcards):
    """The train flags of training set {set} and its ensemble's size (--members N)."""
    tset = config["training_sets"][wildcards.set]
    return options(held_out_molecules=tset["held_out_molecules"], members=tset["ensemble"])


def evaluate_options():
    return options(baselines=",".join(config["evaluate"]["baselines"]) or None)


def ablation_models(wildcards):
    """Models of the ablations of training set {set}, evaluated beside its model."""
    return PLAN.ablation_models(wildcards.set)


def compare_options(wildcards):
    return options(compare=[str(Path(m).parent) for m in ablation_models(wildcards)])


def get_final_output():
    """What the default target asks for: the full dataset, every set's model and evaluation."""
    return PLAN.final_outputs()


def resource(stage, name, mol=None):
    """Resource function (wildcards, attempt) of a stage; see rtml.workflow.resources."""
    return PLAN.resource(stage, name, mol)


def ensemble_runtime(wildcards, attempt):
    """Runtime (minutes) of an ensemble job: a training's for each member, one after another."""
    return resource("train", "runtime")(wildcards, attempt) * PLAN.ensemble_members(wildcards.set)


def threads_of(stage, mol=None):
    return PLAN.threads(stage, mol)
