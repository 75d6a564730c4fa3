"""Shared plumbing of the benchmark scripts: argument parsing, timing, JSON output."""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import contextmanager

import numpy as np


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="CI-size run (seconds)")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy", "auto"),
                   help="array backend of the Gram GEMMs and the eigendecomposition (benchmark 5: cupy)")
    return p


@contextmanager
def timer(out: dict, key: str):
    t0 = time.perf_counter()
    yield
    out[key] = time.perf_counter() - t0


def best_of(fn, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls (seconds)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def best_times(fns, repeat: int = 5) -> list:
    """Best wall time of each of ``fns`` (seconds), their calls interleaved, so
    that a shared host's slow phases hit all of them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return best


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "numpy": np.__version__}


def report(results: dict, json_path: str | None):
    results = {"machine": machine(), **results}
    for k, v in results.items():
        if k != "machine":
            print(f"{k:>34s}: {v:.4g}" if isinstance(v, float) else f"{k:>34s}: {v}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(results, f, indent=2, default=float)
