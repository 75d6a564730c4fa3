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
