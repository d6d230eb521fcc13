"""Helpers of the Snakemake workflow (``Snakefile``, ``workflow/``): config, plan, resources.

The workflow's rule files stay thin: everything they compute comes from here.

- :func:`validate_config` checks a config against ``workflow/schemas/config.schema.yaml``,
  fills in the defaults and raises :class:`ConfigError` naming each offending key.
- :func:`field_plan` is the deterministic list of field specs of a molecule's trajectories,
  using only the polarisations :func:`coupled_polarizations` finds the molecule responds to.
- :class:`WorkflowPlan` lists every output path (geometries, ground states, trajectories,
  datasets, models, evaluations) and gives each rule its threads and resources; a molecule
  is a ladder name or one of your own given by its geometry file (:func:`molecule_source`).
- :mod:`rtml.workflow.resources` holds the resource estimates (memory in MB, runtime in
  minutes) as functions of the basis size, the job size and the retry attempt.

Examples:
    >>> from rtml.workflow import field_plan, validate_config
    >>> config = validate_config({"molecules": {"lih": {"geometries": 2, "trajectories": 3}}})
    >>> field_plan(3, config["fields"])
    ['kick:0.001:x', 'gaussian:0.01:0.1:50.0:10.0:x', 'resonant:0.005:B1:200.0:auto']
"""

from rtml.workflow import _resources as resources
from rtml.workflow._config import (
    TRAIN_OVERRIDES,
    ConfigError,
    load_config,
    load_schema,
    schema_path,
    validate_config,
)
from rtml.workflow._coupling import COUPLING_ATOL, coupled_polarizations, dipole_coupling
from rtml.workflow._plan import (
    WorkflowPlan,
    field_candidates,
    field_plan,
    geometry_ids,
    molecule_source,
)

__all__ = [
    "ConfigError",
    "TRAIN_OVERRIDES",
    "schema_path",
    "load_schema",
    "load_config",
    "validate_config",
    "COUPLING_ATOL",
    "dipole_coupling",
    "coupled_polarizations",
    "field_candidates",
    "field_plan",
    "geometry_ids",
    "molecule_source",
    "WorkflowPlan",
    "resources",
]
