"""The project's own errors. `cli.run` prints any `DoodleError` as one line (exit status 2); anything else
that escapes is a bug and keeps its traceback.

Each error also subclasses the builtin it refines (`ValueError`, `OSError`), so callers that catch those
keep working.
"""

from __future__ import annotations


class DoodleError(Exception):
    """Base of every error whose message is the whole story for the user (bad argument, file or config)."""


class UserError(DoodleError, ValueError):
    """A bad argument or input that no more specific error describes."""
