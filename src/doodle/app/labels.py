"""Label mode's storage: drawings made on the page, appended as Google raw ndjson lines, one file per word.

    <root>/<word>.ndjson     {"word", "countrycode", "timestamp", "recognized", "key_id", "drawing"} per line

The drawing is in canvas pixels with times in ms ([[xs], [ys], [ts]] per stroke), exactly Google's raw
format, so `tools/prepare.py --src input/collected` (or `--src input`) reads these files like any raw file.
Files are only ever appended to; a word must be one of the class list, so no user text reaches a path.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from doodle.drawing.strokes import Drawing
from doodle.errors import DoodleError

# Kaggle's words are lower-case ASCII with spaces and hyphens ("The Eiffel Tower", "t-shirt"); a word must
# also match this before it becomes a file name, so a class list with odd entries cannot open a hole.
SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9 \-]{0,62}")
COUNTRY = re.compile(r"[A-Za-z]{2}")
KEY_ID_DIGITS = 19
_KEY_RE = re.compile(rb'"key_id"\s*:\s*"?(\d+)')


class CollectError(DoodleError, ValueError):
    """A save that was refused (unknown word, bad country code, a path outside the collected folder)."""


def word_path(root: str | Path, word: str, classes: Sequence[str]) -> Path:
    """`<root>/<word>.ndjson` for a word of `classes`; anything else (or a path escaping root) is refused."""
    if not isinstance(word, str) or word not in set(classes):
        raise CollectError(f"unknown word {str(word)[:40]!r}: pick one of the {len(classes)} classes")
    if not SAFE_WORD.fullmatch(word):
        raise CollectError(f"word {word[:40]!r} cannot be a file name")
    base = Path(root).resolve()
    path = (base / f"{word}.ndjson").resolve()
    if path.parent != base:
        raise CollectError(f"word {word[:40]!r} would leave the collected folder {base}")
    return path


def check_countrycode(code: str) -> str:
    """'' or a two-letter country code, upper-cased."""
    code = (code or "").strip()
    if code and not COUNTRY.fullmatch(code):
        raise CollectError(f"country code {code[:10]!r}: expected two letters such as GB, or nothing")
    return code.upper()


def existing_key_ids(path: Path) -> set[int]:
    """key_ids already in a collected file (a missing file has none)."""
    if not path.is_file():
        return set()
    with open(path, "rb") as f:
        return {int(m.group(1)) for line in f if (m := _KEY_RE.search(line))}


def new_key_id(taken: set[int], now_us: int | None = None) -> int:
    """A 19-digit key_id: microseconds since 1970 times 1000 plus 3 random digits, not in `taken`.

    Kaggle's and Google's key_ids have 16 digits, so a collected drawing never collides with theirs.
    """
    base = (time.time_ns() // 1000 if now_us is None else now_us) * 1000
    for _ in range(1000):
        key = base + secrets.randbelow(1000)
        if key not in taken:
            assert len(str(key)) == KEY_ID_DIGITS and key < 2**63, key
            return key
        base += 1000
    raise CollectError("could not find a free key_id")  # only with a pathological `taken`


def make_record(word: str, drawing: Drawing, key_id: int, countrycode: str, recognized: bool,
                when: datetime | None = None) -> dict:
    """A Google raw ndjson record: strokes [[xs], [ys], [ts]] in canvas pixels, ms from the first point."""
    if drawing.t is None:
        raise CollectError("a collected drawing needs point times (raw format)")
    t = np.rint(drawing.t - drawing.t.min()).astype(np.int64)
    strokes = []
    starts = np.concatenate([[0], drawing.ends[:-1]])
    for a, b in zip(starts, drawing.ends, strict=True):
        # float32 -> float -> JSON -> float32 is exact: the saved drawing is the one the page guessed on
        strokes.append([drawing.xy[a:b, 0].astype(np.float64).tolist(),
                        drawing.xy[a:b, 1].astype(np.float64).tolist(), t[a:b].tolist()])
    when = when or datetime.now(UTC)
    return {"word": word, "countrycode": countrycode, "timestamp": when.strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
            "recognized": bool(recognized), "key_id": str(key_id), "drawing": strokes}


def append_drawing(root: str | Path, classes: Sequence[str], word: str, drawing: Drawing,
                   countrycode: str = "", recognized: bool = False) -> tuple[Path, dict]:
    """Append one drawing to `<root>/<word>.ndjson` (created if needed); returns the file and the record."""
    path = word_path(root, word, classes)
    record = make_record(word, drawing, new_key_id(existing_key_ids(path)), check_countrycode(countrycode),
                         recognized)
    data = (json.dumps(record, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_APPEND: one write() lands whole at the end even with two sessions saving at once; O_NOFOLLOW: a
    # symlink planted at the file's name is refused rather than followed out of the folder.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise CollectError(f"{path}: short write ({written} of {len(data)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)
    return path, record


def counts(root: str | Path, classes: Sequence[str]) -> dict[str, int]:
    """Drawings collected per word (words without a file are left out)."""
    root = Path(root)
    if not root.is_dir():
        return {}
    known = set(classes)
    out = {}
    for p in sorted(root.glob("*.ndjson")):
        if p.stem in known and p.is_file():
            with open(p, "rb") as f:
                out[p.stem] = sum(1 for line in f if line.strip())
    return out


def file_stamps(root: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime_ns) of each collected file, sorted: changes whenever a drawing is saved, so a
    cache of `counts` keyed on it is re-read only then."""
    root = Path(root)
    if not root.is_dir():
        return ()
    out = []
    for p in sorted(root.glob("*.ndjson")):
        try:
            st = p.stat()
        except OSError:  # removed since the glob
            continue
        out.append((p.name, st.st_size, st.st_mtime_ns))
    return tuple(out)


def challenge_word(classes: Sequence[str], per_class_acc: np.ndarray | None, rng: np.random.Generator,
                   n_worst: int = 20) -> str:
    """A word the model gets wrong often: weighted (by error rate) draw among its `n_worst` classes."""
    if per_class_acc is None or len(per_class_acc) != len(classes):
        return classes[int(rng.integers(len(classes)))]
    acc = np.nan_to_num(np.asarray(per_class_acc, np.float64), nan=0.0)
    worst = np.argsort(acc, kind="stable")[:n_worst]
    weights = 1.0 - acc[worst] + 1e-3  # a perfect class keeps a small chance
    return classes[int(rng.choice(worst, p=weights / weights.sum()))]
