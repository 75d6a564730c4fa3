"""Thread counts of numba, torch and BLAS/OpenMP while a figure is computed.

Figures run their kernels with one thread by default (:func:`threads`): their
kernels are small and launched thousands of times (one per ODE stage), and on
a small or loaded machine a thread pool spends more time synchronising than
computing (measurements: the README, "Threads while computing figures").
"""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def threads(n: int | None = 1):
    """Run with ``n`` numba, torch and BLAS threads, restoring the previous counts.

    numba and torch are set through their own APIs; every BLAS and OpenMP library
    loaded in the process (numpy's and scipy's OpenBLAS, MKL, ...) through
    :func:`threadpoolctl.threadpool_limits`. ``n=None`` leaves them all.
    """
    if n is None:
        yield
        return
    import sys

    from threadpoolctl import threadpool_limits

    saved = []
    try:
        import numba
        saved.append((numba.set_num_threads, numba.get_num_threads()))
        numba.set_num_threads(min(int(n), numba.config.NUMBA_NUM_THREADS))
    except ImportError:
        pass
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is not None:
        saved.append((torch.set_num_threads, torch.get_num_threads()))
        torch.set_num_threads(int(n))
    try:
        with threadpool_limits(limits=int(n), user_api="blas"):
            yield
    finally:
        for setter, value in saved:
            setter(value)
