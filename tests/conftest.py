import os
from pathlib import Path

# numba's on-disk cache must be writable; keep it inside the checkout (gitignored)
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
# Multithreaded BLAS on skinny products is ~100x slower when the cores are
# shared (test workers, numba threads); tests measure correctness, not speed.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# commands run without --cache-dir (rfdiff trajectory, figures) cache into a scratch directory,
# not into the checkout
if "RFDIFF_CACHE_DIR" not in os.environ:
    import tempfile
    os.environ["RFDIFF_CACHE_DIR"] = tempfile.mkdtemp(prefix="rfdiff-test-cache-")


import sys

import pytest


@pytest.fixture(autouse=True)
def _torch_one_thread():
    """Torch tests are tiny and overhead-bound: with 2 intra-op threads on a busy
    2-core machine small GEMMs spin and run ~20x slower. Restored afterwards."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
