"""Resource estimates: basis sizes, scaling with job size and growth on retry."""

from types import SimpleNamespace

import pytest

from rtml.chem import LADDER, build_mole, load_molecule
from rtml.workflow import WorkflowPlan, load_config, resources as res
from smk_helpers import FULL_CONFIG


def test_nbf_table_matches_pyscf():
    assert set(res.NBF_631G) == set(LADDER)
    for name in LADDER:
        assert res.NBF_631G[name] == build_mole(load_molecule(name)).nao, name


def test_nbf_other_basis_from_pyscf():
    assert res.nbf("h2", "sto-3g") == 2
    assert res.nbf("lih", None) == res.nbf("lih", "6-31G") == 11


def test_threads_grow_with_nbf_and_are_capped():
    threads = [res.simulation_threads(res.NBF_631G[m]) for m in LADDER]
    assert threads == sorted(threads) and threads[0] == 1 and threads[-1] == 8
    assert res.simulation_threads(66, max_threads=2) == 2


@pytest.mark.parametrize("fn", [res.propagate_mem_mb, res.propagate_runtime])
def test_propagation_estimates_scale(fn):
    base = fn(26, 2000, 4)
    assert fn(40, 2000, 4) > base
    assert fn(26, 5000, 4) > base
    assert fn(26, 2000, 12) > base
    assert fn(26, 2000, 4, attempt=2) > base
    assert fn(26, 2000, 4, attempt=3) > fn(26, 2000, 4, attempt=2)


def test_retry_growth_factors():
    assert res.propagate_runtime(66, 5000, 8, 2) == pytest.approx(
        2 * res.propagate_runtime(66, 5000, 8, 1), rel=0.02)
    assert res.propagate_mem_mb(66, 5000, 8, 2) == pytest.approx(
        1.5 * res.propagate_mem_mb(66, 5000, 8, 1), rel=0.02)
    for fn in (res.ground_state_mem_mb, res.ground_state_runtime, res.sampling_mem_mb,
               res.sampling_runtime):
        assert fn(66, 2) > fn(66, 1)


def test_plan_resource_functions_for_the_full_plan():
    plan = WorkflowPlan(load_config(FULL_CONFIG))
    mem = {m: plan.resource("propagate", "mem_mb", m)(None, 1) for m in plan.molecules}
    runtime = {m: plan.resource("propagate", "runtime", m)(None, 1) for m in plan.molecules}
    assert mem["c6h6"] == max(mem.values()) and runtime["c6h6"] == max(runtime.values())
    # C6H6: 8 fields x 5001 frames x 66^2 complex = 2.8 GB of densities, kept and written
    assert 5000 < mem["c6h6"] < 16000
    assert plan.resource("propagate", "runtime", "c6h6")(None, 2) > runtime["c6h6"]
    wildcards = SimpleNamespace(mol="c6h6")
    assert plan.resource("ground_state", "runtime", None)(wildcards, 1) >= 10
    assert plan.resource("sample_geometries", "mem_mb", None)(wildcards, 1) > 1500
    assert plan.resource("train", "mem_mb")(None, 2) == int(1.5 * plan.config["train"]["mem_mb"])
    assert plan.threads("train") == plan.config["train"]["threads"]
    assert plan.threads("propagate", "c6h6") == 8
