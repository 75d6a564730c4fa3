"""Validation nits of issue 21 item 14: a bool is not a count; --jobs must be >= 1."""
import pytest

import rfdiff as rf
from rfdiff.cli import main


@pytest.mark.parametrize("m", [True, False])
def test_bool_is_not_a_width(m):
    with pytest.raises(ValueError, match=r"^m must be a positive integer"):
        rf.RandomFeatureScore(m=m)


@pytest.mark.parametrize("jobs", ["0", "-1", "two"])
def test_figures_jobs_must_be_positive(jobs, capsys):
    assert main(["figures", "--tiny", "--jobs", jobs]) == 2
    assert "--jobs: must be an integer >= 1" in capsys.readouterr().err


@pytest.mark.parametrize("kw, text", [(dict(u_scale=-1.0), "u_scale must be >= 0, got -1.0"),
                                      (dict(w_scale=0.0), "w_scale must be > 0, got 0.0")])
def test_range_message_does_not_offer_inf(kw, text):
    """An infinite end is refused (values must be finite), so the message does not write it."""
    with pytest.raises(ValueError) as err:
        rf.RandomFeatureScore(m=4, **kw)
    assert str(err.value) == text and "inf" not in str(err.value)


def test_range_message_of_a_bounded_interval():
    from rfdiff.metrics import weighted_quantile_error
    with pytest.raises(ValueError, match=r"^delta must be in \[0, 1\), got 1.5$"):
        weighted_quantile_error([1.0, 2.0], [0.5, 0.5], delta=1.5)
