#!/usr/bin/env python
"""Figure ``width`` (analysis/experiments/width.py): a thin wrapper of ``rfdiff figure width``.

    python scripts/width.py            # quick size, into figures/
    python scripts/width.py --full --out paper/
    python scripts/width.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "width", *sys.argv[1:]]))
