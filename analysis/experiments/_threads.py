"""Thread counts of numba, torch and OpenBLAS while a figure is computed.

Figures run their kernels with one thread by default (:func:`threads`); see
its docstring for the measurements behind that choice.
"""
from __future__ import annotations

import contextlib


def _openblas_controls():
    """``(get, set)`` ctypes pairs of every OpenBLAS loaded in this process (numpy's
    and scipy's own copies), found in /proc/self/maps; empty where unavailable.
    (threadpoolctl does this generally; it is not a dependency of rfdiff.)"""
    import ctypes

    out = []
    try:
        with open("/proc/self/maps") as f:
            libs = sorted({ln.split()[-1] for ln in f if "openblas" in ln.lower() and ".so" in ln})
    except OSError:
        return out
    for path in libs:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre in ("scipy_openblas", "openblas"):
            for suf in ("64_", ""):
                get, set_ = f"{pre}_get_num_threads{suf}", f"{pre}_set_num_threads{suf}"
                if hasattr(lib, get) and hasattr(lib, set_):
                    out.append((getattr(lib, get), getattr(lib, set_)))
                    break
            else:
                continue
            break
    return out


@contextlib.contextmanager
def threads(n: int | None = 1):
    """Run with ``n`` numba, torch and OpenBLAS threads, restoring the previous counts.

    Figures default to one thread: their kernels are small and launched
    thousands of times (one per ODE stage), and on a small or loaded machine a
    thread pool spends far more time synchronising than computing (measured on
    a busy 2-core machine: 68 s with 2 numba threads vs 3 s with one for the
    same KL solve; torch's MLP forward 5 ms vs 0.1 ms; a 1024 x 1024 eigh 3.7 s
    with 2 OpenBLAS threads vs 0.4 s with one). ``n=None`` leaves them.
    """
    if n is None:
        yield
        return
    import sys

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
    for get, set_ in _openblas_controls():
        saved.append((set_, int(get())))
        set_(int(n))
    try:
        yield
    finally:
        for setter, value in saved:
            setter(value)


