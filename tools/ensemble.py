#!/usr/bin/env python3
"""`python tools/ensemble.py ...`: blend or stack runs into a submission; the code is doodle.tools.ensemble (console script `doodle-ensemble`)."""

import sys

from doodle.tools.ensemble import console

if __name__ == "__main__":
    sys.exit(console())
