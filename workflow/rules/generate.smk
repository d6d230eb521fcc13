# Data generation: geometry sampling (one job per molecule), ground state + LR-TDDFT
# excitations (one job per geometry) and RT-TDDFT propagation (one batched job per
# geometry, all fields at once, one trajectory file per field).


rule sample_geometries:
    input:
        molecule_files,
    output:
        directory(f"{RESULTS}/geometries/{{mol}}"),
    log:
        f"{RESULTS}/logs/sample_geometries/{{mol}}.log",
    conda:
        "../envs/rtml.yaml"
    threads: 1
    resources:
        mem_mb=resource("sample_geometries", "mem_mb"),
        runtime=resource("sample_geometries", "runtime"),
    params:
        molecule=lambda wildcards: molecule_argument(wildcards.mol),
        n=lookup(dpath="molecules/{mol}/geometries", within=config),
        seed=lookup(dpath="sampling/seed", within=config),
        options=sampling_options(),
    shell:
        "rtml sample-geometries {params.molecule} --n {params.n} --seed {params.seed}"
        " {params.options} --threads {threads} --output-dir {output} > {log} 2>&1"


rule ground_state:
    input:
        geometries=f"{RESULTS}/geometries/{{mol}}",
    output:
        f"{RESULTS}/ground_states/{{mol}}/{{geom}}.h5",
    log:
        f"{RESULTS}/logs/ground_state/{{mol}}/{{geom}}.log",
    conda:
        "../envs/rtml.yaml"
    threads: lambda wildcards: threads_of("ground_state", wildcards.mol)
    resources:
        mem_mb=resource("ground_state", "mem_mb"),
        runtime=resource("ground_state", "runtime"),
    params:
        molecule=lambda wildcards: molecule_argument(wildcards.mol),
        geometry=geometry_file,
        nstates=lookup(dpath="ground_state/nstates", within=config),
        theory=theory_options(),
    shell:
        "rtml ground-state {params.molecule} --geometry {params.geometry}"
        " --nstates {params.nstates} {params.theory} --threads {threads}"
        " -o {output} > {log} 2>&1"


# One propagation rule per molecule: molecules differ in their number of trajectories
# and a rule's outputs cannot vary in number with a wildcard.
for _mol in MOLECULES:

    rule:
        name:
            f"propagate_{_mol}"
        input:
            geometries=f"{RESULTS}/geometries/{_mol}",
            ground_state=f"{RESULTS}/ground_states/{_mol}/{{geom}}.h5",
        output:
            trajectories=trajectory_outputs(_mol),
        log:
            f"{RESULTS}/logs/propagate/{_mol}/{{geom}}.log",
        conda:
            "../envs/rtml.yaml"
        threads: threads_of("propagate", _mol)
        resources:
            mem_mb=resource("propagate", "mem_mb", _mol),
            runtime=resource("propagate", "runtime", _mol),
        params:
            molecule=molecule_argument(_mol),
            geometry=geometry_file,
            fields=field_options(_mol),
            dt=lookup(dpath="propagation/dt", within=config),
            steps=lookup(dpath="propagation/steps", within=config),
            save_every=lookup(dpath="propagation/save_every", within=config),
            propagator=lookup(dpath="propagation/propagator", within=config),
            corrector=lookup(dpath="propagation/corrector", within=config),
            engine=lookup(dpath="propagation/engine", within=config),
            checkpoint_every=lookup(dpath="propagation/checkpoint_every", within=config),
            theory=theory_options(),
            outdir=subpath(output[0], parent=True),
        shell:
            "rtml propagate {params.molecule} --geometry {params.geometry}"
            " --ground-state {input.ground_state} {params.fields}"
            " --dt {params.dt} --steps {params.steps} --save-every {params.save_every}"
            " --propagator {params.propagator} --corrector {params.corrector}"
            " --checkpoint-every {params.checkpoint_every}"
            " --engine {params.engine}"
            " {params.theory} --threads {threads} -q --output-dir {params.outdir}"
            " > {log} 2>&1"
