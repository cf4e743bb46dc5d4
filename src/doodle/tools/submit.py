"""Validate a submission CSV, then send it to Kaggle's quickdraw-doodle-recognition competition.

    python tools/submit.py submissions/X.csv -m "message" [--test input/test_simplified.csv] [--dry-run]

Credentials: ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR/kaggle.json), KAGGLE_USERNAME + KAGGLE_KEY,
KAGGLE_API_TOKEN or ~/.kaggle/access_token. --dry-run only validates.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from doodle import cli, resources
from doodle.predict.submission import read_test_key_ids, validate_submission
from doodle.sources import kaggle_api

log = logging.getLogger("submit")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("csv", type=Path, help="submission file (key_id,word)")
    p.add_argument("-m", "--message", help="submission description shown on Kaggle (required unless --dry-run)")
    p.add_argument("--test", type=Path, default=Path("input/test_simplified.csv"),
                   help="Kaggle test CSV whose key_ids the submission must cover")
    p.add_argument("--dry-run", action="store_true", help="validate only, do not submit")
    return cli.add_debug_flag(p).parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    cli.setup_logging()
    if not args.dry_run and not args.message:
        raise cli.UserError("-m/--message is required to submit (or use --dry-run)")
    validate_submission(args.csv, read_test_key_ids(args.test), resources.kaggle_classes())
    log.info("%s is a valid submission", args.csv)
    if args.dry_run:
        print(f"{args.csv}: valid (dry run, not submitted)")
        return 0
    api = kaggle_api.make_kaggle_api()  # the credentials rules and messages of tools/download.py kaggle
    try:
        result = api.competition_submit(str(args.csv), args.message, kaggle_api.COMPETITION)
    except Exception as e:  # network, quota, HTTP errors: one line, not a traceback
        raise cli.UserError(f"Kaggle refused or failed the submission: {type(e).__name__}: {e}") from None
    print(result)
    return 0


def console() -> int:
    """`doodle-submit`: `main` with one-line errors (exit status 2)."""
    return cli.run(main)


if __name__ == "__main__":
    sys.exit(console())
