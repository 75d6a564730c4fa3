"""``python -m rfdiff.cli ARGS`` behaves as ``rfdiff ARGS``."""
import sys

from rfdiff.cli import main

if __name__ == "__main__":
    sys.exit(main())
