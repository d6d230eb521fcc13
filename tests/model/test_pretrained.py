"""The pretrained model shipped with the package: present, small, what its card says."""

import hashlib

import numpy as np
import pytest

from rtml.cli import main
from rtml.data import open_store_groups, trajectory_data
from rtml.model import DEFAULT_PRETRAINED, PersistenceModel, load_model, model_sha256, pretrained_models


@pytest.fixture(scope="module")
def shipped():
    models = {m.name: m for m in pretrained_models()}
    assert DEFAULT_PRETRAINED in models, "the default pretrained model is not shipped"
    return models[DEFAULT_PRETRAINED]


def test_the_shipped_model_is_small_and_its_files_are_the_cards(shipped):
    assert shipped.size_mb <= 20.0
    card = shipped.card
    assert model_sha256(shipped.path) == card["hashes"]["model_sha256"]
    for member, digest in card["hashes"]["members"].items():
        assert hashlib.sha256((shipped.path / member / "model.pt").read_bytes()).hexdigest() == digest
    assert len(load_model(shipped.path)[0].members) == len(card["hashes"]["members"]) >= 3


def test_the_shipped_weights_reproduce_the_cards_one_step_error(shipped, tmp_path):
    check = shipped.card["check"]
    traj, store = tmp_path / "check.h5", tmp_path / "check.zarr"
    assert main(["propagate", check["molecule"], "--field", check["field"], "--dt", str(check["dt"]),
                 "--steps", str(check["steps"]), "--grid-level", str(check["grid_level"]), "-q",
                 "-o", str(traj)]) == 0
    assert main(["dataset", "assemble", str(traj), "-o", str(store), "-q"]) == 0
    data = trajectory_data(open_store_groups(store)[check["molecule"]], 0, check["molecule"])

    def mse(model):
        return float(np.mean(np.abs(model.one_step(data) - data.rho[1:]) ** 2))

    measured = mse(load_model(shipped.path)[0])
    assert measured == pytest.approx(check["one_step_mse"], rel=check["rtol"])
    # the check is informative: far below persistence's one-step error on the same frames
    assert measured < 1e-2 * mse(PersistenceModel())
