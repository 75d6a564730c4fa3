#!/usr/bin/env python
"""All figures: a thin wrapper of ``rfdiff figures`` (the README's main command).

    python scripts/make_figures.py --quick --jobs 2
    python scripts/make_figures.py --quick --out docs/figures --snippet docs/figures/README_snippet.md
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rfdiff.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["figures", *sys.argv[1:]]))
