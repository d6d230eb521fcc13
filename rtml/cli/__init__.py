"""The ``rtml`` command-line interface (entry point ``rtml = rtml.cli:main``)."""

from rtml.cli._main import build_parser, main

__all__ = ["main", "build_parser"]
