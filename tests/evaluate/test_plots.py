"""What the evaluation plots tell a user (issue 15), read from the PNGs ``rtml evaluate``
writes: each carries its titles, labels, legend and marked positions as JSON in its
``Description`` text chunk, taken from the drawn artists.

The data: H2/STO-3G (s functions only), 5 geometries x 3 fields, 80 steps. The first field
of every geometry is an x kick, which cannot couple to H2 along z: a static trajectory (kept
with ``allow_static``), the one the plots used to show."""

import json

import numpy as np
import pytest
from PIL import Image

from rtml.chem import load_molecule
from rtml.data import assemble_store, open_dataset, trajectory_splits, write_trajectory
from rtml.evaluate import HORIZON_MARKER_GID, evaluate
from rtml.fields import parse_field
from rtml.tddft import PropagationSettings, SimulationInputs, simulate
from rtml.train import train_baseline

pytestmark = pytest.mark.physics

FIELDS = ("kick:1e-3:x", "gaussian:0.01:0.4:4:2:z", "kick:1e-2:z")


@pytest.fixture(scope="module")
def h2_evaluation(tmp_path_factory):
    """(store, evaluation directory) of a linear model and the baselines on H2/STO-3G."""
    root = tmp_path_factory.mktemp("h2")
    spec = load_molecule("h2")
    paths = []
    for k, stretch in enumerate((1.0, 0.9, 1.1, 1.2, 0.95)):
        inputs = SimulationInputs(molecule=spec, settings=PropagationSettings(dt=0.2, n_steps=80),
                                  fields=[parse_field(f) for f in FIELDS], basis="sto-3g",
                                  positions_angstrom=spec.positions_angstrom * stretch,
                                  grid_level=1, geometry_id=f"s{k}")
        paths += [write_trajectory(root / f"g{k}-{i}.h5", traj)
                  for i, traj in enumerate(simulate(inputs))]
    store = root / "h2.zarr"
    assemble_store(paths, store, allow_static=True)
    model_dir = train_baseline(store, "linear", root / "model", seed=0)
    evaluate(store, model_dir, root / "eval")
    return store, root / "eval"


def shown(png) -> dict:
    """The JSON record of what a PNG shows (its ``Description`` text chunk)."""
    return json.loads(Image.open(png).text["Description"])


def metrics_rows(eval_dir) -> list[dict]:
    header, *rows = [line.split("\t") for line in
                     (eval_dir / "metrics.tsv").read_text().splitlines()]
    return [dict(zip(header, row)) for row in rows]


def test_dipole_plot_shows_the_most_moving_test_trajectory(h2_evaluation):
    store, eval_dir = h2_evaluation
    ds = open_dataset(store, "h2")
    split = json.loads((eval_dir / "metrics.json").read_text())["settings"]["split"]
    test_rows = trajectory_splits({"h2": ds}, split.get("fractions", (0.8, 0.1, 0.1)),
                                  split.get("seed", 0))["h2"]["test"]
    rho = ds.rho.values
    response = {str(ds.traj_id[r].values): float(np.linalg.norm((rho[r] - rho[r, :1]).reshape(
        len(ds.time), -1), axis=1).max()) for r in test_rows}
    most, least = max(response, key=response.get), min(response, key=response.get)
    assert response[least] < 1e-10 < response[most]  # a static one among the test trajectories
    title = shown(eval_dir / "dipole.png")["panels"][0]["title"]
    assert title.startswith(f"{most}, field ") and least not in title
    assert "most-moving" in title and f"{response[most]:.3g}" in title


def test_horizon_markers_are_the_median_valid_horizons_of_metrics_tsv(h2_evaluation):
    _, eval_dir = h2_evaluation
    record = shown(eval_dir / "error_vs_horizon.png")
    markers = {k: v for panel in record["panels"] for k, v in panel["markers"].items()}
    legend = [t for panel in record["panels"] for t in panel["legend"]]
    rows = metrics_rows(eval_dir)
    assert {r["model"] for r in rows} == {"trained_linear", "persistence", "linear", "lr-tddft"}
    for row in rows:
        horizon = float(row["median_valid_horizon"])
        assert np.isfinite(horizon)
        assert markers[HORIZON_MARKER_GID.format(model=row["model"], molecule=row["molecule"])] \
            == horizon
        n_static = int(row["static_reference"])
        assert n_static >= 1
        entry = next(t for t in legend if t.startswith(f"{row['model']}:"))
        assert f"median valid horizon {row['median_valid_horizon']} " in entry
        n_moving = int(row["n_test"]) - n_static
        assert f"({n_moving} trajector" in entry and f", {n_static} static left out)" in entry


def test_spectrum_plot_is_in_per_ev_and_shows_a_moving_kick(h2_evaluation):
    store, eval_dir = h2_evaluation
    panel = shown(eval_dir / "spectrum.png")["panels"][0]
    assert panel["xlabel"] == "photon energy E (eV)"
    assert panel["ylabel"] == "dipole strength S(E) (1/eV)"
    assert "field kick:0.01:z\n" in panel["title"] and ":x" not in panel["title"]
    assert panel["legend"][0] == "RT-TDDFT"
