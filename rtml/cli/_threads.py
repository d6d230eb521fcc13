"""``--threads``: the cores a job may use."""

from __future__ import annotations

from threadpoolctl import threadpool_limits

from rtml._errors import InputError


def set_threads(threads: int | None) -> None:
    """Give PySCF's OpenMP and NumPy's BLAS this many threads (the job's cores); ``None``
    leaves them as they are.

    Raises:
        InputError: ``threads < 1``.
    """
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    # PySCF is imported here, when a job asks for threads: `import rtml.cli` (and so
    # `rtml --help`) must not load it
    from pyscf import lib

    lib.num_threads(threads)
    threadpool_limits(threads)
