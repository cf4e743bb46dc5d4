#!/usr/bin/env python3
"""`python tools/download.py ...`: Kaggle and Google downloads; the code is doodle.tools.download (console script `doodle-download`)."""

import sys

from doodle.tools.download import console

if __name__ == "__main__":
    sys.exit(console())
