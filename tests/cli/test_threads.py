"""`--threads` reaches NumPy's and PySCF's BLAS and PySCF's OpenMP (libxc, integrals)."""

from pyscf import lib
from threadpoolctl import threadpool_info, threadpool_limits

from rtml.cli import set_threads


def test_threads_option_limits_blas_and_pyscf():
    before = lib.num_threads()
    with threadpool_limits(limits=None):  # restores every pool on exit
        threadpool_limits(2)
        lib.num_threads(2)
        set_threads(1)
        pools = threadpool_info()
        assert pools and all(p["num_threads"] == 1 for p in pools)
        assert {p["internal_api"] for p in pools} >= {"openblas", "openmp"}
        assert lib.num_threads() == 1
    lib.num_threads(before)
