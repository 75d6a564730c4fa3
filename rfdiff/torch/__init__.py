"""Explicit training in torch: the cross-check of the closed form, and the
trainers of the neural-network experiments.

``import rfdiff`` never imports torch; ``from rfdiff import torch as rft``
does, and fails with the install hint (``pip install 'rfdiff[torch]'``) when
PyTorch is missing.

- :mod:`~rfdiff.torch.rf`: the random-feature model with the core's frozen
  ``W, U, e(t)`` (:class:`RFNet`); full-batch :func:`gradient_descent` on the
  closed form's own loss (float64) and :func:`minibatch_training` (SGD/Adam on
  the Monte-Carlo denoising loss); :func:`gd_flow_gap_bound`.
- :mod:`~rfdiff.torch.nets`: :class:`MLPScore`, :class:`ResidualScore`, :class:`UNet`.
- :mod:`~rfdiff.torch.train`: :func:`train` -> :class:`TrainHistory`, whose
  ``score_at(step)`` is an rfdiff score for ``kl_ode``, ``kl_sde`` and the
  samplers; :func:`excess_risk`.

Time scale: the loss is normalised as a time average (:mod:`rfdiff.model.scorematching`),
so ``k`` (S)GD steps at learning rate ``lr`` are the flow's ``tau = lr * k``.
"""
from ._lazy import INSTALL_HINT, require_torch

require_torch()

from .nets import MLPScore, ResidualScore, ScoreNet, UNet  # noqa: E402
from .rf import RFHistory, RFNet, gd_flow_gap_bound, gradient_descent, minibatch_training  # noqa: E402
from .train import (DenoisingSampler, NetScore, TrainHistory, as_rfdiff_score,  # noqa: E402
                    denoising_loss, excess_risk, train)

__all__ = [
    "INSTALL_HINT", "require_torch", "RFNet", "RFHistory", "gradient_descent", "minibatch_training",
    "gd_flow_gap_bound", "ScoreNet", "MLPScore", "ResidualScore", "UNet", "train",
    "TrainHistory", "NetScore", "DenoisingSampler", "as_rfdiff_score", "denoising_loss", "excess_risk",
]
