"""Scores + key_ids + classes -> Kaggle submission CSV, and a strict, fast validator for such a CSV.

The Kaggle format is one header line `key_id,word`, then one row per test drawing whose `word` holds the
three best classes, best first, separated by single spaces; spaces inside a class name become
underscores (`The Eiffel Tower` -> `The_Eiffel_Tower`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from doodle.errors import DoodleError, UserError
from doodle.metrics import top_k
from doodle.runs.folder import atomic_write_bytes

HEADER = "key_id,word"
N_WORDS = 3
_MAX_KEY_DIGITS = 18  # keeps every accepted key_id inside int64


class SubmissionError(DoodleError, ValueError):
    """A submission file Kaggle would reject or mis-score; the message names the file and the line."""


def to_token(word: str) -> str:
    """A class name as written in a submission (spaces -> underscores)."""
    return word.replace(" ", "_")


def to_submission(scores: np.ndarray, key_id: np.ndarray, classes: Sequence[str]) -> pd.DataFrame:
    """Probabilities or logits (N, C) -> DataFrame(key_id, word) with the top-3 classes per row."""
    scores = np.asarray(scores)
    key_id = np.asarray(key_id)
    if scores.ndim != 2 or scores.shape != (len(key_id), len(classes)):
        raise UserError(f"scores of shape {scores.shape} do not match {len(key_id)} key_ids "
                         f"x {len(classes)} classes")
    if len(classes) < N_WORDS:
        raise UserError(f"a submission needs at least {N_WORDS} classes, got {len(classes)}")
    top = top_k(scores.astype(np.float32, copy=False), N_WORDS)
    names = np.array([to_token(c) for c in classes], dtype=object)
    words = names[top[:, 0]] + " " + names[top[:, 1]] + " " + names[top[:, 2]]
    return pd.DataFrame({"key_id": key_id.astype(np.int64), "word": words.astype(str)})


def write_submission(df: pd.DataFrame, path: str | Path) -> Path:
    """Write `df` as a Kaggle CSV (UTF-8, LF line ends) atomically, via runs.folder.atomic_write_bytes."""
    path = Path(path)
    if list(df.columns) != ["key_id", "word"]:
        raise UserError(f"submission frame needs columns ['key_id', 'word'], got {list(df.columns)}")
    atomic_write_bytes(path, df.to_csv(index=False, lineterminator="\n").encode("utf-8"))
    return path


def _read_rows(path: Path) -> tuple[str, pd.Series]:
    """The header line and the data lines (index = 1-based line number in the file)."""
    if not path.is_file():
        raise SubmissionError(f"submission {path} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SubmissionError(f"submission {path}: not UTF-8 text (byte {e.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last row
    if not lines:
        raise SubmissionError(f"submission {path}: empty file, expected the header {HEADER!r}")
    rows = pd.Series(lines[1:], index=np.arange(2, len(lines) + 1), dtype=object).str.removesuffix("\r")
    return lines[0].removesuffix("\r"), rows


def _space_hint(text: str, spaced: Sequence[str]) -> str:
    """Explain a bad row when it holds a multi-word class name written with spaces."""
    for name in spaced:
        if re.search(rf"(^| ){re.escape(name)}( |$)", text):
            return f" ('{name}' must be written '{to_token(name)}')"
    return ""


def _row_problems(rows: pd.Series, test_ids: np.ndarray, valid: set[str]) -> tuple[pd.DataFrame, pd.Series]:
    """Boolean masks of bad rows (one column per problem, in reporting order) and the parsed key_ids."""
    parts = rows.str.split(",", n=1, expand=True).reindex(columns=[0, 1])
    key_txt, word = parts[0].fillna(""), parts[1]
    fields_bad = word.isna() | word.str.contains(",", regex=False).fillna(False)
    word = word.fillna("")
    key_bad = ~key_txt.str.fullmatch(rf"\d{{1,{_MAX_KEY_DIGITS}}}") & ~fields_bad
    keys = pd.to_numeric(key_txt.where(~key_bad & ~fields_bad, "-1")).astype(np.int64)
    unknown_key = ~keys.isin(test_ids) & ~key_bad & ~fields_bad
    dup_key = keys.duplicated() & ~key_bad & ~fields_bad & ~unknown_key
    tokens = word.str.split(" ", expand=True).reindex(columns=range(N_WORDS + 1))
    count_bad = tokens[N_WORDS - 1].isna() | tokens[N_WORDS].notna()
    t = [tokens[i].fillna("") for i in range(N_WORDS)]
    unknown_word = ~count_bad & ~(t[0].isin(valid) & t[1].isin(valid) & t[2].isin(valid))
    dup_word = ~count_bad & ~unknown_word & ((t[0] == t[1]) | (t[0] == t[2]) | (t[1] == t[2]))
    masks = {"fields": fields_bad, "key_id": key_bad, "unknown_key": unknown_key, "dup_key": dup_key,
             "count": count_bad & ~fields_bad, "unknown_word": unknown_word & ~fields_bad,
             "dup_word": dup_word & ~fields_bad}
    return pd.DataFrame(masks), keys


def _describe(problem: str, line: int, rows: pd.Series, keys: pd.Series, valid: set[str],
              spaced: Sequence[str]) -> str:
    text = rows.loc[line]
    key_txt, _, word = text.partition(",")
    if problem == "fields":
        return f"expected 2 comma-separated fields key_id,word, got {text!r}"
    if problem == "key_id":
        return f"key_id {key_txt!r} is not a non-negative integer"
    if problem == "unknown_key":
        return f"key_id {key_txt} is not in the test set"
    if problem == "dup_key":
        first = int(keys.index[(keys == keys.loc[line]).to_numpy()][0])
        return f"key_id {key_txt} is duplicated (first seen on line {first})"
    if problem == "count":
        n = len(word.split(" "))
        return f"expected exactly {N_WORDS} space-separated words, got {n} in {word!r}" + _space_hint(word, spaced)
    if problem == "unknown_word":
        unknown = ", ".join(repr(t) for t in word.split(" ") if t not in valid)
        return f"unknown word(s) {unknown} in {word!r}" + _space_hint(word, spaced)
    return f"a word is repeated in {word!r}"


def validate_submission(path: str | Path, test_key_ids: np.ndarray, classes: Sequence[str]) -> None:
    """Raise SubmissionError naming the first bad line of a Kaggle CSV; return None when it is valid.

    Checks: exact header, two fields per row, integer key_ids from the test set, no duplicated key_id,
    exactly three known words per row (multi-word names with underscores), no word twice in a row, and
    every test key_id present.
    """
    path = Path(path)
    header, rows = _read_rows(path)
    if header != HEADER:
        raise SubmissionError(f"submission {path} line 1: header must be exactly {HEADER!r}, got {header!r}")
    test_ids = np.unique(np.asarray(test_key_ids, dtype=np.int64))
    valid = {to_token(c) for c in classes}
    spaced = sorted((c for c in classes if " " in c), key=len, reverse=True)
    if len(rows):
        bad, keys = _row_problems(rows, test_ids, valid)
        any_bad = bad.any(axis=1).to_numpy()
        if any_bad.any():
            line = int(rows.index[any_bad.argmax()])
            problem = str(bad.loc[line].idxmax())
            raise SubmissionError(f"submission {path} line {line}: {_describe(problem, line, rows, keys, valid, spaced)}")
        seen = keys.to_numpy()
    else:
        seen = np.empty(0, np.int64)
    missing = np.setdiff1d(test_ids, seen, assume_unique=False)
    if len(missing):
        raise SubmissionError(f"submission {path}: {len(missing)} of {len(test_ids)} test key_ids have no row "
                              f"(e.g. {missing[0]})")


def read_test_key_ids(path: str | Path) -> np.ndarray:
    """The key_ids of a Kaggle test CSV (only that column is read)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"test file {path} not found")
    try:
        ids = pd.read_csv(path, usecols=["key_id"], dtype={"key_id": np.int64})["key_id"].to_numpy()
    except ValueError as e:
        raise SubmissionError(f"test file {path}: no integer key_id column ({str(e).splitlines()[0]})") from None
    return ids
