#!/usr/bin/env python
"""Figure ``modes-shift`` (analysis/experiments/modes_shift.py): a thin wrapper of ``rfdiff figure modes-shift``.

    python scripts/modes_shift.py            # quick size, into figures/
    python scripts/modes_shift.py --full --out paper/
    python scripts/modes_shift.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "modes-shift", *sys.argv[1:]]))
