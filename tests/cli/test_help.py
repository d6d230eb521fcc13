"""The command line documents itself: every option of every subcommand has a help text, and
``rtml train``'s settings are the fields of :class:`rtml.train.TrainConfig` (names,
defaults, parsing)."""

import argparse
from dataclasses import fields

import pytest

from rtml.cli import build_parser, main
from rtml.train import TrainConfig, train_options


def _subparsers(parser: argparse.ArgumentParser, path=("rtml",)):
    """(command path, parser) of ``parser`` and of every subcommand below it."""
    yield " ".join(path), parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subparsers(sub, (*path, name))


def test_every_option_of_every_subcommand_has_help():
    undocumented = [f"{command} {'/'.join(action.option_strings)}"
                    for command, parser in _subparsers(build_parser())
                    for action in parser._actions
                    if action.option_strings and not isinstance(action, argparse._HelpAction)
                    and not (action.help or "").strip()]
    assert not undocumented, f"options without help: {undocumented}"


def _train_parser() -> argparse.ArgumentParser:
    return dict(_subparsers(build_parser()))["rtml train"]


def test_train_flags_are_the_documented_ones():
    flags = {s for action in _train_parser()._actions for s in action.option_strings}
    assert flags == {
        "-h", "--help", "--model", "--molecules", "--seed", "--split-by", "--split-fractions",
        "--held-out-molecules", "--epochs", "--sequence-epochs", "--frame-batches",
        "--batch-size", "--horizons", "--window", "--learned", "--d-model", "--lr", "--restart",
        "--threads", "-q", "--quiet", "-o", "--output", "--shots", "--init-seed", "--members",
        "--corrector-iterations"}


def test_train_defaults_are_train_config_defaults():
    args = build_parser().parse_args(["train", "store.zarr", "-o", "out"])
    settings = train_options(args)
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name in settings}
    assert settings == defaults
    assert set(settings) == {"epochs", "batch_size", "frame_batches", "sequence_epochs", "lr",
                             "rollout_horizons", "seed", "init_seed", "split_by",
                             "held_out_molecules", "fractions", "molecules", "shots"}
    assert TrainConfig(**settings) == TrainConfig()


def test_train_flags_set_train_config_fields():
    args = build_parser().parse_args([
        "train", "store.zarr", "-o", "out", "--epochs", "3", "--batch-size", "2",
        "--frame-batches", "5", "--sequence-epochs", "1", "--lr", "0.01", "--horizons", "4,8",
        "--seed", "7", "--split-by", "molecule", "--held-out-molecules", "h2",
        "--split-fractions", "0.5,0.25,0.25", "--molecules", "h2", "lih", "--shots", "3",
        "--init-seed", "4"])
    config = TrainConfig(**train_options(args))
    assert (config.shots, config.init_seed, config.weights_seed) == (3, 4, 4)
    assert (config.epochs, config.batch_size, config.frame_batches, config.sequence_epochs,
            config.lr, config.seed, config.split_by) == (3, 2, 5, 1, 0.01, 7, "molecule")
    assert config.rollout_horizons == (4, 8)
    assert config.fractions == (0.5, 0.25, 0.25)
    assert config.held_out_molecules == ("h2",)
    assert config.molecules == ("h2", "lih")


@pytest.mark.parametrize("flag,text,message", [
    ("--horizons", "4,x", "rtml: error: --horizons must be positive integers, got '4,x'"),
    ("--split-fractions", "0.5,0.5",
     "rtml: error: --split-fractions must be three numbers train,val,test, got '0.5,0.5'"),
])
def test_malformed_train_list_is_one_line_error(tmp_path, capsys, flag, text, message):
    out = tmp_path / "model"
    status = main(["train", str(tmp_path / "store.zarr"), flag, text, "-o", str(out)])
    assert status == 2 and not out.exists()
    assert capsys.readouterr().err.strip().splitlines() == [message]
