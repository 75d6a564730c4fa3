"""A trained torch network in the exact KL machinery (rfdiff/torch/train.py -> kl_ode)."""
import pytest

torch = pytest.importorskip("torch")

import rfdiff as rf  # noqa: E402
from rfdiff import torch as rft  # noqa: E402

from test_torch_train import numpy_mlp_score  # noqa: E402


def test_kl_of_trained_network_matches_numpy_evaluation():
    """KL-vs-step of a Swish net through the training callback (torch under the hood)
    equals kl_ode of the same weights evaluated by an independent numpy implementation."""
    target, proc = rf.two_modes(2.0), rf.OU()
    kw = dict(t_min=1e-2, T=4.0, tol=1e-5)

    def kl(step, score):
        return rf.kl_ode(score, target, proc, **kw)
    net = rft.MLPScore(dim=1, width=32, activation="swish", seed=0)
    hist = rft.train(net, target.sample(200, seed=0), proc, kw["t_min"], kw["T"], lr=0.5, steps=400,
                     batch_size=50, checkpoints=[0, 400], on_checkpoint=kl, progress=False)
    for step in (0, 400):
        got = hist.callback_results[step]
        ref = kl(step, numpy_mlp_score(hist.net_at(step)))
        assert got.converged and ref.converged
        assert got.value == pytest.approx(ref.value, abs=1e-9)
        assert got.kl_tmin == pytest.approx(ref.kl_tmin, abs=1e-9)
        assert got.error < 1e-4
        # the post-hoc score of the checkpoint is the callback's score
        again = kl(step, hist.score_at(step))
        assert again.value == got.value
    assert hist.callback_results[400].value < 0.2 * hist.callback_results[0].value

