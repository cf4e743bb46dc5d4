"""The project's own errors. `cli.run` prints any `DoodleError` as one line (exit status 2); anything else
that escapes is a bug and keeps its traceback.

Each error also subclasses the builtin it refines (`ValueError`, `OSError`), so callers that catch those
keep working.
"""

from __future__ import annotations

import difflib
from pathlib import Path


def nearest_path(path: str | Path, pattern: str = "*") -> str:
    """' (did you mean <path>?)' for a path that does not exist: its first missing part is swapped for the
    closest name beside it (one that matches `pattern` when it is the last part), and the result is named only if
    it exists; '' when nothing close does. For the end of a 'not found' message."""
    parts = Path(path).parts
    missing = next((i for i in range(len(parts)) if not Path(*parts[:i + 1]).exists()), None)
    if missing is None:
        return ""
    head, rest = Path(*parts[:missing + 1]), parts[missing + 1:]
    try:
        names = sorted(q.name for q in head.parent.glob(pattern if not rest else "*") if not rest or q.is_dir())
    except OSError:
        return ""
    for name in difflib.get_close_matches(head.name, names, n=3, cutoff=0.6):
        guess = head.parent.joinpath(name, *rest)
        if guess.exists():
            return f" (did you mean {guess}?)"
    return ""


class DoodleError(Exception):
    """Base of every error whose message is the whole story for the user (bad argument, file or config)."""


class UserError(DoodleError, ValueError):
    """A bad argument or input that no more specific error describes."""
