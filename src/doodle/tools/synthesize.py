"""Make a Kaggle-shaped data set of any size from real drawings, each one moved by a random affine.

    python tools/synthesize.py --out input/synth --rows 49.7M [--test-rows 112199] [--seed 0] [--from SRC] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from doodle import cli
from doodle.store.class_sources import open_class_source
from doodle.store.synthesize import synthesize

SIZE = re.compile(r"(\d+(?:\.\d+)?)([kKmMgG]?)")
SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_size(flag: str, text: str) -> int:
    """`20000`, `500k`, `5M`, `49.7M` -> rows; anything else is a one-line error naming the flag."""
    m = SIZE.fullmatch(text.strip())
    value = float(m.group(1)) * SCALE[m.group(2).lower()] if m else -1.0
    if not m or value != int(value):
        raise cli.UserError(f"{flag}: {text!r} is not a row count (a whole number, or with k / M / G: "
                            "20000, 500k, 5M, 49.7M)")
    return int(value)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("input/synth"),
                   help="output folder: train_simplified/<word>.csv, test_simplified.csv, test_labels.csv")
    p.add_argument("--rows", default="49.7M", help="train rows in all (Kaggle's: 49.7M); 20000, 500k, 5M ...")
    p.add_argument("--test-rows", default="112199", help="test rows (Kaggle's: 112199)")
    p.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    p.add_argument("--from", dest="src", type=Path, default=Path("../shared/data/quickdraw"),
                   help="real drawings: a folder of Kaggle <word>.csv (or with train_simplified/), or a store")
    p.add_argument("--workers", type=int, default=1,
                   help="processes making classes in parallel (the files are the same for any number)")
    p.add_argument("--no-progress", action="store_true")
    return cli.add_debug_flag(p).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    rows, test_rows = parse_size("--rows", args.rows), parse_size("--test-rows", args.test_rows)
    if rows < 1:
        raise cli.UserError(f"--rows: {args.rows!r}: at least 1 row")
    if args.seed < 0:
        raise cli.UserError(f"--seed must be 0 or more, got {args.seed}")
    if args.workers < 1:
        raise cli.UserError(f"--workers must be 1 or more, got {args.workers}")
    summary = synthesize(open_class_source(args.src), args.out, rows, test_rows, args.seed,
                         progress=not args.no_progress, workers=args.workers)
    print(json.dumps(summary))
    return 0


def console() -> int:
    """`doodle-synthesize`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
