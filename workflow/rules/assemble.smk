# Assembly: trajectory HDF5 files -> Zarr v3 stores (one group per molecule). Each
# training set gets its own store, holding only its molecules; `all` also builds the
# store of everything.


rule assemble:
    input:
        get_set_trajectories,
    output:
        directory(f"{RESULTS}/datasets/{{set}}.zarr"),
    log:
        f"{RESULTS}/logs/assemble/{{set}}.log",
    conda:
        "../envs/rtml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "rtml dataset assemble {input} -o {output} > {log} 2>&1"


rule assemble_all:
    input:
        get_all_trajectories(),
    output:
        directory(f"{RESULTS}/dataset.zarr"),
    log:
        f"{RESULTS}/logs/assemble/all.log",
    conda:
        "../envs/rtml.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "rtml dataset assemble {input} -o {output} > {log} 2>&1"
