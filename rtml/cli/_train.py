"""``rtml train``: fit a model on a dataset store (reads only the store).

The arguments are defined with the parser (:mod:`rtml.cli._main`, from the torch-free
:class:`rtml.train.TrainConfig` and :class:`rtml.model.ModelConfig`); this module imports
torch and runs only when ``train`` is the subcommand.
"""

from __future__ import annotations

import logging

from rtml._errors import InputError
from rtml.cli._threads import set_threads
from rtml.model import model_options
from rtml.train import NEURAL_MODELS, TrainConfig, train_baseline, train_rtml

log = logging.getLogger("rtml")

def _split_fractions(text: str) -> tuple[float, float, float]:
    """``"0.8,0.1,0.1"`` -> (train, val, test) fractions."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"--split-fractions must be three numbers train,val,test, got '{text}'")
    return values


def _horizons(text: str) -> tuple[int, ...]:
    """``"16,32,64"`` -> the rollout-loss horizons, steps."""
    try:
        horizons = tuple(int(h) for h in text.split(","))
    except ValueError:
        horizons = ()
    if not horizons or min(horizons) < 1:
        raise InputError(f"--horizons must be positive integers, got '{text}'")
    return horizons


def _train_config(args, fractions, held_out) -> TrainConfig:
    """The :class:`TrainConfig` of the learned model; ``--window`` sets a doubling curriculum."""
    settings = dict(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                    split_by=args.split_by, frame_batches=args.frame_batches,
                    sequence_epochs=args.sequence_epochs, held_out_molecules=held_out,
                    fractions=fractions, molecules=tuple(args.molecules) if args.molecules else None,
                    model={"dynamics": NEURAL_MODELS[args.model], **model_options(args)})
    if args.window is None:
        return TrainConfig(rollout_horizons=_horizons(args.horizons), **settings)
    if args.window < 1:
        raise InputError(f"--window must be >= 1, got {args.window}")
    return TrainConfig.from_window(args.window, **settings)


def cmd_train(args) -> int:
    """Train the learned model or fit a baseline; print the path of ``model.pt``."""
    set_threads(args.threads)
    if args.epochs < 1:  # refused for every model: no run ever writes an untrained model
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    fractions = _split_fractions(args.split_fractions)
    held_out = tuple(args.held_out_molecules or ())
    if args.split_by == "molecule" and not held_out:
        raise InputError("--split-by molecule needs --held-out-molecules (the zero-shot test set)")
    if args.model in NEURAL_MODELS:
        out = train_rtml(args.store, args.output, _train_config(args, fractions, held_out),
                         resume=not args.restart, progress=not args.quiet)
    else:
        if args.epochs != TrainConfig.epochs:
            log.info("%s is a closed-form fit on all consecutive frames: --epochs does not apply",
                     args.model)
        out = train_baseline(args.store, args.model, args.output, molecules=args.molecules,
                             seed=args.seed, fractions=fractions, held_out_molecules=held_out)
    print(out / "model.pt")
    return 0
