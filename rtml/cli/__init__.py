"""The ``rtml`` command-line interface (entry point ``rtml = rtml.cli:main``).

Importing it is light (no PySCF, torch or h5py): each subcommand's module is imported when
the subcommand runs.
"""

from rtml.cli._dataset import add_dataset_parser, expand_trajectory_paths
from rtml.cli._main import build_parser, main
from rtml.cli._threads import set_threads

__all__ = ["main", "build_parser", "add_dataset_parser", "expand_trajectory_paths", "set_threads"]
