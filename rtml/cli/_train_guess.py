"""``rtml train-guess``: fit the learned SCF ground-state guess on the ground states of
dataset stores (:func:`rtml.train.train_ground_state_guess`)."""

from __future__ import annotations

from pathlib import Path

from rtml._errors import InputError
from rtml.cli._threads import set_threads
from rtml.train import train_ground_state_guess


def cmd_train_guess(args) -> int:
    """Fit the guess; print the path of its weights."""
    set_threads(args.threads)
    for store in args.stores:
        if not Path(store).is_dir():
            raise InputError(f"store '{store}' does not exist (a directory from rtml dataset)")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"-o {out}: exists and is not a directory")
    print(train_ground_state_guess(args.stores, out, epochs=args.epochs, lr=args.lr,
                                   weight_decay=args.weight_decay, seed=args.seed,
                                   fractions=tuple(args.fractions),
                                   held_out_molecules=tuple(args.held_out_molecules)))
    return 0
