#!/usr/bin/env python3
"""`python tools/export.py ...`: a run as ONNX or a .doodle package; the code is doodle.tools.export (console script `doodle-export`)."""

import sys

from doodle.tools.export import console

if __name__ == "__main__":
    sys.exit(console())
