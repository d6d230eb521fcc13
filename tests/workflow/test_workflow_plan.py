"""The field plan and the output paths of the workflow."""

import numpy as np
import pytest

from rtml.chem import build_mole, load_molecule, one_electron_matrices
from rtml.fields import parse_field
from rtml.workflow import (COUPLING_ATOL, ConfigError, WorkflowPlan, coupled_polarizations,
                           dipole_coupling, field_candidates, field_plan, load_config,
                           validate_config)
from smk_helpers import DEFAULT_CONFIG, FULL_CONFIG

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


# -- fields a molecule does not respond to are not planned --------------------------------
def test_s_only_linear_molecule_has_no_perpendicular_coupling():
    """H2 along z in 6-31G (s functions only): x.D and y.D are multiples of S, z.D is not."""
    ints = one_electron_matrices(build_mole(load_molecule("h2")))
    x, y, z = (dipole_coupling(ints.overlap, ints.dipole_ints, e) for e in np.eye(3))
    assert x < 1e-14 and y < 1e-14 and z > 0.1
    assert dipole_coupling(ints.overlap, ints.dipole_ints, (0.6, 0.0, 0.8)) > 0.1


@pytest.mark.parametrize("molecule, basis, live", [
    ("h2", None, ["z", "0.6,0,0.8"]), ("h2p", None, ["z", "0.6,0,0.8"]),
    ("h2", "cc-pvdz", ["x", "y", "z", "0.6,0,0.8"]),  # p functions on H: x and y couple
    ("lih", None, ["x", "y", "z", "0.6,0,0.8"]), ("c6h6", None, ["x", "y", "z", "0.6,0,0.8"])])
def test_coupled_polarizations(molecule, basis, live):
    assert coupled_polarizations(molecule, ["x", "y", "z", "0.6,0,0.8"], basis) == live
    assert COUPLING_ATOL < 1e-6


def test_quick_plan_gives_h2_only_fields_it_responds_to_and_keeps_its_size():
    """Before: kick and Gaussian along x on H2/H2+ (8 of 12 trajectories static)."""
    config = load_config(DEFAULT_CONFIG)
    plan = WorkflowPlan(config)
    for mol in plan.molecules:
        assert len(plan.fields(mol)) == config["molecules"][mol]["trajectories"]
    for mol in ("h2p", "h2"):
        fields = [parse_field(spec) for spec in plan.fields(mol)]
        assert [f.kind for f in fields] == ["kick", "gaussian", "resonant"]
        assert all(f.polarization in ((0.0, 0.0, 1.0), None) for f in fields)  # z or auto
    assert plan.fields("lih") == field_plan(4, config["fields"])  # LiH responds to all


def test_full_plan_uses_only_live_polarisations():
    plan = WorkflowPlan(load_config(FULL_CONFIG))
    for mol in plan.molecules:
        pols = {parse_field(spec).polarization for spec in plan.fields(mol)} - {None}
        assert pols == ({(0.0, 0.0, 1.0)} if mol in ("h2p", "h2") else
                        {(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)}), mol


def test_plan_for_a_molecule_fails_naming_what_does_not_couple():
    with pytest.raises(ConfigError, match="10 trajectories asked for h2, but the field plan "
                       "offers only 9 distinct fields; polarisations x, y do not couple"):
        field_plan(10, FIELDS, molecule="h2")
