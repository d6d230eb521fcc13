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
    assert list(defaults) == ["learned", "d_model", "corrector_iterations"]
    assert defaults == {f.name: f.default for f in fields(ModelConfig) if f.name in defaults}
    args = parser.parse_args(["--learned", "two-electron", "--d-model", "8"])
    config = ModelConfig(**model_options(args))
    assert (config.learned, config.d_model) == ("two-electron", 8)
    with pytest.raises(SystemExit):
        parser.parse_args(["--learned", "everything"])


def test_whole_trajectory_batches_accumulate_the_batch_gradient(h2_store):
    """Sequence-epoch batches are backpropagated one trajectory at a time (memory of one
    trajectory's graph, not a batch's); the gradient is the batched loss's to rounding."""
    import torch

    from rtml.model import ModelConfig, RTMLModel
    from rtml.train import (accumulate_batch, fock_loss, load_training_data,
                            prepare_trajectories, rollout_loss)

    cfg = TrainConfig()
    train, _ = load_training_data(h2_store, cfg)
    items = prepare_trajectories(train, ModelConfig().learned)[:3]
    torch.manual_seed(0)
    model = RTMLModel(ModelConfig()).double()
    with torch.no_grad():
        model.output_scale.fill_(1e-2)
    for kind, batched in (("fock", lambda: fock_loss(model, items, cfg.sequence_frames)["fock"]),
                          ("rollout", lambda: rollout_loss(model, items, 8))):
        model.zero_grad()
        batched().backward()
        want = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad()
        sums = {"fock": [], "one_step": [], "rollout": []}
        assert accumulate_batch(model, kind, items, cfg, 8, torch.Generator(), sums, 0, 0)
        got = [p.grad for p in model.parameters() if p.grad is not None]
        assert len(got) == len(want) and any(float(w.abs().max()) > 0 for w in want)
        for g, w in zip(got, want):
            assert torch.allclose(g, w, rtol=1e-9, atol=1e-15 * float(w.abs().max() + 1))
        assert len(sums["fock" if kind == "fock" else "rollout"]) == 1     # one batch mean
