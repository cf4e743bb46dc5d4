"""Class lists shipped with the package (Kaggle's 340 words, Google's 345)."""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path

from doodle.errors import UserError


@cache
def kaggle_classes() -> list[str]:
    """The competition's 340 words, sorted, spelled with spaces (as in `train_simplified/<word>.csv`)."""
    return [w for w in files(__name__).joinpath("kaggle_categories.txt").read_text().splitlines() if w]


@cache
def google_classes() -> list[str]:
    """Google's 345 categories (Kaggle's plus five it dropped)."""
    return [w for w in files(__name__).joinpath("google_categories.txt").read_text().splitlines() if w]


def load_class_list(spec: str | Path | list | None, default: list[str]) -> list[str]:
    """A class list from a list, a comma-separated string, or a file of one word per line."""
    if spec is None or spec == "all":
        return list(default)
    if isinstance(spec, (list, tuple)):
        words = [str(w).strip() for w in spec]
    elif Path(str(spec)).is_file():
        words = [w.strip() for w in Path(spec).read_text().splitlines()]
    else:
        words = [w.strip() for w in str(spec).split(",")]
    words = [w.replace("_", " ") for w in words if w]
    if not words:
        raise UserError(f"class list {spec!r} is empty")
    return words


def check_classes(words: Sequence[str], known: Sequence[str]) -> list[str]:
    """`words` spelled as in `known` (case-insensitive); unknown words fail with the nearest valid names,
    and a word given twice (in any spelling) fails too."""
    by_lower = {k.lower(): k for k in known}
    out, bad = [], []
    for w in words:
        (out if w.lower() in by_lower else bad).append(by_lower.get(w.lower(), w))
    if bad:
        near = {w: ", ".join(difflib.get_close_matches(w, known, n=3, cutoff=0.5)) for w in bad[:5]}
        hints = [f"{w!r} ({'nearest: ' + n if n else 'nothing close'})" for w, n in near.items()]
        raise UserError(f"unknown class name(s): {'; '.join(hints)}")
    twice = sorted(w for w, n in Counter(out).items() if n > 1)
    if twice:
        raise UserError(f"class name(s) given more than once: {', '.join(map(repr, twice))}")
    return out
