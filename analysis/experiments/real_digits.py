"""Figure ``real-digits`` (issue 20 part 1) -- first pieces only: the data and the pair selection.

Not yet an experiment (no PRESETS/EXPERIMENT): the U-Net training, samples and metrics are still
to be written (docs/sections/seed000-paper.md).

- :func:`digits_images`: scikit-learn's 8x8 ``load_digits`` images scaled to [-1, 1]
  (pixel values 0..16 -> ``x/8 - 1``), shape (n, 64).
- :func:`extreme_pairs`: with centres ``c_1..c_K`` and distances ``D_ij = |c_i - c_j|`` over the
  pairs i < j, the farthest pair ``argmax_{i<j} D_ij`` and the nearest ``argmin_{i<j} D_ij``.
"""
from __future__ import annotations

import numpy as np


def digits_images() -> np.ndarray:
    """``load_digits`` images, (1797, 64), scaled to [-1, 1]."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:                      # pragma: no cover - depends on the install
        raise ImportError("real-digits needs scikit-learn: pip install scikit-learn") from exc
    return load_digits().data.astype(np.float64) / 8.0 - 1.0


def extreme_pairs(centres) -> dict:
    """Farthest and nearest pair of ``centres`` (K, d), K >= 2 (module docstring)."""
    from scipy.spatial.distance import pdist

    c = np.asarray(centres, dtype=float)
    if c.ndim != 2 or len(c) < 2 or not np.all(np.isfinite(c)):
        raise ValueError(f"centres must be a finite (K, d) array with K >= 2, got shape {np.shape(centres)}")
    dist = pdist(c)
    i, j = np.triu_indices(len(c), k=1)                # pdist's pair order
    far, near = int(np.argmax(dist)), int(np.argmin(dist))
    return {"farthest": (int(i[far]), int(j[far])), "nearest": (int(i[near]), int(j[near])),
            "farthest_distance": float(dist[far]), "nearest_distance": float(dist[near])}
