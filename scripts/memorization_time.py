#!/usr/bin/env python
"""Figure ``memorization-time`` (analysis/experiments/memorization_time.py): a thin wrapper of ``rfdiff figure memorization-time``.

    python scripts/memorization_time.py            # quick size, into figures/
    python scripts/memorization_time.py --full --out paper/
    python scripts/memorization_time.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "memorization-time", *sys.argv[1:]]))
