#!/usr/bin/env python3
"""`python src/train.py ...`: the training recipe; the code is doodle.train.console, then
doodle.train.recipe (console script `doodle-train`)."""

import sys

from doodle.train.console import console

if __name__ == "__main__":
    sys.exit(console())
