"""Config schema, defaults and validation (pure Python, no Snakemake run)."""

import copy

import pytest
import yaml

from rtml.chem import LADDER
from rtml.workflow import ConfigError, WorkflowPlan, load_config, load_schema, validate_config
from smk_helpers import DEFAULT_CONFIG, FULL_CONFIG, MEDIUM_CONFIG


def _properties(schema, path=()):
    """(path, property schema, required?) for every property in the schema, $defs included."""
    for name, sub in schema.get("properties", {}).items():
        yield path + (name,), sub, name in schema.get("required", [])
        yield from _properties(sub, path + (name,))
    for name, sub in schema.get("$defs", {}).items():
        yield from _properties(sub, path + ("$defs", name))


def test_schema_documents_every_key():
    schema = load_schema()
    missing = [".".join(p) for p, sub, required in _properties(schema)
               if "description" not in sub or ("default" not in sub and not required)]
    assert not missing, f"keys without description or default: {missing}"


def test_schema_molecule_names_are_the_ladder():
    assert load_schema()["$defs"]["moleculeName"]["enum"] == list(LADDER)


def test_defaults_are_filled_in():
    config = validate_config({"molecules": {"lih": {}}})
    assert config["propagation"] == {"dt": 0.2, "steps": 5000, "save_every": 1,
                                     "propagator": "magnus2", "corrector": "linear",
                                     "engine": "pyscf",
                                     "checkpoint_every": 500}
    assert config["molecules"]["lih"] == {"geometries": 1, "trajectories": 1}
    assert config["fields"]["kick"]["strengths"] == [0.001, 0.005, 0.01]
    assert config["fields"]["gaussian"]["omegas"] == [0.1, 0.2, 0.3]
    assert config["fields"]["gaussian"]["sigma"] == 10.0
    assert config["results"] == "results"


def test_training_set_overrides_resolve_from_train():
    config = validate_config({
        "molecules": {"h2": {}, "lih": {"geometries": 3}},
        "train": {"epochs": 3, "window": 2},
        "training_sets": {"a": {"molecules": ["lih"]},
                          "b": {"molecules": ["h2", "lih"], "epochs": 7,
                                "split_by": "molecule", "held_out_molecules": ["h2"]}},
    })
    a, b = config["training_sets"]["a"], config["training_sets"]["b"]
    assert (a["epochs"], a["window"], a["split_by"], a["held_out_molecules"]) == (3, 2, "geometry", [])
    assert (b["epochs"], b["window"], b["split_by"], b["held_out_molecules"]) == (7, 2, "molecule", ["h2"])


def test_shipped_configs_validate():
    quick = load_config(DEFAULT_CONFIG)
    full = load_config(FULL_CONFIG)
    assert set(quick["training_sets"]) >= {"lih", "small"}
    assert quick["training_sets"]["small"]["molecules"] == ["h2p", "h2", "lih"]
    assert WorkflowPlan(full).n_trajectories() == 655
    assert full["propagation"]["dt"] == 0.2 and full["propagation"]["steps"] == 5000
    # H2 and H2+ respond to z fields only (9 distinct fields): more geometries, fewer fields
    expected = {"h2p": (20, 5), "h2": (20, 5), "lih": (7, 15), "h2o": (10, 12), "nh3": (8, 12),
                "ch4": (6, 10), "c2h4": (5, 10), "c6h6": (3, 8)}
    assert {m: (v["geometries"], v["trajectories"]) for m, v in full["molecules"].items()} == expected


@pytest.mark.parametrize("config_file", [FULL_CONFIG, MEDIUM_CONFIG], ids=["full", "medium"])
def test_shipped_config_extends_the_default_to_exactly_itself(config_file):
    """`--configfile full.yaml` (or medium.yaml) is merged into config.yaml: the result must be
    the file itself."""
    from snakemake.utils import update_config

    with open(DEFAULT_CONFIG) as fh:
        merged = yaml.safe_load(fh)
    with open(config_file) as fh:
        config = yaml.safe_load(fh)
    update_config(merged, copy.deepcopy(config))
    assert validate_config(merged) == validate_config(config)


