#!/usr/bin/env python
"""Figure ``kl-dynamics`` (analysis/experiments/kl_dynamics.py): a thin wrapper of ``rfdiff figure kl-dynamics``.

    python scripts/kl_dynamics.py            # quick size, into figures/
    python scripts/kl_dynamics.py --full --out paper/
    python scripts/kl_dynamics.py --tiny --no-cache
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figure", "kl-dynamics", *sys.argv[1:]]))
