import os
from pathlib import Path

# numba's on-disk cache must be writable; keep it inside the checkout (gitignored)
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
# Multithreaded BLAS on skinny products is ~100x slower when the cores are
# shared (test workers, numba threads); tests measure correctness, not speed.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
