"""Stream Kaggle CSV / Google ndjson files into a compact memory-mapped store with fixed folds.

    python tools/prepare.py --src input/ --out input/store [--folds 5] [--workers N] [--classes FILE]
                            [--collected accepted|all|none]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from doodle import cli, resources
from doodle.drawing.strokes import Limits
from doodle.resources import load_class_list
from doodle.store.prepare import COLLECTED_MODES, PrepareOptions, prepare


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--src", nargs="+", type=Path, default=[Path("input")],
                   help="files or folders to read (.csv Kaggle, .ndjson Google raw or simplified)")
    p.add_argument("--out", type=Path, default=Path("input/store"), help="store folder (replaced)")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--workers", type=int, default=1, help="parallel processes (one file each)")
    p.add_argument("--classes", default="all",
                   help="'all' (Kaggle's 340), a file of one word per line, or 'cat,dog'")
    p.add_argument("--collected", choices=COLLECTED_MODES, default="accepted",
                   help="drawings of a collected folder (one holding _decisions.ndjson, as the drawing page "
                        "makes): only those accepted by review (default), all, or none")
    p.add_argument("--max-points", type=int, default=Limits.max_points)
    p.add_argument("--max-strokes", type=int, default=Limits.max_strokes)
    return cli.add_debug_flag(p).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    if args.folds < 2:
        raise cli.UserError(f"--folds must be at least 2, got {args.folds}")
    kaggle = resources.kaggle_classes()
    try:  # spelled as Google does (case-insensitive, '_' for ' '); a typo names the nearest words
        classes = resources.check_classes(load_class_list(args.classes, kaggle), resources.google_classes())
    except ValueError as e:
        raise cli.UserError(f"--classes: {e}") from None
    opts = PrepareOptions(classes=classes, all_known=set(resources.google_classes()), n_folds=args.folds,
                          limits=Limits(max_strokes=args.max_strokes, max_points=args.max_points),
                          collected=args.collected)
    s = prepare(args.src, args.out, opts, workers=args.workers)
    logging.getLogger("prepare").info(
        "store %s: kept %d, rejected %d, duplicates %d, filtered %d (rows %d); rejects in %s",
        args.out, s["kept"], s["rejected"], s["duplicates"], s["filtered"], s["rows"], args.out / "rejects.csv")
    print(json.dumps({k: s[k] for k in ("rows", "kept", "rejected", "duplicates", "filtered", "left_out",
                                        "per_reason")}
                     | {"collected_left_out": s["collected"]["left_out"], "skipped_files": len(s["skipped_files"])}))
    return 0


def console() -> int:
    """`doodle-prepare`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
