import os
from pathlib import Path

# numba's on-disk cache must be writable; keep it inside the checkout (gitignored)
os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".numba_cache"))
