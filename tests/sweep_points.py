"""Experiment functions used by the sweep tests (importable as ``sweep_points``).

Each returns a dict of outputs as :mod:`rfdiff.run.result` describes, and is
registered with :func:`rfdiff.run.point_function` (a config may name only those);
``unregistered`` is not, so naming it is refused. Also the two helpers those
tests share: :func:`write_config` and :func:`log_counts` (reads the logs that
``slow`` and ``counted`` write).
"""
from __future__ import annotations

import collections
import os
import textwrap
import time
from pathlib import Path

import numpy as np

from rfdiff.run import Param, point_function


@point_function
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


@point_function
def sized(n, m, seed=0):
    """Declares its parameter ranges, so a config with n = -3 is refused at load time."""
    rng = np.random.default_rng(seed)
    return {"mean": float(rng.standard_normal(n).mean()) + m}


sized.PARAMS = {"n": Param(int, min=1), "m": Param(int, min=1), "seed": Param(int, min=0)}


@point_function
def flaky(x):
    """Fails at x == 2; fine elsewhere."""
    if x == 2:
        raise ValueError(f"boom at x={x}")
    return {"y": 10.0 * x}


@point_function
def checked(a, b):
    """Validates a combination of parameters at config load time."""
    return {"s": a + b}


def _check(params):
    if params["a"] > params["b"]:
        raise ValueError(f"a must not exceed b, got a={params['a']}, b={params['b']}")


checked.validate = _check


@point_function
def slow(i, log, delay=0.3):
    """Sleeps, then appends 'i pid' to ``log`` right before returning (counts completions)."""
    time.sleep(delay)
    value = {"square": float(i * i), "trace": np.linspace(0.0, i, 5)}
    with open(log, "a") as f:  # O_APPEND: one short line per write, never interleaved
        f.write(f"{i} {os.getpid()}\n")
    return value


@point_function
def sleepy(x, delay):
    """Sleeps ``delay`` seconds (for timeouts)."""
    time.sleep(delay)
    return {"x": x}


@point_function
def misbehave(x):
    """Kills its worker process at x == 2 (as a segfault or the OOM killer would), raises at 3."""
    if x == 2:
        os._exit(1)
    if x == 3:
        raise ValueError(f"boom at x={x}")
    return {"y": float(x)}


def unregistered(x):
    """A plain function: a config naming it is refused."""
    return {"y": x}


@point_function
def counted(i, log):
    """Appends 'i pid' to ``log`` (one line per computation) and returns i^2, after a short
    pause so that concurrent runs overlap."""
    time.sleep(0.15)
    with open(log, "a") as f:
        f.write(f"{i} {os.getpid()}\n")
    return {"square": float(i * i)}


def write_config(tmp_path: Path, body: str, name: str = "sweep.toml") -> Path:
    """``body`` (dedented) written to ``tmp_path / name``."""
    path = Path(tmp_path) / name
    path.write_text(textwrap.dedent(body))
    return path


def log_counts(log: Path) -> collections.Counter:
    """How many times each point ``i`` finished, from the 'i pid' lines of ``log``."""
    log = Path(log)
    if not log.exists():
        return collections.Counter()
    return collections.Counter(int(line.split()[0]) for line in log.read_text().splitlines())
