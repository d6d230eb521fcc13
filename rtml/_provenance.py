"""Provenance of produced files: code versions and a hash of all inputs."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import rtml


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(f"cannot hash {type(value).__name__}")


def inputs_hash(inputs: dict) -> str:
    """SHA-256 of the canonical JSON of ``inputs`` (sorted keys, full float precision)."""
    text = json.dumps(inputs, sort_keys=True, default=_jsonable, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """Commit of the rtml source tree (with ``-dirty`` if modified), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "rtml"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "") if commit else "unknown"


def provenance(input_hash: str, **extra) -> dict:
    """Versions of rtml, PySCF, NumPy and Python, the git commit and the inputs' hash."""
    import pyscf  # here, not at the top: reading and assembling files must not load PySCF

    record = {
        "rtml_version": rtml.__version__,
        "rtml_git_commit": git_commit(),
        "pyscf_version": pyscf.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "inputs_sha256": input_hash,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record
