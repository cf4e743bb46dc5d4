#!/usr/bin/env python3
"""`python tools/collected.py stats|export ...`: the team's collected drawings; the code is doodle.tools.collected
(console script `doodle-collected`)."""

import sys

from doodle.tools.collected import console

if __name__ == "__main__":
    sys.exit(console())
