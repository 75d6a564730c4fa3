"""The model: random features, their Gram/quadrature moments, the score-matching
loss, its closed-form gradient flow, and the score-batch protocol the KL
solvers, samplers and metrics evaluate scores through.

Data flow: :mod:`~rfdiff.model.features` (``s_A(x, t)``) ->
:mod:`~rfdiff.model.gram` (moments ``G``, ``C``, ``c0``) ->
:mod:`~rfdiff.model.scorematching` (the loss ``L(A)``) ->
:mod:`~rfdiff.model.flow` (``A(tau)`` in closed form).
:mod:`~rfdiff.model.batch` evaluates many parameters ``A`` at once.
"""
from .features import ACTIVATIONS, Activation, RandomFeatureScore, RFScore, TimeEmbedding, activation, \
    activation_derivative, get_activation
from .flow import Flow, QuadraticForm
from .scorematching import ScoreMatching, weighting
from .batch import ScoreBatch, make_batch

__all__ = ["ACTIVATIONS", "Activation", "RandomFeatureScore", "RFScore", "TimeEmbedding", "activation",
           "activation_derivative", "get_activation", "Flow", "QuadraticForm", "ScoreMatching",
           "weighting", "ScoreBatch", "make_batch"]
