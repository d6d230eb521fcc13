"""``rtml train``: fit a model on a dataset store (reads only the store).

The arguments are defined with the parser (:mod:`rtml.cli._main`), from the fields of the
torch-free :class:`rtml.train.TrainConfig` and :class:`rtml.model.ModelConfig`, which
:func:`rtml.train.train_options` and :func:`rtml.model.model_options` read back; this
module imports torch and runs only when ``train`` is the subcommand.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rtml._errors import InputError
from rtml.cli._threads import set_threads
from rtml.model import ENSEMBLE_FILE, MEMBER_DIR, model_options, write_ensemble
from rtml.train import NEURAL_MODELS, TrainConfig, train_baseline, train_options, train_rtml

log = logging.getLogger("rtml")


def _train_config(args, settings: dict) -> TrainConfig:
    """The :class:`TrainConfig` of the learned model from the parsed training ``settings``
    (:func:`rtml.train.train_options`); ``--window`` sets a doubling curriculum instead of
    ``--horizons``."""
    model = {"dynamics": NEURAL_MODELS[args.model], **model_options(args)}
    if args.window is None:
        return TrainConfig(**settings, model=model)
    if args.window < 1:
        raise InputError(f"--window must be >= 1, got {args.window}")
    settings = {name: value for name, value in settings.items() if name != "rollout_horizons"}
    return TrainConfig.from_window(args.window, **settings, model=model)


def cmd_train(args) -> int:
    """Train the learned model or fit a baseline; print the path of ``model.pt``."""
    set_threads(args.threads)
    if args.epochs < 1:  # refused for every model: no run ever writes an untrained model
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    settings = train_options(args)
    if settings["split_by"] == "molecule" and not settings["held_out_molecules"]:
        raise InputError("--split-by molecule needs --held-out-molecules (the zero-shot test set)")
    if args.members < 1:
        raise InputError(f"--members must be >= 1, got {args.members}")
    if args.members > 1 and args.model not in NEURAL_MODELS:
        raise InputError(f"--members: {args.model} is a closed-form fit; ensembles are of "
                         f"{' or '.join(NEURAL_MODELS)} models")
    if args.model in NEURAL_MODELS and args.members > 1:
        return _train_ensemble(args, settings)
    if args.model in NEURAL_MODELS:
        out = train_rtml(args.store, args.output, _train_config(args, settings),
                         resume=not args.restart, progress=not args.quiet)
    else:
        if args.epochs != TrainConfig.epochs:
            log.info("%s is a closed-form fit on all consecutive frames: --epochs does not apply",
                     args.model)
        out = train_baseline(args.store, args.model, args.output, molecules=settings["molecules"],
                             seed=settings["seed"], fractions=settings["fractions"],
                             held_out_molecules=settings["held_out_molecules"],
                             shots=settings["shots"])
    print(out / "model.pt")
    return 0


def _train_ensemble(args, settings: dict) -> int:
    """Train (or finish) members 0..N-1 in MODEL_DIR/member-k, then list them in
    MODEL_DIR/ensemble.json (written last: a directory without it is not yet an ensemble)."""
    out = Path(args.output)
    first = settings["init_seed"] if settings["init_seed"] is not None else settings["seed"]
    names = []
    for k in range(args.members):
        names.append(MEMBER_DIR.format(k=k))
        log.info("ensemble member %d of %d (initial-weight seed %d)", k + 1, args.members, first + k)
        cfg = _train_config(args, {**settings, "init_seed": first + k})
        train_rtml(args.store, out / names[-1], cfg, resume=not args.restart,
                   progress=not args.quiet)
    write_ensemble(out, names)
    print(out / ENSEMBLE_FILE)
    return 0
