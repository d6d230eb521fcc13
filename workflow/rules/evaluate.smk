# Evaluation: each set's model, its ablations and the baselines on its own dataset, in one
# table; metrics and plots go into the Snakemake report. Targets evaluate_<set>.


rule evaluate:
    input:
        store=f"{RESULTS}/datasets/{{set}}.zarr",
        model=f"{RESULTS}/models/{{set}}/model.pt",
        ablations=ablation_models,
    output:
        metrics_json=f"{RESULTS}/evaluation/{{set}}/metrics.json",
        metrics=report(
            f"{RESULTS}/evaluation/{{set}}/metrics.tsv",
            caption="../report/metrics.rst",
            category="Evaluation",
            subcategory="{set}",
            labels={"training set": "{set}", "output": "metrics table"},
        ),
        dipole=report(
            f"{RESULTS}/evaluation/{{set}}/dipole.png",
            caption="../report/dipole.rst",
            category="Evaluation",
            subcategory="{set}",
            labels={"training set": "{set}", "output": "dipole rollout"},
        ),
        horizon=report(
            f"{RESULTS}/evaluation/{{set}}/error_vs_horizon.png",
            caption="../report/error_vs_horizon.rst",
            category="Evaluation",
            subcategory="{set}",
            labels={"training set": "{set}", "output": "error vs horizon"},
        ),
        spectrum=report(
            f"{RESULTS}/evaluation/{{set}}/spectrum.png",
            caption="../report/spectrum.rst",
            category="Evaluation",
            subcategory="{set}",
            labels={"training set": "{set}", "output": "kick spectrum"},
        ),
    log:
        f"{RESULTS}/logs/evaluate/{{set}}.log",
    conda:
        "../envs/rtml.yaml"
    threads: lookup(dpath="evaluate/threads", within=config)
    resources:
        mem_mb=resource("evaluate", "mem_mb"),
        runtime=resource("evaluate", "runtime"),
    params:
        model_dir=subpath(input.model, parent=True),
        outdir=subpath(output.metrics_json, parent=True),
        options=evaluate_options(),
        compare=compare_options,
    shell:
        "rtml evaluate {input.store} --model {params.model_dir} {params.options} {params.compare}"
        " --threads {threads}"
        " -o {params.outdir} > {log} 2>&1"


# The set's ensemble (train.ensemble), evaluated on the same test split with the calibration
# of its spread against its error (rtml evaluate writes it for an ensemble).
use rule evaluate as evaluate_ensemble with:
    input:
        store=f"{RESULTS}/datasets/{{set}}.zarr",
        model=f"{RESULTS}/models/{{set}}/ensemble/ensemble.json",
    output:
        metrics_json=f"{RESULTS}/evaluation/{{set}}/ensemble/metrics.json",
        calibration_json=f"{RESULTS}/evaluation/{{set}}/ensemble/calibration.json",
        calibration=report(
            f"{RESULTS}/evaluation/{{set}}/ensemble/calibration.png",
            caption="../report/calibration.rst",
            category="Evaluation",
            subcategory="{set}",
            labels={"training set": "{set}", "output": "ensemble calibration"},
        ),
    log:
        f"{RESULTS}/logs/evaluate/{{set}}-ensemble.log",
    params:
        compare="",


for _set in TRAINING_SETS:

    rule:
        name:
            f"evaluate_{_set}"
        input:
            PLAN.evaluation_files(_set),
