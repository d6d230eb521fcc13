"""What the workflow makes: the field plan, geometry ids and every output path.

The field plan is deterministic: the same config gives the same fields in the same order,
so trajectory file names (``t{i:02d}-<slug>.h5``, :func:`rtml.data.trajectory_file_name`)
are known when Snakemake builds its DAG, before any LR-TDDFT state is computed. A
molecule's plan uses only the polarisations it responds to
(:func:`rtml.workflow.coupled_polarizations`): no trajectory of the plan is static.

A configured molecule is a ladder name, or a molecule of your own given by its geometry file
(``molecules: {heh: {file: heh.xyz}}``); :func:`molecule_source` is what the jobs and the
plan read it from.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtml._errors import ConfigError
from rtml.chem import LADDER
from rtml.data import trajectory_file_name
from rtml.fields import parse_field
from rtml.workflow import _resources as res
from rtml.workflow._coupling import coupled_polarizations, uncoupled_note

__all__ = ["field_candidates", "field_plan", "geometry_ids", "molecule_source", "WorkflowPlan"]


def _canonical(spec: str) -> str:
    return parse_field(spec).to_spec()


def _diagonal(n_a: int, n_b: int) -> list[tuple[int, int]]:
    """All (a, b) pairs of range(n_a) x range(n_b), diagonal by diagonal.

    The first min(n_a, n_b) pairs already use distinct a and distinct b, so a short plan
    still covers every strength (or frequency) and every polarisation.
    """
    return [(a, (a + d) % n_b) for d in range(n_b) for a in range(n_a)]


def field_candidates(fields_cfg: dict, molecule: str | None = None,
                     basis: str | None = None) -> list[str]:
    """Every field the plan can offer, in plan order (round-robin over the families).

    Args:
        fields_cfg: the validated ``fields`` section of the config (all keys present):
            ``polarizations``, ``kick.strengths``, ``gaussian.{amplitude, omegas, sigma, t0}``
            and ``resonant.{amplitude, duration, count}``.
        molecule: with it, the polarisations ``molecule`` does not respond to (in ``basis``,
            default its own) are left out, so the live ones take their places
            (:func:`rtml.workflow.coupled_polarizations`); without it, all are used.

    Returns:
        Canonical field spec strings (:meth:`rtml.fields.Field.to_spec`), all distinct:
        kicks ``kick:KAPPA:POL`` (strengths x polarisations), Gaussian pulses
        ``gaussian:E0:OMEGA:T0:SIGMA:POL`` (frequencies x polarisations) and resonant drives
        ``resonant:E0:B<k>:DURATION:auto`` (k = 1..count), interleaved kick, gaussian,
        resonant, kick, ... until each family is used up.
    """
    pols = list(fields_cfg["polarizations"])
    if molecule is not None:
        pols = coupled_polarizations(molecule, pols, basis)
    kick, gauss, res = fields_cfg["kick"], fields_cfg["gaussian"], fields_cfg["resonant"]
    strengths = list(kick["strengths"])
    omegas = list(gauss["omegas"])
    families = [
        [f"kick:{strengths[a]!r}:{pols[b]}" for a, b in _diagonal(len(strengths), len(pols))],
        [f"gaussian:{gauss['amplitude']!r}:{omegas[a]!r}:{gauss['t0']!r}:{gauss['sigma']!r}:"
         f"{pols[b]}" for a, b in _diagonal(len(omegas), len(pols))],
        [f"resonant:{res['amplitude']!r}:B{k}:{res['duration']!r}:auto"
         for k in range(1, res["count"] + 1)],
    ]
    plan, seen = [], set()
    for i in range(max(map(len, families))):
        for family in families:
            if i < len(family):
                spec = _canonical(family[i])
                if spec not in seen:  # e.g. polarisations 'z' and '0,0,1'
                    seen.add(spec)
                    plan.append(spec)
    return plan


def field_plan(n: int, fields_cfg: dict, molecule: str | None = None,
               basis: str | None = None) -> list[str]:
    """The first ``n`` fields of :func:`field_candidates` (of ``molecule``'s live
    polarisations when it is given).

    Raises:
        ConfigError: ``n`` < 1, or more fields asked for than the plan offers (the message
            names ``molecule`` and the polarisations it does not respond to).
    """
    candidates = field_candidates(fields_cfg, molecule, basis)
    who = f" for {molecule}" if molecule else ""
    if n < 1:
        raise ConfigError(f"need at least one trajectory{who}, got {n}")
    if n > len(candidates):
        dead = uncoupled_note(molecule, fields_cfg["polarizations"], basis) if molecule else ""
        raise ConfigError(f"{n} trajectories asked{who}, but the field plan offers only "
                          f"{len(candidates)} distinct fields{dead}")
    return candidates[:n]


def molecule_source(molecules_cfg: dict, name: str) -> str:
    """What ``rtml`` commands read the configured molecule ``name`` from: its ``file``
    (a molecule of your own) or its ladder name.

    Args:
        molecules_cfg: the config's ``molecules`` section.
        name: a key of it.
    """
    return molecules_cfg[name].get("file", name)


def geometry_ids(n: int) -> list[str]:
    """``['g00', 'g01', ...]``: the file stems `rtml sample-geometries --n n` writes."""
    return [f"g{k:02d}" for k in range(n)]


@dataclass
class WorkflowPlan:
    """Every output of a validated config, as relative paths under ``config['results']``.

    >>> plan = WorkflowPlan(config)          # doctest: +SKIP
    >>> plan.trajectory_files("lih", "g00")  # doctest: +SKIP
    ['results/trajectories/lih/g00/t00-kick_0.001_x.h5', ...]
    """

    config: dict

    def __post_init__(self):
        self.results = self.config["results"].rstrip("/")
        configured = self.config["molecules"]
        # ladder order (smallest first), whatever the order in the config file; then the
        # molecules of your own in config order
        self.molecules = ([m for m in LADDER if m in configured]
                          + [m for m in configured if m not in LADDER])
        self.training_sets = list(self.config["training_sets"])
        basis = self.config["level_of_theory"]["basis"]
        self._fields = {m: field_plan(configured[m]["trajectories"], self.config["fields"],
                                      molecule=self.source(m), basis=basis)
                        for m in self.molecules}

    # -- per molecule -------------------------------------------------------------------
    def source(self, molecule: str) -> str:
        """The MOLECULE argument of ``molecule``'s jobs: its geometry file or ladder name
        (:func:`molecule_source`)."""
        return molecule_source(self.config["molecules"], molecule)

    def source_files(self, molecule: str) -> list[str]:
        """The geometry file of a molecule of your own (an input of its jobs), or []."""
        return [self.source(molecule)] if "file" in self.config["molecules"][molecule] else []

    def geometries(self, molecule: str) -> list[str]:
        return geometry_ids(self.config["molecules"][molecule]["geometries"])

    def fields(self, molecule: str) -> list[str]:
        """Field specs of every geometry of ``molecule`` (field i -> trajectory t{i:02d})."""
        return list(self._fields[molecule])

    def trajectory_names(self, molecule: str) -> list[str]:
        return [trajectory_file_name(i, spec) for i, spec in enumerate(self._fields[molecule])]

    def trajectory_files(self, molecule: str, geometry: str = "{geom}") -> list[str]:
        """Trajectory files of one geometry (or a ``{geom}`` wildcard pattern)."""
        return [f"{self.results}/trajectories/{molecule}/{geometry}/{name}"
                for name in self.trajectory_names(molecule)]

    def molecule_trajectories(self, molecule: str) -> list[str]:
        return [f for g in self.geometries(molecule) for f in self.trajectory_files(molecule, g)]

    # -- per training set and overall ------------------------------------------------------
    def set_molecules(self, name: str) -> list[str]:
        wanted = self.config["training_sets"][name]["molecules"]
        return [m for m in self.molecules if m in wanted]

    def set_trajectories(self, name: str) -> list[str]:
        return [f for m in self.set_molecules(name) for f in self.molecule_trajectories(m)]

    def all_trajectories(self) -> list[str]:
        return [f for m in self.molecules for f in self.molecule_trajectories(m)]

    def n_trajectories(self) -> int:
        return sum(len(self.geometries(m)) * len(self._fields[m]) for m in self.molecules)

    def model_files(self, name: str) -> list[str]:
        """The set's model and training metrics, those of its ablations, and its ensemble's
        member list when it has one."""
        roots = [f"{self.results}/models/{name}"] + [
            f"{self.results}/models/{name}/ablations/{a}" for a in self.config["evaluate"]["ablations"]]
        files = [f"{root}/{f}" for root in roots for f in ("model.pt", "train_metrics.csv")]
        return files + ([self.ensemble_file(name)] if self.ensemble_members(name) else [])

    def ensemble_members(self, name: str) -> int:
        """Members of the set's ensemble (0: none), from the validated config."""
        return int(self.config["training_sets"][name]["ensemble"])

    def ensemble_file(self, name: str) -> str:
        """``ensemble.json`` of the set's ensemble (written last by ``rtml train --members``)."""
        return f"{self.results}/models/{name}/ensemble/ensemble.json"

    def ablation_models(self, name: str) -> list[str]:
        return [f"{self.results}/models/{name}/ablations/{a}/model.pt"
                for a in self.config["evaluate"]["ablations"]]

    def evaluation_files(self, name: str) -> list[str]:
        root = f"{self.results}/evaluation/{name}"
        files = [f"{root}/metrics.json", f"{root}/metrics.tsv", f"{root}/dipole.png",
                 f"{root}/error_vs_horizon.png", f"{root}/spectrum.png"]
        if self.ensemble_members(name):
            files += [f"{root}/ensemble/metrics.json", f"{root}/ensemble/calibration.json",
                      f"{root}/ensemble/calibration.png"]
        return files

    def final_outputs(self) -> list[str]:
        """What rule ``all`` asks for: the full dataset, and every set's model and evaluation."""
        out = [f"{self.results}/dataset.zarr"]
        for name in self.training_sets:
            out += self.model_files(name) + self.evaluation_files(name)
        return out

    # -- resources ---------------------------------------------------------------------
    def nbf(self, molecule: str) -> int:
        return res.nbf(self.source(molecule), self.config["level_of_theory"]["basis"])

    def threads(self, stage: str, molecule: str | None = None) -> int:
        """Threads of a job: ``propagate``/``ground_state`` scale with nbf; ``train`` and
        ``evaluate`` come from the config; ``sample_geometries`` and others use 1."""
        if stage in ("propagate", "ground_state"):
            return res.simulation_threads(self.nbf(molecule),
                                      self.config["resources"]["max_threads"])
        if stage in ("train", "evaluate"):
            return int(self.config[stage]["threads"])
        return 1

    def resource(self, stage: str, name: str, molecule: str | None = None):
        """A Snakemake resource function ``(wildcards, attempt) -> int``.

        Args:
            stage: ``sample_geometries``, ``ground_state``, ``propagate``, ``train`` or
                ``evaluate``.
            name: ``mem_mb`` or ``runtime`` (minutes).
            molecule: fixed molecule (``propagate_<mol>`` rules); otherwise the job's
                ``{mol}`` wildcard is used.
        """
        if name not in ("mem_mb", "runtime"):
            raise ValueError(f"unknown resource {name!r}; expected mem_mb or runtime")
        cfg = self.config
        scale = cfg["resources"]["mem_factor" if name == "mem_mb" else "runtime_factor"]
        grid_level = cfg["level_of_theory"]["grid_level"]
        prop = cfg["propagation"]

        if stage in ("train", "evaluate"):
            base = cfg[stage][name]
            growth = 1.5 if name == "mem_mb" else 2.0
            return lambda wildcards, attempt: res.scaled(base, attempt, growth, scale)

        def estimate(wildcards, attempt):
            mol = molecule if molecule is not None else wildcards.mol
            n = self.nbf(mol)
            if stage == "sample_geometries":
                fn = res.sampling_mem_mb if name == "mem_mb" else res.sampling_runtime
                return fn(n, attempt, factor=scale)
            if stage == "ground_state":
                if name == "mem_mb":
                    return res.ground_state_mem_mb(n, attempt, factor=scale)
                return res.ground_state_runtime(n, attempt, grid_level=grid_level,
                                                factor=scale)
            if stage == "propagate":
                n_fields = len(self._fields[mol])
                if name == "mem_mb":
                    return res.propagate_mem_mb(n, prop["steps"], n_fields, attempt,
                                                save_every=prop["save_every"],
                                                n_spin=res.n_spin(self.source(mol)),
                                                factor=scale)
                return res.propagate_runtime(n, prop["steps"], n_fields, attempt,
                                             threads=self.threads("propagate", mol),
                                             grid_level=grid_level, factor=scale)
            raise ValueError(f"unknown stage {stage!r}")

        return estimate
