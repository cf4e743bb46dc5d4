"""Class lists shipped with the package (Kaggle's 340 words, Google's 345)."""

from __future__ import annotations

from functools import cache
from importlib.resources import files


@cache
def kaggle_classes() -> list[str]:
    """The competition's 340 words, sorted, spelled with spaces (as in `train_simplified/<word>.csv`)."""
    return [w for w in files(__name__).joinpath("kaggle_categories.txt").read_text().splitlines() if w]


@cache
def google_classes() -> list[str]:
    """Google's 345 categories (Kaggle's plus five it dropped)."""
    return [w for w in files(__name__).joinpath("google_categories.txt").read_text().splitlines() if w]
