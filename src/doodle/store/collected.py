"""A collected folder: drawings made on the drawing page, and the review decisions on them.

    <root>/<word>.ndjson       one Google raw ndjson line per drawing, plus "author" (the name typed on the page)
    <root>/_decisions.ndjson   one line per review decision:
                               {"key_id", "decision": "accept"|"reject", "reviewer", "reason", "time"}

A folder is a collected folder when it holds `_decisions.ndjson`; the page creates it (empty) with the first
drawing it saves. `prepare` uses that rule to find collected drawings (`--collected accepted|all|none`); an
older folder is marked by creating the file (`touch <root>/_decisions.ndjson`).

Both files are only ever appended to, one whole line per write (`append_record`): several page servers on the
same folder never tear or interleave lines. A decision is never rewritten; the latest one for a key_id wins.
"""

from __future__ import annotations

import fcntl
import json
import os
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from doodle.drawing.flat import Drawings
from doodle.drawing.strokes import (
    DEFAULT_LIMITS,
    Drawing,
    DrawingError,
    Limits,
    parse_key_id,
    parse_ndjson_line,
)
from doodle.errors import DoodleError
from doodle.store.kaggle_writer import TRAIN_HEADER, format_train_rows

DECISIONS = "_decisions.ndjson"
DECISION_VALUES = ("accept", "reject")
STATUS = {"accept": "accepted", "reject": "rejected", None: "unreviewed"}
MAX_NAME = 40
MAX_REASON = 200
EXPORT_FORMATS = ("kaggle-csv", "ndjson")


class CollectError(DoodleError, ValueError):
    """Refused input for a collected folder (a bad name, word, decision or key_id)."""


def is_collected_folder(folder: str | Path) -> bool:
    """True for a folder holding `_decisions.ndjson` (the rule `prepare` uses)."""
    return (Path(folder) / DECISIONS).is_file()


