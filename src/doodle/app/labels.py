"""Label mode's storage: drawings made on the page, appended as Google raw ndjson lines, one file per word.

    <root>/<word>.ndjson     {"word", "countrycode", "timestamp", "recognized", "key_id", "drawing", "author"}

The drawing is in canvas pixels with times in ms ([[xs], [ys], [ts]] per stroke), exactly Google's raw
format, so `tools/prepare.py --src input/collected` (or `--src input`) reads these files like any raw file
(the folder's format, its locking and its review decisions: `doodle.store.collected`). Files are only ever
appended to; a word must be one of the class list, so no user text reaches a path.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from doodle.drawing.strokes import Drawing
from doodle.store.collected import CollectError, append_record, check_name, mark_folder

# Kaggle's words are lower-case ASCII with spaces and hyphens ("The Eiffel Tower", "t-shirt"); a word must
# also match this before it becomes a file name, so a class list with odd entries cannot open a hole.
SAFE_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9 \-]{0,62}")
COUNTRY = re.compile(r"[A-Za-z]{2}")
KEY_ID_DIGITS = 19
_KEY_RE = re.compile(rb'"key_id"\s*:\s*"?(\d+)')


__all__ = ["Challenge", "CollectError", "append_drawing", "challenge_weights", "challenge_word", "file_stamps",
           "make_record", "word_path"]


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


@dataclass
class _KeyIndex:
    """The key_ids of one collected file up to `offset` (the end of the last whole line this process read)."""

    ident: tuple[int, int]  # (st_dev, st_ino): a file replaced under the same name is read again from the start
    offset: int = 0
    keys: set[int] = field(default_factory=set)
    bytes_read: int = 0  # all reads of this file so far (the tests check that each byte is read about once)


# One index per file per process. Why an index and not key_ids unique by construction (time + random bits +
# a process tag): those make a clash unlikely, not impossible (two servers may draw the same tag), and the
# guarantee "distinct key_ids in a file" was a check, not a hope. The index keeps the check and its cost
# down: the file is read only from where this process stopped last time (the lines other processes and
# threads appended since), always with the file locked, so a save costs O(its own line + the others' new
# lines), O(1) amortised, instead of re-reading the whole file (O(file)) as it did.
_INDEXES: dict[Path, _KeyIndex] = {}


def taken_key_ids(path: Path) -> set[int]:
    """The key_ids in the collected file `path` (none when missing). Call it with the file locked (the
    callback of `append_record`): it reads only the bytes added since this process last looked."""
    try:
        st = path.stat()
    except FileNotFoundError:
        _INDEXES.pop(path, None)
        return set()
    idx = _INDEXES.get(path)
    if idx is None or idx.ident != (st.st_dev, st.st_ino) or st.st_size < idx.offset:
        idx = _INDEXES[path] = _KeyIndex((st.st_dev, st.st_ino))
    if st.st_size > idx.offset:
        with open(path, "rb") as f:
            f.seek(idx.offset)
            data = f.read(st.st_size - idx.offset)
        whole = data[: data.rfind(b"\n") + 1]  # a torn tail (a killed save) is read once a newline ends it
        idx.keys.update(int(m.group(1)) for m in _KEY_RE.finditer(whole))
        idx.offset += len(whole)
        idx.bytes_read += len(data)
    return idx.keys


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
                when: datetime | None = None, author: str = "") -> dict:
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
            "recognized": bool(recognized), "key_id": str(key_id), "drawing": strokes, "author": author}


def append_drawing(root: str | Path, classes: Sequence[str], word: str, drawing: Drawing,
                   countrycode: str = "", recognized: bool = False, author: str = "") -> tuple[Path, dict]:
    """Append one drawing by `author` to `<root>/<word>.ndjson` (created if needed, the folder marked as a
    collected folder); returns the file and the record. The key_id is picked with the file locked, distinct
    from every key_id in the file (`taken_key_ids`), whichever process or thread wrote them."""
    path = word_path(root, word, classes)
    countrycode, author = check_countrycode(countrycode), check_name(author)
    if drawing.t is None:
        raise CollectError("a collected drawing needs point times (raw format)")
    mark_folder(path.parent)
    record = append_record(path, lambda: make_record(word, drawing, new_key_id(taken_key_ids(path)),
                                                     countrycode, recognized, author=author))
    return path, record


def file_stamps(root: str | Path) -> tuple[tuple[str, int, int], ...]:
    """(name, size, mtime_ns) of each collected file, sorted: changes whenever a drawing is saved or a
    decision made, so a cache of the folder's counts keyed on it is re-read only then."""
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


@dataclass(frozen=True)
class Challenge:
    """A word to draw, and why it was picked."""

    word: str
    why: str


def challenge_weights(classes: Sequence[str], per_class_acc: np.ndarray | None, pairs: Sequence[dict] = (),
                      collected: Mapping[str, int] | None = None) -> np.ndarray:
    """How much a new drawing of each class would help: error rate (1 - validation accuracy; 0.5 when
    unknown) + confusion (the shares of the class's drawings in the most confused pairs, as the true class
    or as the wrong guess, capped at 1) + scarcity (1 / (1 + drawings collected of it))."""
    n = len(classes)
    if per_class_acc is None or len(per_class_acc) != n:
        err = np.full(n, 0.5)
    else:
        err = 1.0 - np.nan_to_num(np.asarray(per_class_acc, np.float64), nan=0.5)
    index = {w: i for i, w in enumerate(classes)}
    conf = np.zeros(n)
    for p in pairs:
        for w in (p["true"], p["pred"]):
            if w in index:
                conf[index[w]] += float(p["share"])
    have = np.array([(collected or {}).get(w, 0) for w in classes], np.float64)
    return err + np.minimum(conf, 1.0) + 1.0 / (1.0 + have)


def challenge_word(classes: Sequence[str], per_class_acc: np.ndarray | None, rng: np.random.Generator,
                   n_worst: int = 20, pairs: Sequence[dict] = (), collected: Mapping[str, int] | None = None
                   ) -> Challenge:
    """A weighted draw (`challenge_weights`) among the `n_worst` classes with the largest weights."""
    w = challenge_weights(classes, per_class_acc, pairs, collected)
    top = np.argsort(-w, kind="stable")[:n_worst]
    pick = int(rng.choice(top, p=w[top] / w[top].sum()))
    word = classes[pick]
    why = []
    if per_class_acc is not None and len(per_class_acc) == len(classes) and np.isfinite(per_class_acc[pick]):
        why.append(f"the model gets it right {per_class_acc[pick]:.0%} of the time")
    mixed = [p for p in pairs if word in (p["true"], p["pred"])][:1]
    why += [f"{p['true']} is mistaken for {p['pred']} ({p['share']:.0%})" for p in mixed]
    why.append(f"{(collected or {}).get(word, 0)} collected so far")
    return Challenge(word, "; ".join(why))
