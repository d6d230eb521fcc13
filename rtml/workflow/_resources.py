r"""Resource estimates for the workflow's jobs: threads, memory (MB) and runtime (minutes).

Each estimate is a pure function of the basis size ``nbf`` and the job's size, and grows
with Snakemake's ``attempt`` (1 on the first try, 2 and 3 on the retries that
``profiles/slurm`` allows), so a job killed for memory or time gets more on its retry:
memory by x1.5 and runtime by x2 per attempt.

Propagation cost model (one batched job = all fields of one geometry). A step costs
``BUILDS_PER_STEP`` Fock builds per density, and the XC part dominates a build (FACTS:
H2O/6-31G PBE0, grid level 3: ~10 ms per density per build on one core). With the grid
(~ atoms ~ nbf) and the AO products (~ nbf^2) it scales as

.. math::

    t_\mathrm{build} \approx 10\,\mathrm{ms}\,(n_\mathrm{bf}/13)^{2.5},
    \qquad
    t \approx 2\,\frac{N_\mathrm{steps}\,N_\mathrm{fields}\,3\,t_\mathrm{build}}
                      {N_\mathrm{threads}^{0.7}} + 5\,\mathrm{min},

with a safety factor 2. Memory holds the saved complex densities of every field,
``n_fields * (steps // save_every + 1) * n_spin * nbf^2 * 16`` bytes (twice, while
writing), the AO values on the grid (~0.1 nbf^2 MB with gradients) and 1 GB for Python,
PySCF and NumPy.
"""

from __future__ import annotations

import math
from functools import lru_cache

from rtml.chem import build_mole, load_molecule

__all__ = [
    "NBF_631G",
    "nbf",
    "n_spin",
    "simulation_threads",
    "propagate_mem_mb",
    "propagate_runtime",
    "ground_state_mem_mb",
    "ground_state_runtime",
    "sampling_mem_mb",
    "sampling_runtime",
    "scaled",
]

#: Spherical 6-31G basis sizes of the ladder (each molecule's default basis); checked
#: against PySCF by tests/workflow/test_resources.py.
NBF_631G = {"h2p": 4, "h2": 4, "lih": 11, "h2o": 13, "nh3": 15, "ch4": 17, "c2h4": 26,
            "c6h6": 66}

#: Fock builds per step and density: the linear-response corrector takes ~1 for weak fields
#: and ~2 for strong ones (the full corrector 2.4-6); 3 leaves room for its one-off setup.
BUILDS_PER_STEP = 3.0
#: Seconds per Fock build per density for H2O/6-31G (nbf 13) at grid level 3, one core.
SECONDS_PER_BUILD_H2O = 0.010


@lru_cache(maxsize=None)
def nbf(molecule: str, basis: str | None = None) -> int:
    """Number of basis functions of a molecule (spherical; default: its own basis).

    ``molecule`` is a ladder name or a geometry file (as ``rtml`` commands take it). The
    ladder's 6-31G sizes come from :data:`NBF_631G`; anything else is counted with PySCF.
    """
    if (basis is None or basis.lower() == "6-31g") and molecule in NBF_631G:
        return NBF_631G[molecule]
    return int(build_mole(load_molecule(molecule), basis=basis).nao)


@lru_cache(maxsize=None)
def n_spin(molecule: str) -> int:
    """Density matrices per trajectory frame of ``molecule`` (a ladder name or a geometry
    file): 1 (closed shell) or 2 (open shell)."""
    return 1 if load_molecule(molecule).multiplicity == 1 else 2


def scaled(value: float, attempt: int, growth: float, factor: float = 1.0,
           quantum: int = 1, minimum: int = 1) -> int:
    """``value * factor * growth**(attempt-1)``, rounded up to a multiple of ``quantum``."""
    attempt = max(1, int(attempt))
    x = value * factor * growth ** (attempt - 1)
    return max(minimum, int(math.ceil(x / quantum)) * quantum)


def simulation_threads(nbf: int, max_threads: int = 8) -> int:
    """Threads for a ground-state or propagation job: 1 below 12 basis functions, then
    2, 4 and 8 as the grid and the matrices grow (capped at ``max_threads``)."""
    threads = 1 if nbf < 12 else 2 if nbf < 20 else 4 if nbf < 40 else 8
    return max(1, min(threads, max_threads))


def propagate_mem_mb(nbf: int, steps: int, n_fields: int, attempt: int = 1, *,
                     save_every: int = 1, n_spin: int = 1, factor: float = 1.0) -> int:
    """Memory (MB) of one batched propagation job; x1.5 per retry."""
    frames = steps // save_every + 1
    trajectories_mb = n_fields * frames * n_spin * nbf ** 2 * 16 / 1e6
    grid_mb = 0.1 * nbf ** 2
    return scaled(1000 + 2 * trajectories_mb + grid_mb, attempt, 1.5, factor, quantum=100)


def propagate_runtime(nbf: int, steps: int, n_fields: int, attempt: int = 1, *,
                      threads: int = 1, grid_level: int = 3, factor: float = 1.0) -> int:
    """Wall time (minutes) of one batched propagation job; x2 per retry."""
    build_s = SECONDS_PER_BUILD_H2O * (nbf / 13.0) ** 2.5 * _grid_cost(grid_level)
    seconds = steps * n_fields * BUILDS_PER_STEP * build_s / threads ** 0.7
    return scaled(5 + 2 * seconds / 60, attempt, 2.0, factor, quantum=5, minimum=10)


def ground_state_mem_mb(nbf: int, attempt: int = 1, factor: float = 1.0) -> int:
    """Memory (MB) of an SCF + full LR-TDDFT job; x1.5 per retry."""
    return scaled(1000 + 0.5 * nbf ** 2, attempt, 1.5, factor, quantum=100)


def ground_state_runtime(nbf: int, attempt: int = 1, *, grid_level: int = 3,
                         factor: float = 1.0) -> int:
    """Wall time (minutes) of an SCF + full LR-TDDFT job; x2 per retry."""
    return scaled(5 + 0.01 * nbf ** 2 * _grid_cost(grid_level), attempt, 2.0, factor,
                  quantum=5, minimum=10)


def sampling_mem_mb(nbf: int, attempt: int = 1, factor: float = 1.0) -> int:
    """Memory (MB) of a geometry-sampling job (one analytic Hessian); x1.5 per retry."""
    return scaled(1500 + 1.0 * nbf ** 2, attempt, 1.5, factor, quantum=100)


def sampling_runtime(nbf: int, attempt: int = 1, factor: float = 1.0) -> int:
    """Wall time (minutes) of a geometry-sampling job (one Hessian); x2 per retry."""
    return scaled(5 + 0.02 * nbf ** 2, attempt, 2.0, factor, quantum=5, minimum=10)


def _grid_cost(grid_level: int) -> float:
    """Grid size relative to PySCF level 3 (roughly x1.4 per level)."""
    return 1.4 ** (int(grid_level) - 3)
