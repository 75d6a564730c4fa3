#!/usr/bin/env python
"""Figure ``resnet-ode`` (analysis/experiments/resnet_ode.py): a thin wrapper of ``rfdiff figure resnet-ode``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "resnet-ode", *sys.argv[1:]]))
