"""Issue 21 item 12: gradient descent past its stability limit lr < 2/lambda_max."""
import warnings

import numpy as np
import pytest

from rfdiff import Flow
from test_flow import _random_form


def test_gd_params_past_the_stability_limit_raises_naming_lr_and_limit():
    form, *_ = _random_form(m=12, seed=9)
    flow = Flow.from_gram(form, A0=np.random.default_rng(1).standard_normal((2, 12)))
    limit = 2.0 / flow.lambda_max
    with warnings.catch_warnings():
        warnings.simplefilter("error")                 # no RuntimeWarning on the way to the error
        with pytest.raises(ValueError, match=r"lr must be < 2/lambda_max") as e:
            flow.gd_params(1e6, 100)
        with pytest.raises(ValueError, match="lr"):
            flow.gd_params(limit * 1.0000001, 3)
    assert f"{limit:.6g}" in str(e.value)
    # just below the limit: finite, and each mode contracts (|1 - lr lambda| < 1)
    A = flow.gd_params(0.999 * limit, 50)
    assert np.all(np.isfinite(A))
