"""``TrainConfig.from_window`` and the ``rtml train`` model options derived from ``ModelConfig``."""

import argparse
from dataclasses import fields

import pytest

from rtml import InputError
from rtml.model import ModelConfig, add_model_options, model_options
from rtml.train import TrainConfig


@pytest.mark.parametrize("window,horizons", [
    (256, (16, 32, 64, 128, 256)),
    (64, (16, 32, 64)),
    (100, (25, 50, 100)),
    (32, (16, 32)),
    (31, (31,)),
    (4, (4,)),
])
def test_window_sets_a_doubling_curriculum(window, horizons):
    cfg = TrainConfig.from_window(window, epochs=3, seed=5)
    assert cfg.rollout_horizons == horizons
    assert (cfg.epochs, cfg.seed) == (3, 5)


def test_window_below_one_is_refused():
    with pytest.raises(InputError, match="rollout_horizons"):
        TrainConfig.from_window(0)


def test_model_options_come_from_the_config_fields():
    parser = argparse.ArgumentParser()
    add_model_options(parser)
    defaults = model_options(parser.parse_args([]))
    assert list(defaults) == ["learned", "d_model"]
    assert defaults == {f.name: f.default for f in fields(ModelConfig) if f.name in defaults}
    args = parser.parse_args(["--learned", "two-electron", "--d-model", "8"])
    config = ModelConfig(**model_options(args))
    assert (config.learned, config.d_model) == ("two-electron", 8)
    with pytest.raises(SystemExit):
        parser.parse_args(["--learned", "everything"])
