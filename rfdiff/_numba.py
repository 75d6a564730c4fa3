"""numba helpers shared by the kernels."""
from __future__ import annotations

import types

import numba


def twins(impl, **options):
    """Serial and parallel numba versions of ``impl`` (which uses ``numba.prange``).

    Each gets its own name, so that numba's on-disk cache (keyed by qualified
    name and line) keeps them apart: otherwise one can load the other's
    machine code (a parallel kernel where a serial one was asked for, with its
    thread start-up per call). Threads pay off only for large problems.
    """
    out = []
    for suffix, parallel in (("serial", False), ("parallel", True)):
        f = types.FunctionType(impl.__code__, impl.__globals__, f"{impl.__name__}_{suffix}",
                               impl.__defaults__, impl.__closure__)
        f.__qualname__ = f"{impl.__qualname__}_{suffix}"
        out.append(numba.njit(parallel=parallel, cache=True, nogil=True, **options)(f))
    return out
