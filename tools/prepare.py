#!/usr/bin/env python3
"""`python tools/prepare.py ...`: drawing files -> a store; the code is doodle.tools.prepare (console script `doodle-prepare`)."""

import sys

from doodle.tools.prepare import console

if __name__ == "__main__":
    sys.exit(console())
