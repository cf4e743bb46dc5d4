"""Shared command-line behaviour: one-line errors (any `DoodleError`, missing or unreadable files) with exit
code 2, `--debug` for the traceback, logging."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from doodle.errors import DoodleError, UserError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__all__ = ["USER_ERRORS", "UserError", "add_debug_flag", "run", "setup_logging"]

# What a user can cause by a typo, a missing file or a bad file: reported in one line, not a traceback. Any
# other exception (a KeyError, a TypeError...) is a bug and shows its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (DoodleError, FileNotFoundError, NotADirectoryError,
                                                IsADirectoryError, PermissionError)


def setup_logging(level: int = logging.INFO, logfile: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if logfile:
        handlers.append(logging.FileHandler(logfile))
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    return parser


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """Call `main(argv)`; turn user errors into `error: ...` on stderr and exit status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(main(args) or 0)
    except USER_ERRORS as e:
        if "--debug" in args:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
