#!/usr/bin/env python
"""Figure ``real-digits`` (analysis/experiments/real_digits.py): a thin wrapper of ``rfdiff figure real-digits``.

    python scripts/real_digits.py            # quick size, into figures/
    python scripts/real_digits.py --full --out paper/
    python scripts/real_digits.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "real-digits", *sys.argv[1:]]))
