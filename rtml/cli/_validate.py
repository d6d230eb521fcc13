"""``rtml validate``: schema and physics invariants of trajectory files."""

from __future__ import annotations

from rtml.data import validate_trajectory

EXIT_VALIDATION_FAILED = 1


def cmd_validate(args) -> int:
    """Print each file's report; exit status 1 when any check of any file fails."""
    status = 0
    for path in args.files:
        report = validate_trajectory(path)
        for line in report.format_lines():
            print(line)
        if not report.ok:
            status = EXIT_VALIDATION_FAILED
    return status
