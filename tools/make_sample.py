#!/usr/bin/env python3
"""`python tools/make_sample.py ...`: the bundled sample; the code is doodle.tools.make_sample (console script `doodle-make-sample`)."""

import sys

from doodle.tools.make_sample import console

if __name__ == "__main__":
    sys.exit(console())
