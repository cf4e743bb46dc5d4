#!/usr/bin/env python3
"""`python tools/pseudo.py ...`: pseudo-label a test set's confident drawings as a training source; the code is doodle.tools.pseudo (console script `doodle-pseudo`)."""

import sys

from doodle.tools.pseudo import console

if __name__ == "__main__":
    sys.exit(console())
