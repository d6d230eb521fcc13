# Training: one model per training set, read from that set's Zarr store only. Targets
# train_<set> build exactly the data the set needs and its model.
#
# rtml's checkpoint (checkpoint.pt beside model.pt) is deliberately not a declared output:
# Snakemake deletes the outputs of a killed or failed job before rerunning it, and the rerun
# resumes from the checkpoint, which holds every epoch's metrics and the best model, so rtml
# rebuilds model.pt and train_metrics.csv exactly as an uninterrupted run writes them.


rule train:
    input:
        f"{RESULTS}/datasets/{{set}}.zarr",
    output:
        model=f"{RESULTS}/models/{{set}}/model.pt",
        metrics=report(
            f"{RESULTS}/models/{{set}}/train_metrics.csv",
            caption="../report/train_metrics.rst",
            category="Training",
            subcategory="{set}",
            labels={"training set": "{set}", "output": "training metrics"},
        ),
    log:
        f"{RESULTS}/logs/train/{{set}}.log",
    conda:
        "../envs/rtml.yaml"
    threads: lookup(dpath="train/threads", within=config)
    resources:
        mem_mb=resource("train", "mem_mb"),
        runtime=resource("train", "runtime"),
        gpu=lookup(dpath="train/gpus", within=config),
    params:
        model=lookup(dpath="training_sets/{set}/model", within=config),
        window=lookup(dpath="training_sets/{set}/window", within=config),
        epochs=lookup(dpath="training_sets/{set}/epochs", within=config),
        seed=lookup(dpath="training_sets/{set}/seed", within=config),
        split_by=lookup(dpath="training_sets/{set}/split_by", within=config),
        molecules=lookup(dpath="training_sets/{set}/molecules", within=config),
        options=train_options,
        outdir=subpath(output.model, parent=True),
    shell:
        "rtml train {input} --model {params.model} --window {params.window}"
        " --epochs {params.epochs} --seed {params.seed} --split-by {params.split_by}"
        " --molecules {params.molecules} {params.options} --threads {threads}"
        " -o {params.outdir} > {log} 2>&1"


# The set's ensemble (train.ensemble members; rtml train --members): members are trained one
# after another, a rerun finishes the unfinished ones, and ensemble.json is written last.
use rule train as train_ensemble with:
    output:
        model=f"{RESULTS}/models/{{set}}/ensemble/ensemble.json",
    log:
        f"{RESULTS}/logs/train/{{set}}-ensemble.log",
    resources:
        mem_mb=resource("train", "mem_mb"),
        runtime=ensemble_runtime,
        gpu=lookup(dpath="train/gpus", within=config),
    params:
        options=ensemble_train_options,


# The same training with another model (evaluate.ablations), e.g. rtml-mlp: the value of
# the Mamba dynamics is measured against an MLP on identical data, split and epochs.
use rule train as train_ablation with:
    output:
        model=f"{RESULTS}/models/{{set}}/ablations/{{ablation}}/model.pt",
        metrics=f"{RESULTS}/models/{{set}}/ablations/{{ablation}}/train_metrics.csv",
    log:
        f"{RESULTS}/logs/train/{{set}}-{{ablation}}.log",
    params:
        model="{ablation}",


for _set in TRAINING_SETS:

    rule:
        name:
            f"train_{_set}"
        input:
            PLAN.model_files(_set),
