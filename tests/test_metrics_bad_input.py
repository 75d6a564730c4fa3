"""Issue 21 item 13: metrics refuse bad input with one clear ValueError."""
import numpy as np
import pytest

from rfdiff import metrics as M


def test_quantile_error_empty_x():
    with pytest.raises(ValueError, match="at least one point"):
        M.quantile_error(np.array([]), np.array([]), np.array([]), 0.1)


def test_quantile_error_nan_differences():
    with pytest.raises(ValueError, match="finite"):
        M.quantile_error(np.array([0.0, np.nan, 1.0]), np.zeros(3), np.zeros(3), 0.1)


def test_quantile_error_zero_weights():
    with pytest.raises(ValueError, match="weights"):
        M.quantile_error(np.array([0.0, 1.0]), np.zeros(2), np.zeros(2), 0.1, weights=np.zeros(2))


def test_quantile_error_still_exact():
    # discrete law: |d| = 0, 1, 2 with masses 0.5, 0.3, 0.2; delta = 0.25 -> 1 (mass above 1 is 0.2)
    r = M.quantile_error(np.array([0.0, 1.0, 2.0]), np.zeros(3), np.zeros(3), 0.25,
                         weights=np.array([0.5, 0.3, 0.2]))
    assert r.value == 1.0


@pytest.mark.parametrize("call", [
    lambda: M.memorization_fraction(np.zeros((0, 1)), np.array([[0.0], [1.0]])),
    lambda: M.reproducibility(np.zeros((0, 2)), np.zeros((0, 2))),
    lambda: M.generalizability(np.zeros((0, 1)), np.array([[0.0], [1.0]])),
])
def test_sample_metrics_empty(call):
    with pytest.raises(ValueError, match="at least one point"):
        call()
