"""The ``rtml`` command line: the parser and :func:`main`.

A subcommand's implementation lives in its command module (``_spectrum.py``, ``_train.py``,
``_dataset_assemble.py``, ...), which the parser names with a :class:`~rtml.cli._commands.Command`
and :func:`main` imports only when that subcommand runs, so ``rtml --help`` loads neither
PySCF nor torch.

Every user error ends with one line ``rtml: error: ...`` on stderr and exit status 2, and
leaves nothing at the output path. ``rtml validate`` exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import sys

from rtml import __version__
from rtml._errors import RtmlError
from rtml.cli._commands import Command
from rtml.cli._dataset import add_dataset_parser
from rtml.model import DEFAULT_PRETRAINED, HybridSettings, add_model_options
from rtml.train import (ADAPT_EPOCHS, ADAPT_LR, BASELINE_MODELS, NEURAL_MODELS,
                        add_train_options)

log = logging.getLogger("rtml")

EXIT_USER_ERROR = 2
#: 128 + SIGPIPE: the status of a Unix tool whose reader went away (``rtml ... | head -1``).
EXIT_BROKEN_PIPE = 141


def _stdout_reader_gone() -> bool:
    """Whether stdout is a pipe whose reading end is closed (poll reports an error on it);
    if so, point stdout at /dev/null so that the interpreter's last flush stays quiet."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        gone = any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError):  # no file descriptor behind stdout
        return False
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return gone


