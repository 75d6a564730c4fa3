#!/usr/bin/env python
"""Figure ``scaling`` (analysis/experiments/scaling.py): a thin wrapper of ``rfdiff figure scaling``.

    python scripts/scaling.py            # quick size, into figures/
    python scripts/scaling.py --full --out paper/
    python scripts/scaling.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "scaling", *sys.argv[1:]]))
