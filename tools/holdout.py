#!/usr/bin/env python3
"""`python tools/holdout.py ...`: write a store fold as an unlabelled test CSV plus its answers; the code is doodle.tools.holdout (console script `doodle-holdout`)."""

import sys

from doodle.tools.holdout import console

if __name__ == "__main__":
    sys.exit(console())