def add_train_arguments(p) -> None:
    """The arguments of ``rtml train`` on its subparser ``p``: the training settings come
    from the fields of :class:`rtml.train.TrainConfig` (:func:`rtml.train.add_train_options`),
    the learned model's from :class:`rtml.model.ModelConfig`
    (:func:`rtml.model.add_model_options`)."""
    p.add_argument("store", help="Zarr dataset store (rtml dataset assemble)")
    p.add_argument("--model", default="rtml", choices=[*NEURAL_MODELS, *BASELINE_MODELS],
                   help="rtml (exact unitary step + equivariant learned ΔG with Mamba gates, "
                        "default), rtml-mlp (memoryless MLP gates), linear (ridge map per "
                        "molecule, Löwdin basis) or persistence")
    add_train_options(p)
    p.add_argument("--window", type=int, default=None,
                   help="longest rollout-loss horizon W (saved frames); curriculum doubling "
                        "from 16 to W (overrides --horizons)")
    add_model_options(p)
    p.add_argument("--members", type=int, default=1, metavar="N",
                   help="train an ensemble of N rtml models (MODEL_DIR/member-k, initial-weight "
                        "seed --init-seed + k, the same split) listed in MODEL_DIR/ensemble.json; "
                        "finished members are kept (default 1: one model in MODEL_DIR)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--threads", type=int, default=None, help="OpenMP/BLAS threads")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR",
                   help="output directory (model.pt, train_metrics.csv)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtml", description="Real-time TDDFT trajectories for machine learning "
        "(atomic units; geometries in Ångström).")
    parser.add_argument("--version", action="version", version=f"rtml {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("propagate", help="run RT-TDDFT for one geometry and one or more fields")
    p.add_argument("molecule", help="ladder name (see 'rtml ladder') or an .xyz/.extxyz file")
    p.add_argument("--field", action="append", required=True, metavar="SPEC",
                   help="kick:E0:POL | gaussian:E0:OMEGA:T0:SIGMA:POL | "
                        "resonant:E0:OMEGA|S<n>:DURATION:POL | none (a.u.; POL x|y|z|ex,ey,ez); "
                        "repeat to propagate several fields as one batch")
    p.add_argument("--dt", type=float, required=True, help="time step, a.u. of time")
    p.add_argument("--steps", type=int, required=True, help="number of time steps")
    p.add_argument("--xc", default=None, help="PySCF functional name, 'hf' for RT-TDHF "
                   "(default: the molecule's)")
    p.add_argument("--basis", default=None, help="basis set (default: the molecule's, 6-31G)")
    p.add_argument("--geometry", default=None, metavar="FILE.xyz",
                   help="geometry (Å) replacing the molecule's equilibrium; same atoms, same order")
    p.add_argument("--propagator", default="magnus2",
                   help="magnus2 (default), etrs or magnus4 (4th order, larger dt)")
    p.add_argument("--save-every", type=int, default=1, metavar="K", help="save every K steps")
    p.add_argument("--grid-level", type=int, default=3, help="PySCF DFT grid level (default 3)")
    p.add_argument("--pc-tol", type=float, default=1e-9,
                   help="predictor-corrector tolerance: estimated density error per step, "
                        "dt*max|[dF, P]| (default 1e-9)")
    p.add_argument("--corrector", choices=("linear", "carry", "full"), default="carry",
                   help="carry (default): each step is first tried on the linear response of "
                        "the Fock matrix around the last full build, without a build (weak "
                        "fields need a build only every many steps; the Fock matrix stored "
                        "with such a frame is that model's); linear: one full build per step, "
                        "corrector iterations on its linear response (stored Fock matrices "
                        "within --pc-tol of a fresh build: use it for training data); full: a "
                        "full Fock build every corrector iteration")
    p.add_argument("--scf-max-cycle", type=int, default=200, metavar="N",
                   help="SCF iterations before giving up (default 200)")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="N",
                   help="checkpoint every N steps (OUT.ckpt/; resumed automatically, removed "
                        "once OUT is written; a damaged one is reported and started over)")
    p.add_argument("--restart", action="store_true",
                   help="start from step 0: remove the checkpoint OUT.ckpt/ of an earlier run "
                        "instead of resuming it")
    p.add_argument("--ground-state", default=None, metavar="GS.h5",
                   help="saved ground state (rtml ground-state) of the same geometry: SCF "
                        "restart and LR-TDDFT states for S<n>/B<n> fields")
    p.add_argument("--guess", default=None, metavar="GUESS_DIR",
                   help="start the SCF from the learned ground-state guess in GUESS_DIR (rtml "
                        "train-guess) instead of PySCF's minao guess")
    p.add_argument("--threads", type=int, default=None,
                   help="OpenMP/BLAS threads (engine nwchem: MPI ranks)")
    p.add_argument("--engine", choices=["pyscf", "nwchem", "model", "hybrid"], default="pyscf",
                   help="propagation engine: pyscf (default), nwchem (rt_tddft, where "
                        "installed; per field an SCF job and one propagation job, two for a "
                        "resonant drive, streaming P(t) of every step: H2O/6-31G RT-TDHF "
                        "about 0.02 s per step on one rank; no resume after a kill), model "
                        "(a trained rtml model from the SCF ground state; --model) or hybrid "
                        "(the model propagates, the pyscf engine re-anchors where the model's "
                        "measured error or its ensemble's spread says it is unsure)")
    p.add_argument("--model", metavar="MODEL_DIR", default=None,
                   help="--engine model/hybrid: a trained model or ensemble directory (rtml "
                        "train), or the name of a shipped pretrained model (default: the "
                        f"shipped '{DEFAULT_PRETRAINED}', see rtml models)")
    hybrid = HybridSettings()
    p.add_argument("--error-tol", type=float, default=hybrid.error_tol,
                   help="--engine hybrid: estimated trajectory error (relative to the size of "
                        "the dynamics, as e(t)) the model's steps may add in all; then the "
                        f"engine finishes (default {hybrid.error_tol:g})")
    p.add_argument("--spread-tol", type=float, default=hybrid.spread_tol,
                   help="--engine hybrid: ensemble spread (relative) accumulated over a model "
                        f"segment that hands back to the engine (default {hybrid.spread_tol:g})")
    p.add_argument("--max-model-steps", type=int, default=hybrid.max_model_steps, metavar="N",
                   help=f"--engine hybrid: model steps between anchors at most "
                        f"(default {hybrid.max_model_steps})")
    p.add_argument("--anchor-steps", type=int, default=hybrid.anchor_steps, metavar="K",
                   help=f"--engine hybrid: engine steps per anchor (default {hybrid.anchor_steps})")
    p.add_argument("--calibration-steps", type=int, default=hybrid.calibration_steps,
                   metavar="K", help="--engine hybrid: engine steps of the first anchor, where "
                   "the model runs beside the engine to measure how its errors add up "
                   f"(default {hybrid.calibration_steps})")
    out = p.add_mutually_exclusive_group(required=True)
    out.add_argument("-o", "--output", metavar="OUT",
                     help="output .h5 file (one field) or directory of .h5 files (several)")
    out.add_argument("--output-dir", metavar="DIR",
                     help="always write a directory of t<NN>-<spec>.h5 files")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing output: a regular file or a directory of "
                        "trajectory files (never a symbolic link, FIFO or device)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=Command("_propagate", "cmd_propagate"))

    p = sub.add_parser("import-nwchem",
                       help="NWChem rt_tddft output(s) (+ rt_restart snapshots) -> trajectory .h5")
    p.add_argument("molecule", help="ladder name or an .xyz/.extxyz file (atoms in NWChem's order)")
    p.add_argument("outputs", nargs="+", help="NWChem output file(s) of one run, in order")
    p.add_argument("--restart", action="append", metavar="FILE.rt_restart",
                   help="restart snapshot (repeat); frames are then the snapshot times, with P(t)")
    p.add_argument("--geometry", default=None, metavar="FILE.xyz",
                   help="geometry (Å) of the run when not the molecule's equilibrium")
    p.add_argument("--basis", default=None, help="basis set of the run (default: the molecule's)")
    p.add_argument("--xc", default=None, help="functional (PySCF name) of the run")
    p.add_argument("--field", default=None, metavar="SPEC",
                   help="the field as an rtml spec, recorded as field_spec (default none)")
    p.add_argument("--nwchem-geometry", default=None, help="NWChem geometry name (default first)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.h5",
                   help="trajectory file to write")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=Command("_import_nwchem", "cmd_import_nwchem"))

    p = sub.add_parser("ground-state", help="SCF and full LR-TDDFT excitations, saved for reuse")
    p.add_argument("molecule", help="ladder name or an .xyz/.extxyz file")
    p.add_argument("--geometry", default=None, metavar="FILE.xyz",
                   help="geometry (Å) replacing the molecule's equilibrium; same atoms, same order")
    p.add_argument("--xc", default=None, help="PySCF functional name, 'hf' for TDHF "
                   "(default: the molecule's)")
    p.add_argument("--basis", default=None, help="basis set (default: the molecule's, 6-31G)")
    p.add_argument("--grid-level", type=int, default=3, help="PySCF DFT grid level (default 3)")
    p.add_argument("--nstates", type=int, default=10, help="LR-TDDFT states (default 10)")
    p.add_argument("--scf-max-cycle", type=int, default=200, metavar="N",
                   help="SCF iterations before giving up (default 200)")
    p.add_argument("--guess", default=None, metavar="GUESS_DIR",
                   help="start the SCF from the learned ground-state guess in GUESS_DIR (rtml "
                        "train-guess) instead of PySCF's minao guess")
    p.add_argument("--threads", type=int, default=None, help="OpenMP/BLAS threads")
    p.add_argument("-o", "--output", required=True, metavar="GS.h5",
                   help="ground-state file to write (rtml propagate --ground-state)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=Command("_ground_state", "cmd_ground_state"))

    p = sub.add_parser("sample-geometries",
                       help="deterministic geometry samples (stretches, bends, normal modes)")
    p.add_argument("molecule", help="ladder name or an .xyz/.extxyz file")
    p.add_argument("--n", type=int, required=True, help="number of geometries (g00 = equilibrium)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random displacements (default 0)")
    p.add_argument("--hessian-xc", default=None,
                   help="functional of the normal-mode Hessian (default: the molecule's)")
    p.add_argument("--hessian-basis", default=None,
                   help="basis of the normal-mode Hessian (default: the molecule's)")
    p.add_argument("--threads", type=int, default=None, help="OpenMP/BLAS threads")
    p.add_argument("--output-dir", required=True, metavar="DIR",
                   help="writes DIR/g00.xyz ... (Å, extended XYZ with the sample id)")
    p.add_argument("--force", action="store_true",
                   help="replace an existing DIR of geometry files rtml wrote")
    p.set_defaults(func=Command("_sample_geometries", "cmd_sample_geometries"))

    p = sub.add_parser("spectrum", help="absorption spectrum and peaks of a kick trajectory")
    p.add_argument("file", help="trajectory .h5 from a kick")
    p.add_argument("--damping-ev", type=float, default=None,
                   help="Lorentzian HWHM in eV (default 4/T)")
    p.add_argument("--max-ev", type=float, default=30.0, help="highest energy, eV (default 30)")
    p.add_argument("--min-height", type=float, default=0.01,
                   help="report peaks above this fraction of the highest (default 0.01)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="write a plot of S(E) in 1/eV against E in eV (.png, .pdf, .svg, ...)")
    p.add_argument("--force", action="store_true", help="overwrite an existing --plot file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=Command("_spectrum", "cmd_spectrum"))

    p = sub.add_parser("validate", help="check schema and physics invariants of trajectory files")
    p.add_argument("files", nargs="+", help="trajectory .h5 files, or directories (each "
                   "checked as the *.h5 files under it, sorted)")
    p.set_defaults(func=Command("_validate", "cmd_validate"))

    p = sub.add_parser("excitations", help="LR-TDDFT (full, not TDA) excitation energies")
    p.add_argument("molecule", help="ladder name or an .xyz/.extxyz file")
    p.add_argument("--nstates", type=int, default=10, help="LR-TDDFT states (default 10)")
    p.add_argument("--xc", default=None, help="PySCF functional name, 'hf' for TDHF "
                   "(default: the molecule's)")
    p.add_argument("--basis", default=None, help="basis set (default: the molecule's, 6-31G)")
    p.add_argument("--grid-level", type=int, default=3, help="PySCF DFT grid level (default 3)")
    p.set_defaults(func=Command("_excitations", "cmd_excitations"))

    p = sub.add_parser("train", help="train a model on a dataset store (reads only the store)")
    add_train_arguments(p)
    p.set_defaults(func=Command("_train", "cmd_train"))

    p = sub.add_parser("train-guess", help="fit the learned SCF ground-state guess on the "
                       "ground states of dataset stores")
    p.add_argument("stores", nargs="+", metavar="STORE", help="dataset store(s) (rtml dataset)")
    p.add_argument("-o", "--output", required=True, metavar="GUESS_DIR",
                   help="directory to write ground_state_guess.pt and guess_metrics.json to")
    p.add_argument("--epochs", type=int, default=400, help="full-batch epochs (default 400)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-2,
                   help="AdamW weight decay (default 1e-2)")
    p.add_argument("--seed", type=int, default=0,
                   help="split and initial-weight seed (default 0: the split of rtml train)")
    p.add_argument("--fractions", type=float, nargs=3, default=(0.8, 0.1, 0.1),
                   metavar=("TRAIN", "VAL", "TEST"),
                   help="geometry split fractions (default 0.8 0.1 0.1, as rtml train)")
    p.add_argument("--held-out-molecules", nargs="*", default=[], metavar="MOL",
                   help="molecules kept whole for the test split")
    p.add_argument("--threads", type=int, default=None, help="torch/BLAS threads")
    p.set_defaults(func=Command("_train_guess", "cmd_train_guess"))

    p = sub.add_parser("adapt", help="fine-tune a trained rtml model on a few trajectories of a "
                       "new molecule (few-shot)")
    p.add_argument("model", metavar="MODEL_DIR",
                   help="trained rtml model or ensemble directory (rtml train; an ensemble's "
                        "members are each fine-tuned), or a shipped pretrained model's name")
    p.add_argument("store", help="Zarr dataset store of the new molecule(s)")
    p.add_argument("--shots", type=int, required=True, metavar="K",
                   help="training trajectories to fine-tune on, drawn with --seed from the "
                        "store's training geometries (its validation geometries pick the best "
                        "epoch; its test geometries are never read)")
    p.add_argument("--epochs", type=int, default=ADAPT_EPOCHS,
                   help="fine-tuning epochs (default %(default)s)")
    p.add_argument("--lr", type=float, default=ADAPT_LR,
                   help="peak learning rate (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="shot selection, split and batch seed")
    p.add_argument("--split-fractions", default="0.8,0.1,0.1",
                   help="train,val,test by geometry of the store (default %(default)s)")
    p.add_argument("--molecules", nargs="+", default=None, help="molecule groups (default all)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--threads", type=int, default=None, help="OpenMP/BLAS threads")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    p.add_argument("-o", "--output", required=True, metavar="MODEL_DIR",
                   help="output directory of the adapted model (model.pt, train_metrics.csv)")
    p.set_defaults(func=Command("_adapt", "cmd_adapt"))

    p = sub.add_parser("evaluate", help="evaluate a trained model and baselines on the test split")
    p.add_argument("store", help="Zarr dataset store the model was trained on")
    p.add_argument("--model", required=True, metavar="MODEL_DIR",
                   help="trained model directory (rtml train)")
    p.add_argument("--baselines", default="persistence,linear,lr-tddft",
                   help="comma-separated baselines evaluated by the same code: persistence, "
                        "linear (ridge map), lr-tddft (the exact step with ΔG linear in ΔP, "
                        "no network); default all three")
    p.add_argument("--compare", nargs="*", default=None, metavar="MODEL_DIR",
                   help="further trained models evaluated alongside (e.g. the MLP ablation)")
    p.add_argument("--molecules", nargs="+", default=None,
                   help="molecule groups to evaluate (default all)")
    p.add_argument("--threads", type=int, default=None, help="OpenMP/BLAS threads")
    p.add_argument("-o", "--output", required=True, metavar="EVAL_DIR",
                   help="output directory (metrics.json, metrics.tsv, plots)")
    p.set_defaults(func=Command("_evaluate", "cmd_evaluate"))

    add_dataset_parser(sub)

    p = sub.add_parser("models", help="the pretrained models shipped with rtml, with their "
                       "measured accuracy")
    p.add_argument("--json", action="store_true", help="print the model cards as JSON")
    p.set_defaults(func=Command("_models", "cmd_models"))

    p = sub.add_parser("ladder", help="the molecule ladder with basis sizes")
    p.add_argument("--basis", default=None, help="basis for the nbf column (default each molecule's)")
    p.set_defaults(func=Command("_ladder", "cmd_ladder"))
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed reader shows here, not in the interpreter's last flush
        return status
    except RtmlError as err:
        print(f"rtml: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("rtml: interrupted (a checkpoint, if any, is kept and resumed on rerun)", file=sys.stderr)
        return 130
    except (OSError, MemoryError) as err:
        if isinstance(err, BrokenPipeError) and _stdout_reader_gone():
            return EXIT_BROKEN_PIPE
        print(f"rtml: error: {type(err).__name__}: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
