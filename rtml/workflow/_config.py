"""Workflow configuration: JSON-schema validation with defaults, then cross-key checks.

The schema is ``workflow/schemas/config.schema.yaml``. :func:`validate_config` fills in
every default the schema gives, reports every violation with the dotted key it concerns
(``propagation.dt``, ``molecules.xyz``), then checks what a schema cannot express: each
molecule is a ladder name or a readable geometry file of your own named as its key, the
training sets name configured molecules, the field plan offers enough distinct fields (of
polarisations the molecule responds to) for each molecule's trajectories, resonant drives
ask for computed LR-TDDFT states, and the training window fits in a trajectory. It raises
:class:`ConfigError` before any job runs.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator, validators

from rtml._errors import ConfigError, InputError
from rtml.chem import load_molecule
from rtml.workflow._coupling import uncoupled_note
from rtml.workflow._plan import field_candidates, molecule_source

#: Training settings a training set may override (null there = the value under ``train``).
TRAIN_OVERRIDES = ("model", "window", "epochs", "seed", "split_by", "held_out_molecules",
                   "ensemble")


#: Comment-line keys of a geometry file (:func:`rtml.chem.load_molecule`), which a user may
#: try to set in the config instead.
_GEOMETRY_FILE_KEYS = ("charge", "multiplicity", "basis", "xc")


def schema_path() -> Path:
    """Path of ``workflow/schemas/config.schema.yaml`` in the source tree of this package."""
    return Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path=None) -> dict:
    """The config schema as a dict (from ``path``, default :func:`schema_path`)."""
    path = Path(path) if path is not None else schema_path()
    with open(path) as fh:
        return yaml.safe_load(fh)


def load_config(path, schema=None) -> dict:
    """Read a YAML config file and return it validated, with defaults filled in."""
    with open(path) as fh:
        config = yaml.safe_load(fh) or {}
    return validate_config(config, schema)


def _key(path) -> str:
    return ".".join(str(p) for p in path) if path else "<top level>"


def _schema_errors(config: dict, schema: dict) -> list[str]:
    """Validate ``config`` in place against ``schema``, setting defaults; messages per key."""
    base = Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for name, prop in properties.items():
                if "default" in prop:
                    instance.setdefault(name, copy.deepcopy(prop["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    validator = validators.extend(base, {"properties": set_defaults})(schema)
    messages = []
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    for error in errors:
        path = list(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = sorted(error.schema.get("properties", {}))
            for extra in sorted(set(error.instance) - set(allowed)):
                hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
                if path[:1] == ["molecules"] and extra in _GEOMETRY_FILE_KEYS:
                    hint += (f"; {extra} is read from the molecule's geometry file, on its "
                             "comment line (README: Your own molecule)")
                messages.append(f"config key '{_key(path + [extra])}': unknown key{hint}")
        elif "propertyNames" in error.absolute_schema_path:
            messages.append(f"config key '{_key(path + [error.instance])}': invalid name "
                            f"({error.message})")
        else:
            hint = ""
            if error.validator == "type" and isinstance(error.instance, str):
                try:
                    float(error.instance)
                    hint = (" (a number written as a string: YAML reads 1e-3 as one, write "
                            "1.0e-3 or 0.001)")
                except ValueError:
                    pass
            messages.append(f"config key '{_key(path)}': {error.message}{hint}")
    return messages


def _molecule_problem(name: str, mol: dict, ladder) -> str | None:
    """What is wrong with the molecule ``name`` of the config (its entry ``mol``), as one
    message naming the key, or None: a name without ``file`` must be a ``ladder`` molecule;
    a ``file`` must be a readable geometry (charge and multiplicity possible) whose stem is
    ``name``, which must not be a ladder name."""
    if "file" not in mol:
        if name in ladder:
            return None
        return (f"config key 'molecules.{name}': unknown molecule '{name}' (the ladder: "
                f"{', '.join(ladder)}); a molecule of your own needs its geometry file: "
                f"molecules.{name}.file: path/to/{name}.xyz")
    key = f"config key 'molecules.{name}.file'"
    path = Path(mol["file"])
    if name in ladder:
        return (f"{key}: '{name}' is a ladder molecule; give your molecule another name (its "
                f"file's stem), or replace the ladder's geometry files through $RTML_MOLECULES")
    if not path.is_file():
        where = "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        return f"{key}: no such file '{path}'{where}"
    if path.stem != name:
        return (f"{key}: the file's stem '{path.stem}' is not the molecule's name '{name}' "
                f"(trajectories and stores name a molecule by its file's stem): rename the "
                f"file or the key")
    try:
        load_molecule(path)
    except InputError as error:
        return f"{key}: {error}"
    return None


def _cross_checks(config: dict, ladder) -> list[str]:
    """Checks across keys; assumes the schema validated and defaults are set. ``ladder``:
    the ladder molecule names (the schema's ``moleculeName``)."""
    molecules = config["molecules"]
    problems = [_molecule_problem(name, mol, ladder) for name, mol in molecules.items()]
    messages = [problem for problem in problems if problem]
    if messages:  # the checks below read every molecule
        return messages
    fields = config["fields"]
    basis = config["level_of_theory"]["basis"]
    for name, mol in molecules.items():
        try:
            candidates = field_candidates(fields, molecule=molecule_source(molecules, name),
                                          basis=basis)
        except InputError as error:
            if basis is None and "file" in mol:  # the basis its file names is unknown
                messages.append(f"config key 'molecules.{name}.file': {error}")
                continue
            # the configured basis is unknown: every molecule would say so
            messages.append(f"config key 'level_of_theory.basis': {error}")
            break
        if mol["trajectories"] > len(candidates):
            counts = {}
            for spec in candidates:
                family = spec.split(":", 1)[0]
                counts[family] = counts.get(family, 0) + 1
            offered = ", ".join(f"{n} {family}" for family, n in counts.items()) or "none"
            dead = uncoupled_note(molecule_source(molecules, name), fields["polarizations"],
                                  basis)
            messages.append(
                f"config key 'molecules.{name}.trajectories': {mol['trajectories']} "
                f"trajectories per geometry for {name}, but the field plan offers only "
                f"{len(candidates)} distinct fields ({offered}{dead}); add kick strengths, "
                "Gaussian frequencies, polarisations or resonant drives under 'fields', or "
                "ask for fewer trajectories and more geometries")
    nstates = config["ground_state"]["nstates"]
    if fields["resonant"]["count"] > nstates:
        messages.append(f"config key 'fields.resonant.count': {fields['resonant']['count']} "
                        f"resonant drives need as many LR-TDDFT states, but "
                        f"ground_state.nstates is {nstates}")
    prop = config["propagation"]
    if prop["save_every"] > prop["steps"]:
        messages.append(f"config key 'propagation.save_every': {prop['save_every']} is more "
                        f"than propagation.steps ({prop['steps']}); nothing would be saved "
                        "after t = 0")
    frames = prop["steps"] // prop["save_every"] + 1
    train = config["train"]
    for set_name, tset in config["training_sets"].items():
        where = f"training_sets.{set_name}"
        for i, mol in enumerate(tset["molecules"]):
            if mol not in molecules:
                messages.append(f"config key '{where}.molecules.{i}': molecule '{mol}' is not "
                                f"configured under 'molecules' (configured: "
                                f"{', '.join(molecules)})")
        settings = {k: train[k] if tset.get(k) is None else tset[k] for k in TRAIN_OVERRIDES}
        key = lambda k: f"{where}.{k}" if tset.get(k) is not None else f"train.{k}"  # noqa: E731
        for i, mol in enumerate(settings["held_out_molecules"]):
            if mol not in tset["molecules"]:
                messages.append(f"config key '{key('held_out_molecules')}': held-out molecule "
                                f"'{mol}' is not in training set '{set_name}' "
                                f"({', '.join(tset['molecules'])})")
        held = set(settings["held_out_molecules"])
        if settings["split_by"] == "molecule":
            if not held:
                messages.append(f"config key '{key('split_by')}': split by molecule needs "
                                f"held_out_molecules for training set '{set_name}'")
            elif held >= set(tset["molecules"]):
                messages.append(f"config key '{key('held_out_molecules')}': training set "
                                f"'{set_name}' holds out all of its molecules")
        if settings["split_by"] == "geometry" and all(m in molecules for m in tset["molecules"]):
            # rtml.data.assign_splits guarantees a test geometry only for a molecule with
            # at least 3 geometries (one each for train, validation and test)
            most = max(tset["molecules"], key=lambda m: molecules[m]["geometries"])
            if molecules[most]["geometries"] < 3:
                messages.append(
                    f"config key 'molecules.{most}.geometries': training set '{set_name}' is "
                    f"split by geometry, which needs a molecule with at least 3 geometries "
                    f"(train, validation, test); the most in the set is "
                    f"{molecules[most]['geometries']} ({most})")
        if settings["ensemble"] == 1:
            messages.append(f"config key '{key('ensemble')}': an ensemble of 1 is the set's "
                            "model itself; use 0 (no ensemble) or at least 2 members")
        elif settings["ensemble"] and settings["model"] not in ("rtml", "rtml-mlp"):
            messages.append(f"config key '{key('ensemble')}': ensembles are of rtml models; "
                            f"training set '{set_name}' trains '{settings['model']}'")
        if settings["window"] >= frames:
            messages.append(f"config key '{key('window')}': window {settings['window']} is "
                            f"not shorter than a trajectory ({frames} saved frames = "
                            f"propagation.steps // propagation.save_every + 1)")
    return messages


def resolve_training_sets(config: dict) -> None:
    """Fill each training set's null overrides from ``train``, in place."""
    for tset in config["training_sets"].values():
        for k in TRAIN_OVERRIDES:
            if tset.get(k) is None:
                tset[k] = copy.deepcopy(config["train"][k])


def validate_config(config: dict, schema=None) -> dict:
    """Validate ``config`` in place, fill in defaults and resolve training-set overrides.

    Args:
        config: the Snakemake config (a dict, modified in place).
        schema: the schema as a dict, or a path to it; default :func:`schema_path`.

    Returns:
        ``config`` itself, complete: every key of the schema present, each training set
        carrying its effective ``model``, ``window``, ... (see :data:`TRAIN_OVERRIDES`).

    Raises:
        ConfigError: one line per problem, each naming the offending key.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"the config must be a mapping, got {type(config).__name__}")
    if schema is None or isinstance(schema, (str, Path)):
        schema = load_schema(schema)
    messages = _schema_errors(config, copy.deepcopy(schema))
    if not messages:
        messages = _cross_checks(config, schema["$defs"]["moleculeName"]["enum"])
    if messages:
        raise ConfigError("invalid workflow config:\n  " + "\n  ".join(messages))
    resolve_training_sets(config)
    return config
