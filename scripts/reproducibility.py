#!/usr/bin/env python
"""Figure ``reproducibility`` (analysis/experiments/reproducibility.py): a thin wrapper of ``rfdiff figure reproducibility``.

    python scripts/reproducibility.py            # quick size, into figures/
    python scripts/reproducibility.py --full --out paper/
    python scripts/reproducibility.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "reproducibility", *sys.argv[1:]]))
