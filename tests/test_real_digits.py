"""real-digits pieces: pair selection on known centres, the digits' scaling."""
import numpy as np
import pytest

from analysis.experiments.real_digits import digits_images, extreme_pairs


def test_extreme_pairs_on_known_centres():
    # points on a line at 0, 1, 5, 5.5, 20: nearest (2, 3) at 0.5, farthest (0, 4) at 20
    c = np.array([[0.0, 0], [1, 0], [5, 0], [5.5, 0], [20, 0]])
    perm = np.array([3, 0, 4, 1, 2])                   # shuffled: indices follow the rows
    r = extreme_pairs(c[perm])
    inv = {int(p): k for k, p in enumerate(perm)}
    assert set(r["nearest"]) == {inv[2], inv[3]} and r["nearest_distance"] == pytest.approx(0.5)
    assert set(r["farthest"]) == {inv[0], inv[4]} and r["farthest_distance"] == pytest.approx(20.0)
    # brute force over random centres
    c = np.random.default_rng(3).standard_normal((10, 64))
    D = np.linalg.norm(c[:, None] - c[None], axis=-1)
    iu = np.triu_indices(10, 1)
    r = extreme_pairs(c)
    assert r["farthest_distance"] == pytest.approx(D[iu].max())
    assert D[r["nearest"]] == pytest.approx(D[iu].min())
    with pytest.raises(ValueError, match="centres"):
        extreme_pairs(np.zeros((1, 3)))


def test_digits_scaled_to_unit_interval():
    pytest.importorskip("sklearn")
    x = digits_images()
    assert x.shape == (1797, 64) and x.min() == -1.0 and x.max() == 1.0
