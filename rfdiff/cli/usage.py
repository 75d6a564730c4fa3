"""What every subcommand shares: the usage error (one line, exit status 2) and argument types."""
from __future__ import annotations

import argparse

__all__ = ["UsageError", "int_at_least", "positive_float"]


class UsageError(Exception):
    """Bad usage, config or environment: reported as one line, exit status 2."""


def int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum`` (else a one-line usage error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {value}")
        return value
    return parse


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0 (else a one-line usage error)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value
