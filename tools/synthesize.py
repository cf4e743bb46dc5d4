#!/usr/bin/env python3
"""`python tools/synthesize.py ...`: a Kaggle-shaped data set of any size from real drawings; the code is doodle.tools.synthesize (console script `doodle-synthesize`)."""

import sys

from doodle.tools.synthesize import console

if __name__ == "__main__":
    sys.exit(console())
