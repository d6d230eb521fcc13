"""The evaluation job of the workflow promises every plot ``rtml evaluate`` writes, each with
a report caption (issue 15: spectrum.png was written but missing from the report)."""

import re

from smk_helpers import DEFAULT_CONFIG, REPO, snakemake_run


def test_evaluate_job_outputs_every_plot_and_each_has_a_report_caption(tmp_path):
    dag = snakemake_run(tmp_path, ["evaluate_lih"], DEFAULT_CONFIG)
    outputs = {f.rsplit("/", 1)[1] for f in dag.outputs("evaluate")
               if f.startswith("results/evaluation/lih/")}
    assert {"dipole.png", "error_vs_horizon.png", "spectrum.png"} <= outputs
    rule = (REPO / "workflow" / "rules" / "evaluate.smk").read_text()
    for plot in ("dipole", "error_vs_horizon", "spectrum"):
        assert re.search(rf'report\(\s*f"{{RESULTS}}/evaluation/{{{{set}}}}/{plot}\.png",\s*'
                         rf'caption="\.\./report/{plot}\.rst"', rule), plot
        assert (REPO / "workflow" / "report" / f"{plot}.rst").stat().st_size > 0