def mark_folder(root: str | Path) -> Path:
    """Create `<root>/_decisions.ndjson` if missing (never truncated): marks root as a collected folder."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / DECISIONS, os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0), 0o644)
    os.close(fd)
    return root / DECISIONS


def clean_text(text, what: str, max_len: int, required: bool = True) -> str:
    """A person's name or a reason: NFC, spaces collapsed, at most `max_len` characters; control characters
    and path separators are refused (one-line CollectError), never silently dropped."""
    if not isinstance(text, str):
        raise CollectError(f"{what}: expected text, got {type(text).__name__}")
    if len(text) > 10 * max_len:
        raise CollectError(f"{what} is {len(text)} characters long; at most {max_len}")
    text = unicodedata.normalize("NFC", text)
    bad = sorted({c for c in text if unicodedata.category(c)[0] == "C" or c in "/\\"})
    if bad:
        raise CollectError(f"{what} {text[:max_len]!r} holds {', '.join(map(repr, bad[:3]))}: "
                           "control characters (newlines, tabs...) and / \\ are not allowed")
    text = " ".join(text.split())
    if len(text) > max_len:
        raise CollectError(f"{what} is {len(text)} characters long; at most {max_len}")
    if required and not text:
        raise CollectError(f"{what} is empty: type one first")
    return text


def check_name(name) -> str:
    """The name of whoever draws or reviews (no password: it says who, it proves nothing)."""
    return clean_text(name, "name", MAX_NAME)


def same_person(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def append_record(path: str | Path, record: dict | Callable[[], dict]) -> dict:
    """Append one JSON line to `path` (created if needed) under an exclusive lock; returns the record.

    `record` may be a function, called with the lock held (so a key_id it picks from the file is still free).
    The whole line goes out in one os.write. A file that does not end in a newline (a save killed mid-write)
    gets one first, so the torn line stays on a line of its own and the new one is intact. O_NOFOLLOW: a
    symlink planted at the file's name is refused rather than followed out of the folder.
    """
    path = Path(path)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        rec = record() if callable(record) else record
        data = (json.dumps(rec, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        written = os.write(fd, data)
        if written != len(data):
            raise CollectError(f"{path}: short write ({written} of {len(data)} bytes)")
        fcntl.flock(fd, fcntl.LOCK_UN)  # the line is whole in the file: the next writer may go on while we sync
        os.fsync(fd)
    finally:
        os.close(fd)
    return rec


@dataclass(frozen=True)
class Collected:
    """One drawing of a collected folder: its metadata, and its line to parse the strokes from."""

    key_id: int
    word: str
    author: str
    timestamp: str
    countrycode: str
    recognized: bool
    file: str
    line: int
    text: str

    def drawing(self, simplify: bool = False, limits: Limits = DEFAULT_LIMITS) -> Drawing:
        """The strokes: raw (canvas pixels, times), or simplified as `prepare` simplifies raw ndjson."""
        return parse_ndjson_line(self.text, limits, simplify=simplify).drawing


def _problem(path: Path, ln: int, why: str) -> str:
    return f"{path.name} line {ln}: {why}"


def read_drawings(root: str | Path) -> tuple[list[Collected], list[str]]:
    """Every drawing of the folder's `<word>.ndjson` files, in file then line order, and one line per line
    that is not a drawing (a torn line from a killed save, blank lines aside)."""
    root = Path(root)
    items, problems = [], []
    for path in sorted(p for p in root.glob("*.ndjson") if p.name != DECISIONS) if root.is_dir() else []:
        got, bad = read_drawing_file(path)
        items += got
        problems += bad
    return items, problems


def read_drawing_file(path: Path) -> tuple[list[Collected], list[str]]:
    """`read_drawings` for one `<word>.ndjson` file."""
    items, problems = [], []
    with open(path, "rb") as f:
        for ln, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                items.append(_collected(path, ln, raw.decode("utf-8")))
            except (UnicodeDecodeError, ValueError, DrawingError) as e:
                problems.append(_problem(path, ln, f"not a drawing ({type(e).__name__}: {str(e)[:80]}); "
                                                   "a save cut short?"))
    return items, problems


def _collected(path: Path, ln: int, text: str) -> Collected:
    rec = parse_ndjson_line(text, simplify=False)  # checks the drawing too: a torn line fails here
    obj = json.loads(text)
    author = obj.get("author")
    return Collected(rec.key_id, rec.word or "", author if isinstance(author, str) else "", rec.timestamp,
                     rec.countrycode, bool(rec.recognized), path.name, ln, text)


@dataclass(frozen=True)
class Decision:
    key_id: int
    decision: str
    reviewer: str
    reason: str
    time: str
    line: int


def read_decisions(root: str | Path) -> tuple[dict[int, Decision], list[str]]:
    """The latest decision per key_id (file order: a later line wins), and one line per unreadable line."""
    path = Path(root) / DECISIONS
    latest, problems = {}, []
    if not path.is_file():
        return latest, problems
    with open(path, "rb") as f:
        for ln, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
                if not isinstance(obj, dict) or obj.get("decision") not in DECISION_VALUES:
                    raise ValueError(f"decision must be one of {DECISION_VALUES}")
                d = Decision(parse_key_id(obj.get("key_id")), obj["decision"], str(obj.get("reviewer", "")),
                             str(obj.get("reason", "")), str(obj.get("time", "")), ln)
            except (ValueError, DrawingError) as e:
                problems.append(_problem(path, ln, f"not a decision ({str(e)[:80]}); a save cut short? ignored"))
                continue
            latest[d.key_id] = d
    return latest, problems


def status(key_id: int, latest: dict[int, Decision]) -> str:
    """'accepted', 'rejected' or 'unreviewed'."""
    d = latest.get(key_id)
    return STATUS[d.decision if d else None]


def stats(items: list[Collected], latest: dict[int, Decision]) -> dict:
    """Counts per person, per word and per review status (plus decisions made per reviewer)."""
    mine = {it.key_id for it in items}
    return {
        "drawings": len(items),
        "per_author": dict(Counter(it.author or "(no name)" for it in items).most_common()),
        "per_word": dict(sorted(Counter(it.word for it in items).items())),
        "per_status": {s: n for s in STATUS.values() if (n := sum(status(it.key_id, latest) == s for it in items))},
        "per_reviewer": dict(Counter(d.reviewer for k, d in latest.items() if k in mine).most_common()),
    }


def timestamp_us(text: str) -> int:
    """Microseconds since 1970 of a page timestamp (`2026-12-02 10:00:00.123456 UTC`); 0 when unreadable."""
    try:
        when = datetime.strptime(text.removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    except ValueError:
        return 0
    return int(when.timestamp()) * 1_000_000 + when.microsecond


def kaggle_rows(items: list[Collected], word: str) -> bytes:
    """Kaggle train_simplified rows (no header) of one word's drawings, simplified as `prepare` simplifies
    raw ndjson (`simplify_raw`) and formatted by the store's own Kaggle writer. A drawing without a country
    gets an empty countrycode field, as in Kaggle's files."""
    d = Drawings.pack([it.drawing(simplify=True) for it in items])
    codes = np.array([list((it.countrycode or "ZZ").encode("ascii")) for it in items], np.uint8).reshape(-1, 2)
    text = format_train_rows(d, np.array([it.key_id for it in items], np.int64), codes,
                             np.array([it.recognized for it in items]),
                             np.array([timestamp_us(it.timestamp) for it in items], np.int64), word)
    lines = text.split(b"\n")[:-1]
    assert len(lines) == len(items)
    return b"".join((ln if it.countrycode else ln[2:]) + b"\n" for ln, it in zip(lines, items, strict=True))


def export(items: list[Collected], out: str | Path, fmt: str, classes: Sequence[str]) -> dict:
    """One file per word under `out` (created; must be empty): `<word>.csv` in Kaggle's train_simplified
    format (`kaggle-csv`) or `<word>.ndjson` holding the collected lines as they are (`ndjson`, Google's
    raw format plus "author"). A drawing whose word is not one of `classes` is not written (counted).
    Returns the drawings written per word and the count left out."""
    if fmt not in EXPORT_FORMATS:
        raise CollectError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CollectError(f"{out}: not an empty folder; export into a new one")
    known = set(classes)
    by_word: dict[str, list[Collected]] = {}
    for it in items:
        if it.word in known and "/" not in it.word and not it.word.startswith("."):
            by_word.setdefault(it.word, []).append(it)
    out.mkdir(parents=True, exist_ok=True)
    for word, group in sorted(by_word.items()):
        if fmt == "kaggle-csv":
            (out / f"{word}.csv").write_bytes(TRAIN_HEADER + kaggle_rows(group, word))
        else:
            (out / f"{word}.ndjson").write_text("".join(it.text.rstrip("\n") + "\n" for it in group))
    per_word = {w: len(g) for w, g in sorted(by_word.items())}
    return {"per_word": per_word, "written": sum(per_word.values()), "unknown_word": len(items) - sum(per_word.values())}
