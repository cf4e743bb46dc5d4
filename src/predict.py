#!/usr/bin/env python3
"""`python src/predict.py ...`: the predict recipe; the code is doodle.predict.console, then
doodle.predict.recipe (console script `doodle-predict`)."""

import sys

from doodle.predict.console import console

if __name__ == "__main__":
    sys.exit(console())
