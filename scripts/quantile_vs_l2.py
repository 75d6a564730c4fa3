#!/usr/bin/env python
"""Figure ``quantile-vs-l2`` (analysis/experiments/quantile_vs_l2.py): a thin wrapper of ``rfdiff figure quantile-vs-l2``.

    python scripts/quantile_vs_l2.py            # quick size, into figures/
    python scripts/quantile_vs_l2.py --full --out paper/
    python scripts/quantile_vs_l2.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "quantile-vs-l2", *sys.argv[1:]]))
