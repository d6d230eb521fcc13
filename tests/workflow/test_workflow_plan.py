"""The field plan and the output paths of the workflow."""

import pytest

from rtml.fields import parse_field
from rtml.workflow import ConfigError, WorkflowPlan, field_candidates, field_plan, validate_config

FIELDS = validate_config({"molecules": {"lih": {}}})["fields"]


def test_candidates_are_distinct_canonical_specs():
    specs = field_candidates(FIELDS)
    assert len(specs) == 9 + 9 + 3
    assert len(set(specs)) == len(specs)
    for spec in specs:
        assert parse_field(spec).to_spec() == spec


def test_plan_is_deterministic_prefix():
    assert field_plan(12, FIELDS) == field_plan(12, FIELDS)
    assert field_plan(12, FIELDS)[:5] == field_plan(5, FIELDS)


def test_plan_round_robin_covers_every_family():
    plan = field_plan(3, FIELDS)
    assert [s.split(":")[0] for s in plan] == ["kick", "gaussian", "resonant"]
    assert plan[2] == "resonant:0.005:B1:200.0:auto"


def test_short_plan_covers_strengths_and_polarisations():
    kicks = [parse_field(s) for s in field_plan(9, FIELDS) if s.startswith("kick")]
    assert sorted(k.amplitude for k in kicks) == [0.001, 0.005, 0.01]
    assert {k.polarization for k in kicks} == {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)}
    pulses = [parse_field(s) for s in field_plan(9, FIELDS) if s.startswith("gaussian")]
    assert sorted(p.omega for p in pulses) == [0.1, 0.2, 0.3]
    assert all(p.sigma == 10.0 and p.t0 == 50.0 and p.amplitude == 0.01 for p in pulses)


def test_full_plan_uses_all_candidates_then_fails_naming_the_molecule():
    assert sorted(field_plan(21, FIELDS)) == sorted(field_candidates(FIELDS))
    with pytest.raises(ConfigError, match="22 trajectories asked for c6h6"):
        field_plan(22, FIELDS, molecule="c6h6")


def test_family_left_out():
    fields = {**FIELDS, "resonant": {**FIELDS["resonant"], "count": 0},
              "kick": {"strengths": []}}
    assert {s.split(":")[0] for s in field_candidates(fields)} == {"gaussian"}


def test_paths():
    from rtml.data import trajectory_file_name

    config = validate_config({
        "results": "out",
        "molecules": {"lih": {"geometries": 3, "trajectories": 2}, "h2": {"geometries": 1}},
        "training_sets": {"lih": {"molecules": ["lih"]}},
    })
    plan = WorkflowPlan(config)
    assert plan.molecules == ["h2", "lih"]  # ladder order
    assert plan.geometries("lih") == ["g00", "g01", "g02"]
    names = [trajectory_file_name(i, s) for i, s in enumerate(plan.fields("lih"))]
    assert plan.trajectory_files("lih", "g01") == [f"out/trajectories/lih/g01/{n}" for n in names]
    assert names[0] == "t00-kick_0.001_x.h5"
    assert len(plan.set_trajectories("lih")) == 6
    assert all("/lih/" in f for f in plan.set_trajectories("lih"))
    assert plan.n_trajectories() == len(plan.all_trajectories()) == 7
    assert plan.final_outputs()[0] == "out/dataset.zarr"
    assert "out/evaluation/lih/metrics.tsv" in plan.final_outputs()
