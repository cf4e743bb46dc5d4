#!/usr/bin/env python3
"""`python tools/submit.py ...`: validate and submit a CSV to Kaggle; the code is doodle.tools.submit (console script `doodle-submit`)."""

import sys

from doodle.tools.submit import console

if __name__ == "__main__":
    sys.exit(console())
