"""Class lists shipped with the package (Kaggle's 340 words, Google's 345)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path


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
        raise ValueError(f"class list {spec!r} is empty")
    return words
