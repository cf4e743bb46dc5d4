#!/usr/bin/env python3
"""Validate a submission CSV, then send it to Kaggle's quickdraw-doodle-recognition competition.

    python tools/submit.py submissions/X.csv -m "message" [--test input/test_simplified.csv] [--dry-run]

Credentials: ~/.kaggle/kaggle.json (or $KAGGLE_CONFIG_DIR/kaggle.json), KAGGLE_USERNAME + KAGGLE_KEY,
KAGGLE_API_TOKEN or ~/.kaggle/access_token. --dry-run only validates.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from doodle import cli, resources  # noqa: E402
from doodle.submission import read_test_key_ids, validate_submission  # noqa: E402

log = logging.getLogger("submit")
COMPETITION = "quickdraw-doodle-recognition"
HOW_TO = ("no Kaggle credentials: put kaggle.json (from kaggle.com > Settings > API > Create New Token) in "
          "~/.kaggle/ (or in $KAGGLE_CONFIG_DIR), or set KAGGLE_USERNAME and KAGGLE_KEY")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("csv", type=Path, help="submission file (key_id,word)")
    p.add_argument("-m", "--message", help="submission description shown on Kaggle (required unless --dry-run)")
    p.add_argument("--test", type=Path, default=Path("input/test_simplified.csv"),
                   help="Kaggle test CSV whose key_ids the submission must cover")
    p.add_argument("--dry-run", action="store_true", help="validate only, do not submit")
    return cli.add_debug_flag(p).parse_args(argv)


def _config_dir() -> Path:
    """Where the kaggle package looks for kaggle.json (same rules as kaggle 1.x and 2.x)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path(os.path.expanduser("~/.kaggle"))
    if home.exists() or not sys.platform.startswith("linux"):
        return home
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return Path(xdg) / "kaggle"


def find_credentials() -> str | None:
    """A description of the first credential source found, or None."""
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    home = Path(os.path.expanduser("~/.kaggle"))
    for f in (_config_dir() / "kaggle.json", home / "access_token", home / "access_token.txt",
              home / "credentials.json"):
        if f.is_file():
            return str(f)
    return None


def kaggle_api():
    """An authenticated KaggleApi; kaggle is imported here because importing it may already authenticate."""
    if find_credentials() is None:
        raise cli.UserError(HOW_TO)
    quiet = io.StringIO()  # the kaggle package prints its own help on failure; we report one line instead
    try:
        with contextlib.redirect_stdout(quiet):
            from kaggle.api.kaggle_api_extended import KaggleApi

            api = KaggleApi()
            api.authenticate()
    except (Exception, SystemExit) as e:
        raise cli.UserError(f"Kaggle authentication failed ({type(e).__name__}: {e}); {HOW_TO}") from None
    return api


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
    api = kaggle_api()
    try:
        result = api.competition_submit(str(args.csv), args.message, COMPETITION)
    except Exception as e:  # network, quota, HTTP errors: one line, not a traceback
        raise cli.UserError(f"Kaggle refused or failed the submission: {type(e).__name__}: {e}") from None
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(cli.run(main))
