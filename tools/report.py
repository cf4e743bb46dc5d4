#!/usr/bin/env python3
"""`python tools/report.py ...`: a run's report; the code is doodle.tools.report (console script `doodle-report`)."""

import sys

from doodle.tools.report import console

if __name__ == "__main__":
    sys.exit(console())
