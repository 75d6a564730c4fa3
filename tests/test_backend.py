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


def _sampler_cases():
    """(score, x_T): a 1D ReLU flow score, 2D scores of every smooth activation, and
    a plain callable (no features: called on host arrays)."""
    x = rf.two_modes(2.0).sample(100, seed=0)
    flow = rf.ScoreMatching(rf.RandomFeatureScore(m=48, seed=1), x, t_min=1e-2, T=2.0, n_time=8).flow()
    noise1 = rf.samplers.prior_noise(200, seed=3)
    cases = [(flow.score_at(1e3), noise1)]
    rng = np.random.default_rng(4)
    for act in ("softplus", "tanh", "gelu", "swish"):
        model = rf.RandomFeatureScore(m=40, dim=2, activation=act, seed=2)
        cases.append((model.score_fn(rng.standard_normal((2, 40))), rf.samplers.prior_noise(150, dim=2, seed=5)))
    cases.append((rf.as_score(lambda z, t: -z * np.exp(-np.reshape(t, (-1, 1)))), noise1))
    return cases


@pytest.mark.parametrize("case", range(6))
def test_samplers_on_a_generic_backend_match_numpy(case, monkeypatch):
    """Particles on a backend: random-feature scores by the backend's GEMMs (here
    NumPy arrays through the generic path, in chunks of ~20 particles, the last
    one partial), other scores on host arrays; the same samples as the NumPy
    path (sorted kinks / batched features) to rounding."""
    from rfdiff.samplers import euler_maruyama, heun, probability_flow, time_schedule
    monkeypatch.setattr(rf.samplers, "DEVICE_CHUNK", 1000)
    score, x_T = _sampler_cases()[case]
    generic = Backend("generic", np)
    ts = time_schedule(2.0, 1e-2, 40)
    # fixed steps agree to rounding; the adaptive solver's steps may differ where a
    # step's error is within rounding of the tolerance (ReLU kinks: many
    # rejections), so it agrees to its tolerance (rtol 1e-8 per step)
    for run, tol in ((lambda be: heun(score, x_T, ts, backend=be), 1e-12),
                     (lambda be: euler_maruyama(score, x_T, ts, rng=7, backend=be), 1e-12),
                     (lambda be: probability_flow(score, x_T, t_min=1e-2, T=2.0, rtol=1e-8, backend=be), 1e-6)):
        a, b = run("numpy"), run(generic)
        assert isinstance(b, np.ndarray) and b.shape == a.shape
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
    _, st = probability_flow(score, x_T, t_min=1e-2, T=2.0, return_stats=True, backend=generic)
    assert st.extra["backend"] == "generic"


def test_activation_on_a_backend():
    from rfdiff.model.features import ACTIVATIONS, activation
    x = np.linspace(-30, 30, 101)
    for name in ACTIVATIONS:
        np.testing.assert_array_equal(activation(name, x, backend=Backend("generic", np)), activation(name, x))


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
    # samplers with the particles on the GPU
    from rfdiff.samplers import euler_maruyama, probability_flow, time_schedule
    for score, x_T in _sampler_cases():
        ts = time_schedule(2.0, 1e-2, 40)
        np.testing.assert_allclose(euler_maruyama(score, x_T, ts, rng=7, backend="cupy"),
                                   euler_maruyama(score, x_T, ts, rng=7), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(probability_flow(score, x_T, t_min=1e-2, T=2.0, rtol=1e-8, backend="cupy"),
                                   probability_flow(score, x_T, t_min=1e-2, T=2.0, rtol=1e-8), rtol=1e-6, atol=1e-6)
