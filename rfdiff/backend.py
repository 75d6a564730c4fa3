"""Array backends: one small object passed down instead of ``if cupy:`` branches.

A backend bundles an array module ``xp`` (NumPy or CuPy), its special
functions, its symmetric eigensolver and host/device transfers. The flow
solver, the Gram assembly and the particle samplers are written once against
this interface. ``get_backend("auto")`` picks CuPy
when it imports and a CUDA device answers, NumPy otherwise; ``backend.name``
says which was chosen.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import scipy.linalg
import scipy.special


@dataclass(frozen=True)
class Backend:
    name: str
    xp: ModuleType

    def asarray(self, a, dtype=np.float64):
        return self.xp.asarray(a, dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    @property
    def special(self) -> ModuleType:
        """The matching ``scipy.special`` (``cupyx.scipy.special`` for CuPy)."""
        if self.name == "cupy":
            import cupyx.scipy.special

            return cupyx.scipy.special
        return scipy.special

    def eigh(self, a):
        """Eigenvalues (ascending) and eigenvectors of a symmetric matrix."""
        if self.name == "cupy":
            import cupyx

            # cuSOLVER reports failures silently unless asked to raise.
            with cupyx.errstate(linalg="raise"):
                return self.xp.linalg.eigh(a)
        # divide-and-conquer ('evd', numpy's choice too) measured fastest here for m >= 1024
        return scipy.linalg.eigh(a, driver="evd", check_finite=False)

    def synchronize(self):
        if self.name == "cupy":
            self.xp.cuda.Device().synchronize()


NUMPY = Backend("numpy", np)


def cupy_available() -> bool:
    """True when CuPy imports and a CUDA device is usable."""
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def get_backend(name: str | Backend = "numpy") -> Backend:
    """``"numpy"``, ``"cupy"`` or ``"auto"`` (CuPy if a GPU is usable)."""
    if isinstance(name, Backend):
        return name
    if name == "numpy":
        return NUMPY
    if name == "auto":
        return get_backend("cupy") if cupy_available() else NUMPY
    if name == "cupy":
        try:
            import cupy
        except ImportError:
            raise ImportError("backend='cupy' needs CuPy: pip install 'rfdiff[gpu]' "
                              "(or the cupy-cudaXXx wheel matching your CUDA)") from None
        if not cupy_available():
            raise RuntimeError("backend='cupy': CuPy is installed but no CUDA device is usable")
        return Backend("cupy", cupy)
    raise ValueError(f"backend must be one of ['auto', 'cupy', 'numpy'], got {name!r}")
