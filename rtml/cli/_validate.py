"""``rtml validate``: schema and physics invariants of trajectory files.

Every file is checked, whatever happened to the ones before it: a file's report goes to
stdout; a file that cannot be read at all (missing, not HDF5, truncated or corrupt) gets one
``rtml: error: ...`` line on stderr. With more than one file, a last line on stderr says
how many failed. A directory stands for the ``*.h5`` files under it (as ``rtml dataset
assemble`` finds them).
"""

from __future__ import annotations

import sys
from pathlib import Path

from rtml._errors import RtmlError
from rtml.cli._dataset import expand_trajectory_paths
from rtml.data import validate_trajectory

EXIT_VALIDATION_FAILED = 1
#: A file could not be read at all: the status of any other ``rtml: error``.
EXIT_UNREADABLE = 2


def cmd_validate(args) -> int:
    """Print each file's report; exit 1 when a check of some file fails, 2 when some file
    cannot be read (both: 2)."""
    paths = _trajectory_paths(args.files)
    unreadable = failed = 0
    for path in paths:
        try:
            report = validate_trajectory(path)
        except RtmlError as err:
            sys.stdout.flush()  # keep the stdout reports and stderr lines in file order
            print(f"rtml: error: {err}", file=sys.stderr)
            unreadable += 1
            continue
        for line in report.format_lines():
            print(line)
        failed += not report.ok
    if len(paths) > 1 and unreadable + failed:
        sys.stdout.flush()
        print(f"rtml: {unreadable + failed} of {len(paths)} files failed validation"
              + (f" ({unreadable} unreadable)" if unreadable else ""), file=sys.stderr)
    if unreadable:
        return EXIT_UNREADABLE
    return EXIT_VALIDATION_FAILED if failed else 0


def _trajectory_paths(items: list[str]) -> list[Path]:
    """The files to check, in order: a file as given (a missing one is reported when its
    turn comes), a directory as its ``*.h5`` files, sorted.

    Raises:
        InputError: a directory that holds no ``*.h5`` file.
    """
    paths: list[Path] = []
    for item in items:
        paths += expand_trajectory_paths([item]) if Path(item).is_dir() else [Path(item)]
    return paths
