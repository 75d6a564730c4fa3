"""analysis.experiments._threads.threads: numba, torch and BLAS thread counts set and restored."""
import numba
import numpy as np
from threadpoolctl import threadpool_info

from analysis.experiments._threads import threads


def _blas_threads():
    return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]


def test_threads_sets_and_restores_numba_and_blas():
    np.linalg.eigh(np.eye(4))                  # BLAS/LAPACK loaded
    before_numba, before_blas = numba.get_num_threads(), _blas_threads()
    assert before_blas, "no BLAS library found by threadpoolctl"
    with threads(1):
        assert numba.get_num_threads() == 1
        assert _blas_threads() == [1] * len(before_blas)
        with threads(2):
            assert numba.get_num_threads() == min(2, numba.config.NUMBA_NUM_THREADS)
            assert all(n == 2 for n in _blas_threads())
        assert numba.get_num_threads() == 1 and _blas_threads() == [1] * len(before_blas)
    assert numba.get_num_threads() == before_numba and _blas_threads() == before_blas
    with threads(None):                        # None: leaves every library alone
        assert numba.get_num_threads() == before_numba and _blas_threads() == before_blas


def test_threads_sets_torch_when_installed():
    import pytest

    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    with threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
