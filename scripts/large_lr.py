#!/usr/bin/env python
"""Figure ``large-lr`` (analysis/experiments/large_lr.py): a thin wrapper of ``rfdiff figure large-lr``."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "large-lr", *sys.argv[1:]]))
