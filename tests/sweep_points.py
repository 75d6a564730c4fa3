"""Experiment functions used by the sweep tests (importable as ``sweep_points``).

Each returns a dict of outputs as :mod:`rfdiff.sweep.result` describes.
"""
from __future__ import annotations

import os
import time

import numpy as np

from rfdiff.sweep import Param


def quadratic(x, scale=1.0, label="a"):
    """A scalar, a vector with a named, labelled dimension, and an unnamed array."""
    k = np.arange(4)
    return {
        "y": scale * x * x,
        "curve": scale * x * k.astype(float),
        "pair": np.array([x, -x], dtype=float),
        "label_len": len(label),
        "coords": {"k": k},
        "dims": {"curve": ["k"]},
    }


def sized(n, m, seed=0):
    """Declares its parameter ranges, so a config with n = -3 is refused at load time."""
    rng = np.random.default_rng(seed)
    return {"mean": float(rng.standard_normal(n).mean()) + m}


sized.PARAMS = {"n": Param(int, min=1), "m": Param(int, min=1), "seed": Param(int, min=0)}


def flaky(x):
    """Fails at x == 2; fine elsewhere."""
    if x == 2:
        raise ValueError(f"boom at x={x}")
    return {"y": 10.0 * x}


def checked(a, b):
    """Validates a combination of parameters at config load time."""
    return {"s": a + b}


def _check(params):
    if params["a"] > params["b"]:
        raise ValueError(f"a must not exceed b, got a={params['a']}, b={params['b']}")


checked.validate = _check


def slow(i, log, delay=0.3):
    """Sleeps, then appends 'i pid' to ``log`` right before returning (counts completions)."""
    time.sleep(delay)
    value = {"square": float(i * i), "trace": np.linspace(0.0, i, 5)}
    with open(log, "a") as f:  # O_APPEND: one short line per write, never interleaved
        f.write(f"{i} {os.getpid()}\n")
    return value


def sleepy(x, delay):
    """Sleeps ``delay`` seconds (for timeouts)."""
    time.sleep(delay)
    return {"x": x}


def misbehave(x):
    """Kills its worker process at x == 2 (as a segfault or the OOM killer would), raises at 3."""
    if x == 2:
        os._exit(1)
    if x == 3:
        raise ValueError(f"boom at x={x}")
    return {"y": float(x)}
