"""Stream drawing files (Kaggle CSV, Google ndjson raw or simplified) as flat batches.

Every reader yields `(Batch, rejects)` chunks of bounded size, so memory does not grow with the file.
Each input row ends either in a batch or in the rejects list with its line number and reason; a file that
cannot be read at all raises `FileFormatError` naming it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from doodle.fastparse import parse_kaggle_fields
from doodle.strokes import (
    DEFAULT_LIMITS,
    Drawing,
    DrawingError,
    Limits,
    parse_kaggle_drawing,
    parse_key_id,
    parse_ndjson_line,
)

log = logging.getLogger(__name__)

CHUNK_BYTES = 8 << 20
FORMATS = (".csv", ".ndjson")


class FileFormatError(ValueError):
    """A whole file is unusable (unreadable, wrong header, not a drawing file)."""


@dataclass
class Reject:
    line: int
    key_id: str
    reason: str
    detail: str = ""


@dataclass
class Batch:
    """Drawings of one chunk as flat arrays plus their metadata, row-aligned."""

    key_id: np.ndarray  # (n,) int64
    word: list  # (n,) str or None (unlabelled test rows)
    countrycode: list
    recognized: np.ndarray  # (n,) int8: 1, 0, or -1 unknown
    timestamp: list
    line: np.ndarray  # (n,) int64, 1-based line in the source file
    xy: np.ndarray  # (P, 2) uint8, simplified 0..255 box
    t: np.ndarray  # (P,) int32 ms since the drawing's first point, -1 when untimed
    stroke_len: np.ndarray  # (S,) int32
    n_strokes: np.ndarray  # (n,) int32
    raw: np.ndarray = field(default=None)  # (n,) bool: came from raw (timed) strokes

    def __len__(self) -> int:
        return len(self.key_id)

    def n_points(self) -> np.ndarray:
        """Points per drawing."""
        ends = np.cumsum(self.n_strokes)
        per_stroke = np.concatenate([[0], np.cumsum(self.stroke_len, dtype=np.int64)])
        return np.diff(per_stroke[np.concatenate([[0], ends])])

    def drawing(self, i: int) -> Drawing:
        """Row i as a Drawing (float coordinates, times or None)."""
        s0 = int(self.n_strokes[:i].sum())
        lens = self.stroke_len[s0 : s0 + self.n_strokes[i]]
        p0 = int(self.stroke_len[:s0].sum())
        p1 = p0 + int(lens.sum())
        t = self.t[p0:p1].astype(np.float64) if self.t[p0:p1].size and self.t[p0] >= 0 else None
        return Drawing(self.xy[p0:p1].astype(np.float32), np.cumsum(lens).astype(np.int64), t)


def batch_from_drawings(rows: list[dict], drawings: list[Drawing]) -> Batch:
    """Rows of metadata + Drawings (already simplified to the 0..255 grid) -> Batch."""
    n = len(rows)
    xy = [np.clip(np.rint(d.xy), 0, 255).astype(np.uint8) for d in drawings]
    t = [(np.asarray(d.t, dtype=np.int64).clip(0, 2**31 - 1).astype(np.int32) if d.t is not None
          else np.full(d.n_points, -1, np.int32)) for d in drawings]
    lens = [np.diff(np.concatenate([[0], d.ends])).astype(np.int32) for d in drawings]
    return Batch(
        key_id=np.array([r["key_id"] for r in rows], dtype=np.int64),
        word=[r.get("word") for r in rows],
        countrycode=[r.get("countrycode", "") for r in rows],
        recognized=np.array([r.get("recognized", -1) for r in rows], dtype=np.int8),
        timestamp=[r.get("timestamp", "") for r in rows],
        line=np.array([r["line"] for r in rows], dtype=np.int64),
        xy=np.concatenate(xy) if n else np.zeros((0, 2), np.uint8),
        t=np.concatenate(t) if n else np.zeros(0, np.int32),
        stroke_len=np.concatenate(lens) if n else np.zeros(0, np.int32),
        n_strokes=np.array([d.n_strokes for d in drawings], dtype=np.int32),
        raw=np.array([d.t is not None for d in drawings], dtype=bool),
    )


def concat_batches(parts: list[Batch]) -> Batch:
    """Row-wise concatenation of batches."""
    return Batch(
        key_id=np.concatenate([b.key_id for b in parts]),
        word=[w for b in parts for w in b.word],
        countrycode=[c for b in parts for c in b.countrycode],
        recognized=np.concatenate([b.recognized for b in parts]),
        timestamp=[s for b in parts for s in b.timestamp],
        line=np.concatenate([b.line for b in parts]),
        xy=np.concatenate([b.xy for b in parts]),
        t=np.concatenate([b.t for b in parts]),
        stroke_len=np.concatenate([b.stroke_len for b in parts]),
        n_strokes=np.concatenate([b.n_strokes for b in parts]),
        raw=np.concatenate([b.raw for b in parts]),
    )


def _split_csv_line(line: str) -> list[str]:
    """Kaggle rows quote only the drawing: split on the two quotes, else fall back to the csv module."""
    if line.count('"') == 2:
        pre, mid, post = line.split('"')
        if (pre == "" or pre.endswith(",")) and (post == "" or post.startswith(",")):
            head = pre[:-1].split(",") if pre else []
            tail = post[1:].split(",") if post else []
            return head + [mid] + tail
    return next(csv.reader([line]), [])


def _parse_key_ids(values: list[str]) -> tuple[np.ndarray, list[str | None]]:
    """Vectorised key_id parse; per-row errors come back as reasons (None = fine)."""
    if all(v.isdigit() and len(v) <= 18 for v in values):
        return np.array(values, dtype=np.int64), [None] * len(values)
    out, errs = np.zeros(len(values), np.int64), []
    for i, v in enumerate(values):
        try:
            out[i] = parse_key_id(v)
            errs.append(None)
        except DrawingError as e:
            errs.append(str(e))
    return out, errs


def _decode_lines(raw_lines: list[bytes], first_line: int, rejects: list[Reject]) -> list[tuple[int, str]]:
    try:
        text = b"".join(raw_lines).decode("utf-8")
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) == len(raw_lines):
            return [(first_line + i, s.rstrip("\r")) for i, s in enumerate(lines)]
    except UnicodeDecodeError:
        pass
    out = []
    for i, b in enumerate(raw_lines):
        try:
            out.append((first_line + i, b.decode("utf-8").rstrip("\r\n")))
        except UnicodeDecodeError as e:
            rejects.append(Reject(first_line + i, "", "bad_encoding", str(e)[:80]))
    return out


def _open_checked(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise FileFormatError(f"{path}: cannot open ({e.strerror})") from None


def read_csv_header(path: Path) -> list[str]:
    """The header row of a Kaggle CSV; a clear error if it is not one."""
    with _open_checked(path) as f:
        first = f.readline()
    try:
        header = [h.strip() for h in first.decode("utf-8-sig").strip().split(",")]
    except UnicodeDecodeError:
        raise FileFormatError(f"{path}: header is not UTF-8 text; is this a Kaggle CSV?") from None
    missing = {"drawing", "key_id"} - set(header)
    if missing:
        raise FileFormatError(f"{path}: header {header[:8]} lacks column(s) {sorted(missing)}; "
                              "expected Kaggle's countrycode,drawing,key_id,recognized,timestamp,word")
    return header


def read_csv(path: Path, limits: Limits = DEFAULT_LIMITS, chunk_bytes: int = CHUNK_BYTES
             ) -> Iterator[tuple[Batch, list[Reject]]]:
    """Kaggle CSV (train rows with `word`, or test rows without) in chunks."""
    header = read_csv_header(path)
    col = {name: i for i, name in enumerate(header)}
    with _open_checked(path) as f:
        f.readline()
        line_no = 2
        while True:
            raw_lines = f.readlines(chunk_bytes)
            if not raw_lines:
                break
            rejects: list[Reject] = []
            lines = _decode_lines(raw_lines, line_no, rejects)
            line_no += len(raw_lines)
            yield _csv_chunk(lines, header, col, limits, rejects), rejects


def _csv_chunk(lines, header, col, limits, rejects) -> Batch:
    rows = []
    for ln, text in lines:
        if not text.strip():
            rejects.append(Reject(ln, "", "empty_row"))
            continue
        fields = _split_csv_line(text)
        if len(fields) != len(header):
            rejects.append(Reject(ln, "", "bad_row", f"expected {len(header)} fields, got {len(fields)}"))
            continue
        rows.append((ln, fields))
    keys, key_errs = _parse_key_ids([f[col["key_id"]] for _, f in rows])
    good = []
    for (ln, fields), k, err in zip(rows, keys, key_errs, strict=True):
        if err:
            rejects.append(Reject(ln, fields[col["key_id"]][:40], "bad_key_id", err))
        else:
            good.append((ln, fields, int(k)))
    fast = parse_kaggle_fields([f[col["drawing"]] for _, f, _ in good], limits)
    meta = [_csv_meta(ln, f, k, col) for ln, f, k in good]
    fast_rows = [m for m, ok in zip(meta, fast.ok, strict=True) if ok]
    slow_rows, slow_drawings = [], []
    for (ln, fields, k), m, ok in zip(good, meta, fast.ok, strict=True):
        if ok:
            continue
        try:
            slow_drawings.append(parse_kaggle_drawing(fields[col["drawing"]], limits))
            slow_rows.append(m)
        except DrawingError as e:
            rejects.append(Reject(ln, str(k), e.reason, e.detail[:120]))
    n = len(fast_rows)
    fast_batch = Batch(
        key_id=np.array([m["key_id"] for m in fast_rows], dtype=np.int64),
        word=[m["word"] for m in fast_rows],
        countrycode=[m["countrycode"] for m in fast_rows],
        recognized=np.array([m["recognized"] for m in fast_rows], dtype=np.int8),
        timestamp=[m["timestamp"] for m in fast_rows],
        line=np.array([m["line"] for m in fast_rows], dtype=np.int64),
        xy=fast.xy, t=np.full(len(fast.xy), -1, np.int32), stroke_len=fast.stroke_len,
        n_strokes=fast.n_strokes, raw=np.zeros(n, bool))
    if not slow_rows:
        return fast_batch
    return concat_batches([fast_batch, batch_from_drawings(slow_rows, slow_drawings)])


def _csv_meta(ln: int, f: list[str], key: int, col: dict) -> dict:
    rec = f[col["recognized"]] if "recognized" in col else ""
    return {"line": ln, "key_id": key, "word": f[col["word"]] if "word" in col else None,
            "countrycode": f[col["countrycode"]] if "countrycode" in col else "",
            "recognized": 1 if rec == "True" else 0 if rec == "False" else -1,
            "timestamp": f[col["timestamp"]] if "timestamp" in col else ""}


def read_ndjson(path: Path, limits: Limits = DEFAULT_LIMITS, chunk_bytes: int = CHUNK_BYTES
                ) -> Iterator[tuple[Batch, list[Reject]]]:
    """Google ndjson (raw strokes are simplified as Google does, keeping each kept point's time)."""
    with _open_checked(path) as f:
        line_no = 1
        while True:
            raw_lines = f.readlines(chunk_bytes)
            if not raw_lines:
                break
            rejects: list[Reject] = []
            rows, drawings = [], []
            for ln, text in _decode_lines(raw_lines, line_no, rejects):
                if not text.strip():
                    rejects.append(Reject(ln, "", "empty_row"))
                    continue
                try:
                    r = parse_ndjson_line(text, limits)
                except DrawingError as e:
                    rejects.append(Reject(ln, _guess_key(text), e.reason, e.detail[:120]))
                    continue
                rows.append({"line": ln, "key_id": r.key_id, "word": r.word, "countrycode": r.countrycode,
                             "recognized": -1 if r.recognized is None else int(r.recognized),
                             "timestamp": r.timestamp})
                drawings.append(r.drawing)
            line_no += len(raw_lines)
            yield batch_from_drawings(rows, drawings), rejects


def _guess_key(text: str) -> str:
    i = text.find('"key_id"')
    if i < 0:
        return ""
    return "".join(c for c in text[i + 8 : i + 40] if c.isdigit())[:19]


def read_file(path: Path, limits: Limits = DEFAULT_LIMITS, chunk_bytes: int = CHUNK_BYTES
              ) -> Iterator[tuple[Batch, list[Reject]]]:
    """Any supported drawing file, by extension."""
    path = Path(path)
    if path.suffix == ".csv":
        return read_csv(path, limits, chunk_bytes)
    if path.suffix == ".ndjson":
        return read_ndjson(path, limits, chunk_bytes)
    raise FileFormatError(f"{path}: unsupported file type {path.suffix!r}; expected one of {FORMATS}")


def is_labelled(path: Path) -> bool:
    """True for training files (a `word` column or field); Kaggle's test CSV has none."""
    path = Path(path)
    if path.suffix == ".csv":
        return "word" in read_csv_header(path)
    return True
