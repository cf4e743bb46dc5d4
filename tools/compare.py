#!/usr/bin/env python3
"""`python tools/compare.py ...`: runs side by side; the code is doodle.tools.compare (console script `doodle-compare`)."""

import sys

from doodle.tools.compare import console

if __name__ == "__main__":
    sys.exit(console())