def test_medium_config_covers_the_ladder_with_every_field_family():
    """Issue 16's medium set: rungs H2+ ... C2H4 and a few C6H6 trajectories, >= 1000 steps,
    kicks of several strengths, pulses and resonant drives, only fields a molecule feels."""
    medium = load_config(MEDIUM_CONFIG)
    plan = WorkflowPlan(medium)
    assert list(medium["molecules"]) == ["h2p", "h2", "lih", "h2o", "nh3", "ch4", "c2h4", "c6h6"]
    assert medium["propagation"]["steps"] >= 1000 and medium["propagation"]["save_every"] == 1
    assert plan.n_trajectories() == 231
    for mol in medium["molecules"]:
        specs = plan.fields(mol)
        kinds = {s.split(":")[0] for s in specs}
        assert kinds == {"kick", "gaussian", "resonant"}, (mol, kinds)
        kicks = {s.split(":")[1] for s in specs if s.startswith("kick")}
        assert len(kicks) >= 2 or mol == "c6h6", (mol, kicks)
        if mol in ("h2p", "h2"):  # no p functions on H in 6-31G: only z fields act
            assert all(s.endswith(":z") for s in specs if not s.startswith("resonant")), specs
    sets = medium["training_sets"]
    assert sets["ladder"]["molecules"] == ["h2p", "h2", "lih", "h2o", "nh3", "ch4"]
    assert sets["transfer"]["held_out_molecules"] == ["c2h4", "c6h6"]
    assert sets["roadmap"]["molecules"] == ["h2p", "h2", "lih", "h2o", "nh3", "c2h4"]
    assert sets["roadmap"]["held_out_molecules"] == ["c2h4"]


BASE = {"molecules": {"h2": {"geometries": 2, "trajectories": 2},
                      "lih": {"geometries": 3, "trajectories": 2}},
        "propagation": {"steps": 50},
        "train": {"window": 4},
        "training_sets": {"lih": {"molecules": ["lih"]}}}


def _with(path, value):
    config = copy.deepcopy(BASE)
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return config


BAD = {
    "wrong key": (_with(("propagation", "time_step"), 0.2), "propagation.time_step"),
    "wrong top-level key": (_with(("molecule",), {"lih": {}}), "molecule"),
    "unknown molecule": (_with(("molecules", "benzene"), {"geometries": 1}), "molecules.benzene"),
    "unknown molecule in set": (_with(("training_sets", "x"), {"molecules": ["lih", "h2x"]}),
                                "training_sets.x.molecules.1"),
    "negative dt": (_with(("propagation", "dt"), -0.2), "propagation.dt"),
    "zero dt": (_with(("propagation", "dt"), 0), "propagation.dt"),
    "zero geometries": (_with(("molecules", "lih", "geometries"), 0), "molecules.lih.geometries"),
    "too many trajectories": (_with(("molecules", "lih", "trajectories"), 22),
                              "molecules.lih.trajectories"),
    "more trajectories than live fields": (_with(("molecules", "h2", "trajectories"), 10),
                                           "molecules.h2.trajectories"),
    "string number": (_with(("fields", "kick", "strengths"), ["1e-3"]), "fields.kick.strengths.0"),
    "more resonant drives than states": (_with(("fields", "resonant", "count"), 11),
                                         "fields.resonant.count"),
    "set molecule not configured": (_with(("training_sets", "x"), {"molecules": ["h2o"]}),
                                    "training_sets.x.molecules.0"),
    "window longer than trajectory": (_with(("train", "window"), 51), "train.window"),
    "too few geometries to split": (_with(("training_sets", "x"), {"molecules": ["h2"]}),
                                    "molecules.h2.geometries"),
    "held out not in set": (_with(("training_sets", "x"), {"molecules": ["lih"],
                                                           "held_out_molecules": ["h2"]}),
                            "training_sets.x.held_out_molecules"),
    "ensemble of one": (_with(("train", "ensemble"), 1), "train.ensemble"),
    "ensemble of ridge fits": (_with(("training_sets", "x"), {"molecules": ["lih"], "model": "linear",
                                                              "ensemble": 3}),
                               "training_sets.x.ensemble"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_invalid_config_names_the_key(name):
    config, key = BAD[name]
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        validate_config(config)


def test_too_many_trajectories_message_names_molecule():
    config, _ = BAD["too many trajectories"]
    with pytest.raises(ConfigError, match=r"for lih, but the field plan offers only 21"):
        validate_config(config)


def test_plan_larger_than_the_live_fields_names_the_dead_polarisations():
    """H2 in 6-31G does not respond to x or y fields: 9 of the 21 fields are left for it."""
    config, _ = BAD["more trajectories than live fields"]
    with pytest.raises(ConfigError, match=r"for h2, but the field plan offers only 9 distinct "
                       r"fields \(3 kick, 3 gaussian, 3 resonant; polarisations x, y do not "
                       r"couple to h2 in 6-31G\)"):
        validate_config(config)
