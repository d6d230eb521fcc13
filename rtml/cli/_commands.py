"""The one lazy import of the ``rtml`` command line.

A command module (``rtml/cli/_train.py``, ``_spectrum.py``, ...) imports what its command
needs at its top: PySCF, torch, h5py. The parser names the module's functions with
:class:`Command`, which imports the module only when the function is called, so that
``rtml --help``, or any one subcommand, loads no more than it uses.
"""

from __future__ import annotations

import importlib


class Command:
    """The function ``name`` of the module ``rtml.cli.<module>``, imported at the first call."""

    def __init__(self, module: str, name: str):
        self.module = module
        self.name = name

    def __call__(self, *args):
        function = getattr(importlib.import_module(f"rtml.cli.{self.module}"), self.name)
        return function(*args)

    def __repr__(self) -> str:
        return f"Command(rtml.cli.{self.module}.{self.name})"
