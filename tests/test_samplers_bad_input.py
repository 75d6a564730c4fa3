"""Samplers refuse what they used to get wrong silently (issue 21 item 11)."""
import numpy as np
import pytest

import rfdiff as rf
from rfdiff import samplers

TARGET = rf.two_modes(3.0, 0.5)
SCORE = TARGET.score_fn(rf.OU())          # a 1-D score
#: the three samplers, each run from particles x
SAMPLERS = [
    lambda x: samplers.heun(SCORE, x, [1.0, 0.5]),
    lambda x: samplers.euler_maruyama(SCORE, x, [1.0, 0.5]),
    lambda x: samplers.probability_flow(SCORE, x, t_min=0.5, T=1.0),
]


@pytest.mark.parametrize("run", SAMPLERS)
def test_particle_dimension_must_match_the_score(run):
    with pytest.raises(ValueError, match="dimension 2 but the score has dimension 1"):
        run(np.zeros((3, 2)))


@pytest.mark.parametrize("run", SAMPLERS)
def test_no_particles(run):
    with pytest.raises(ValueError, match="no particles"):
        run(np.zeros((0, 1)))


NAN = rf.as_score(lambda z, t: np.full((len(z), 1), np.nan))


@pytest.mark.parametrize("name, run", [
    ("heun", lambda: samplers.heun(NAN, np.zeros((3, 1)), [1.0, 0.5, 0.25])),
    ("euler_maruyama", lambda: samplers.euler_maruyama(NAN, np.zeros((3, 1)), [1.0, 0.5, 0.25])),
])
def test_nan_score_is_an_error_naming_the_step(name, run):
    with pytest.raises(rf.ConvergenceError, match=rf"{name}: particles are not finite after step 0 \(t = 0.5\)"):
        run()


def test_good_input_unchanged():
    x = samplers.prior_noise(50, 1, seed=0)
    a = samplers.heun(SCORE, x, samplers.time_schedule(8.0, 1e-3, 32))
    assert a.shape == (50, 1) and np.all(np.isfinite(a))
