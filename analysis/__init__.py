"""rfdiff analysis: experiments, theoretical bounds, scaling fits and figures.

Built on the pure core in :mod:`rfdiff`; this package composes it, caches
results and draws the paper figures (see ``analysis.figures``).
"""
