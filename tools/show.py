#!/usr/bin/env python3
"""`python tools/show.py ...`: what the model sees; the code is doodle.tools.show (console script `doodle-show`)."""

import sys

from doodle.tools.show import console

if __name__ == "__main__":
    sys.exit(console())
