# rtml: RT-TDDFT trajectories from PySCF -> Zarr datasets -> models -> evaluation.
# Usage: snakemake --profile profiles/local [all | train_<set> | evaluate_<set>]
# The config is documented in workflow/config/README.md and validated against
# workflow/schemas/config.schema.yaml.

from snakemake.utils import min_version

min_version("9.0")


configfile: f"{workflow.basedir}/workflow/config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/assemble.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"


# Light rules run on the submitting host, never as cluster jobs.
localrules:
    all,
    assemble,
    assemble_all,


rule all:
    default_target: True
    input:
        get_final_output(),
