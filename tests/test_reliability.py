"""A long command killed with SIGKILL and rerun gives bit-identical outputs and leaves nothing.

This is the small form of ``benchmarks/reliability.py``, whose docstring says what is
compared and what is ignored. Five cases are run single-threaded: ``rtml propagate`` (H2,
200 steps, a checkpoint every 20), ``rtml dataset assemble`` into a new store and onto an
existing one, ``rtml train`` (3 epochs), and ``snakemake train_h2`` on a tiny config. Each
is killed at one or two points of an uninterrupted run's work, then rerun.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "reliability.py"
_spec = importlib.util.spec_from_file_location("reliability", _SCRIPT)
# registered before it runs: its dataclasses look their module up in sys.modules
reliability = sys.modules["reliability"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability)

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("reliability")


@pytest.mark.parametrize("name", reliability.CASES)
def test_killed_command_reruns_to_identical_outputs(work, name):
    case = reliability.make_cases(work, reliability.SMALL, names=(name,))[name]
    trials = reliability.run_case(case, work / name, reliability.SMALL.fractions[name])
    assert any(t.kill_s is not None for t in trials), "every run finished before its kill"
    failed = [reliability.format_trial(t) for t in trials if not t.ok]
    assert not failed, "\n".join(failed)
