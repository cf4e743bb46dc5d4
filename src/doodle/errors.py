"""The project's own errors. `cli.run` prints any `DoodleError` as one line (exit status 2); anything else
that escapes is a bug and keeps its traceback.

Each error also subclasses the builtin it refines (`ValueError`, `OSError`), so callers that catch those
keep working.
"""

from __future__ import annotations

import difflib
from pathlib import Path


def nearest_path(path: str | Path, pattern: str = "*") -> str:
    """' (did you mean <sibling>?)' for a path that does not exist, naming its folder's closest entry that matches
    `pattern`; '' when none is close (or the folder is missing too). For the end of a 'not found' message."""
    path = Path(path)
    try:
        names = sorted(q.name for q in path.parent.glob(pattern)) if path.parent.is_dir() else []
    except OSError:
        return ""
    close = difflib.get_close_matches(path.name, names, n=1, cutoff=0.6)
    return f" (did you mean {path.parent / close[0]}?)" if close else ""


class DoodleError(Exception):
    """Base of every error whose message is the whole story for the user (bad argument, file or config)."""


class UserError(DoodleError, ValueError):
    """A bad argument or input that no more specific error describes."""
