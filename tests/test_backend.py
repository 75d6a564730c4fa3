"""The backend interface: NumPy here, CuPy on a GPU machine (same code path)."""
import numpy as np
import pytest

import rfdiff as rf
from rfdiff.backend import NUMPY, Backend, cupy_available, get_backend


def _sm():
    x = rf.two_modes(3.0).sample(200, seed=0)
    return rf.ScoreMatching(rf.RandomFeatureScore(m=64, seed=1), x, n_time=32)


def test_get_backend_choices():
    assert get_backend("numpy") is NUMPY
    assert get_backend(NUMPY) is NUMPY
    assert get_backend("auto").name == ("cupy" if cupy_available() else "numpy")
    with pytest.raises(ValueError, match="backend must be one of"):
        get_backend("tpu")
    if not cupy_available():
        with pytest.raises((ImportError, RuntimeError), match="cupy|CuPy"):
            get_backend("cupy")


def test_generic_backend_object_runs_the_same_code():
    """A Backend wrapping numpy under another name takes the generic xp path."""
    sm = _sm()
    generic = Backend("generic", np)
    taus = np.logspace(0, 10, 7)
    a, b = sm.flow(), sm.flow(backend=generic)
    np.testing.assert_array_equal(a.params(taus), b.params(taus))


def test_float32_flow_accuracy_is_bounded():
    """float32 is good to ~1e-4 while tau * lambda_max <~ 10 and loses the
    spectrum below ~1e-7 lambda_max beyond (as documented in Flow.from_gram)."""
    sm = _sm()
    f64, f32 = sm.flow(), sm.flow(dtype=np.float32)
    taus = np.logspace(-2, 1, 7) / f64.lambda_max
    A64, A32 = f64.params(taus), f32.params(taus)
    assert A32.dtype == np.float64
    rel = np.linalg.norm(A32 - A64, axis=(1, 2)) / np.linalg.norm(A64, axis=(1, 2))
    assert np.all(rel < 1e-3), rel
    late = 1e6 / f64.lambda_max
    assert np.linalg.norm(f32.params(late) - f64.params(late)) > 1e-2 * np.linalg.norm(f64.params(late))
    assert f32.n_clipped > f64.n_clipped


@pytest.mark.gpu
def test_cupy_matches_numpy():
    pytest.importorskip("cupy")
    if not cupy_available():
        pytest.skip("no CUDA device")
    sm = _sm()
    taus = np.logspace(0, 10, 9)
    cpu, gpu = sm.flow(), sm.flow(backend="cupy")
    np.testing.assert_allclose(gpu.params(taus), cpu.params(taus), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(gpu.train_loss(taus), cpu.train_loss(taus), rtol=1e-10)
    # assembly on the GPU: the row GEMMs (2D) and the exact ReLU kernel (1D)
    x2 = np.random.default_rng(0).standard_normal((50, 2))
    x1 = rf.two_modes(3.0).sample(100, seed=0)
    for model, x in ((rf.RandomFeatureScore(m=128, dim=2, seed=0), x2), (rf.RandomFeatureScore(m=300, seed=0), x1)):
        cpu, gpu = (rf.ScoreMatching(model, x, n_time=4, n_eps=8, backend=be).train_form for be in ("numpy", "cupy"))
        np.testing.assert_allclose(gpu.gram, cpu.gram, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(gpu.cross, cpu.cross, rtol=1e-10, atol=1e-14)
