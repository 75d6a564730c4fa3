#!/usr/bin/env python
"""Figure ``pre-memorization`` (analysis/experiments/pre_memorization.py): a thin wrapper of
``rfdiff figure pre-memorization``.

    python scripts/pre_memorization.py            # quick size, into figures/
    python scripts/pre_memorization.py --full --out paper/
    python scripts/pre_memorization.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "pre-memorization", *sys.argv[1:]]))
