"""``rtml adapt``: fine-tune a trained rtml model (or each member of an ensemble, or a shipped
pretrained model by name) on a few trajectories of a new molecule.

Plain fine-tuning (:func:`rtml.train.train_rtml` from the trained weights and scales, on
``--shots`` trajectories of the store's training geometries, best epoch by its validation
geometries); the store's test geometries stay unseen, for ``rtml evaluate``.
"""

from __future__ import annotations

from pathlib import Path

from rtml._errors import InputError
from rtml.cli._threads import set_threads
from rtml.model import (ENSEMBLE_FILE, ensemble_members, is_ensemble, load_model, model_sha256,
                        resolve_model_dir, write_ensemble)
from rtml.train import TrainConfig, adapt_config, train_rtml


def cmd_adapt(args) -> int:
    """Fine-tune ``args.model`` on ``args.store``; print the path of the adapted ``model.pt``."""
    set_threads(args.threads)
    if args.epochs < 1:
        raise InputError(f"--epochs must be >= 1, got {args.epochs}")
    fractions = TrainConfig.__dataclass_fields__["fractions"].metadata["parse"](args.split_fractions)
    model_dir = resolve_model_dir(args.model)
    if is_ensemble(model_dir):  # every member fine-tuned alike: an adapted ensemble
        names = []
        for member in ensemble_members(model_dir):
            names.append(member.name)
            _adapt_one(member, Path(args.output) / member.name, fractions, args)
        write_ensemble(args.output, names)
        print(Path(args.output) / ENSEMBLE_FILE)
        return 0
    print(_adapt_one(model_dir, Path(args.output), fractions, args) / "model.pt")
    return 0


def _adapt_one(model_dir: Path, out: Path, fractions, args) -> Path:
    _, state = load_model(model_dir)
    if state.get("model") != "rtml":
        raise InputError(f"'{model_dir}' holds a {state.get('model', 'foreign')} model; rtml adapt "
                         "fine-tunes a trained rtml model")
    cfg = adapt_config(state, args.shots, epochs=args.epochs, lr=args.lr, seed=args.seed,
                       fractions=fractions, molecules=args.molecules,
                       init_model_sha256=model_sha256(model_dir))
    return train_rtml(args.store, out, cfg, resume=not args.restart, progress=not args.quiet,
                      init_state=state)
