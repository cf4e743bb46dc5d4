"""Stream drawing files (Kaggle CSV, Google ndjson raw or simplified) as flat batches.

Every reader yields `(Batch, rejects)` chunks of bounded size, so memory does not grow with the file: files
are read in blocks of about `chunk_bytes`, and a line longer than the drawing limit (`Limits.max_chars`
plus room for the other fields) is skipped without being held and rejected as `too_large`. Each input row
ends either in a batch or in the rejects list with its 1-based line number and reason (`empty_row` for a
blank line, `bad_encoding` for a line that is not UTF-8, `bad_row` for a CSV row with the wrong number of
fields, `bad_key_id`, or the parser's reason); a file that cannot be read at all raises `FileFormatError`
naming it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import compress, repeat
from pathlib import Path

import numpy as np

from doodle.fastparse import parse_kaggle_fields
from doodle.store import ranges
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
LINE_SLACK = 64 << 10  # bytes a line may hold beyond the drawing field's max_chars
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

    def select(self, keep: np.ndarray) -> Batch:
        """The rows where `keep` (bool mask) is True."""
        return self.take(np.flatnonzero(keep))

    def take(self, idx: np.ndarray) -> Batch:
        """Rows `idx` (integer indices, any order)."""
        st_off = np.concatenate([[0], np.cumsum(self.n_strokes, dtype=np.int64)])
        pt_off = np.concatenate([[0], np.cumsum(self.stroke_len, dtype=np.int64)])[st_off]
        strokes = ranges(st_off[idx], st_off[idx + 1])
        pts = ranges(pt_off[idx], pt_off[idx + 1])
        return Batch(self.key_id[idx], [self.word[i] for i in idx], [self.countrycode[i] for i in idx],
                     self.recognized[idx], [self.timestamp[i] for i in idx], self.line[idx], self.xy[pts],
                     self.t[pts], self.stroke_len[strokes], self.n_strokes[idx], self.raw[idx])

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
    joined = "".join(values)
    if joined.isascii() and joined.isdigit() and min(map(len, values), default=1) >= 1 \
            and max(map(len, values), default=0) <= 18:
        return np.array(values, dtype=np.int64), [None] * len(values)
    out, errs = np.zeros(len(values), np.int64), []
    for i, v in enumerate(values):
        try:
            out[i] = parse_key_id(v)
            errs.append(None)
        except DrawingError as e:
            errs.append(e.detail)
    return out, errs


def _blocks(f, chunk_bytes: int, max_line: int, first_line: int) -> Iterator[tuple[int, bytes, list[Reject]]]:
    """Whole lines of a binary file about `chunk_bytes` at a time: (first line's number, bytes, rejects).

    A line still unfinished after `max_line` bytes is never held whole: it is skipped and rejected.
    """
    line, carry, skipping = first_line, b"", False
    while block := f.read(chunk_bytes):
        if skipping:
            end = block.find(b"\n")
            if end < 0:
                continue
            block, skipping, line = block[end + 1 :], False, line + 1
        data = carry + block
        cut = data.rfind(b"\n") + 1
        carry = data[cut:]
        if len(carry) > max_line:
            skipped = [Reject(line + data.count(b"\n", 0, cut), "", "too_large", f"line longer than {max_line} bytes")]
            carry, skipping = b"", True
        else:
            skipped = []
        if cut or skipped:
            yield line, data[:cut], skipped
            line += data.count(b"\n", 0, cut)
    if carry:
        yield line, carry, []


def _decode_lines(first_line: int, body: bytes, rejects: list[Reject]) -> list[tuple[int, str]]:
    """Numbered lines of a block, each decoded alone; lines that are not UTF-8 go to `rejects`."""
    raw = body.split(b"\n") if body else []
    if body.endswith(b"\n"):
        raw.pop()
    out = []
    for i, b in enumerate(raw):
        try:
            out.append((first_line + i, b.decode("utf-8").rstrip("\r")))
        except UnicodeDecodeError as e:
            rejects.append(Reject(first_line + i, "", "bad_encoding", str(e)[:80]))
    return out


def _max_line(limits: Limits) -> int:
    return limits.max_chars + LINE_SLACK


def _open_checked(path: Path):
    try:
        return open(path, "rb")
    except OSError as e:
        raise FileFormatError(f"{path}: cannot open ({e.strerror})") from None


def parse_csv_header(path: Path, first: bytes) -> list[str]:
    """The column names in a Kaggle CSV's first line (`first`, raw bytes); a clear error if it is not one."""
    if not first.strip():
        raise FileFormatError(f"{path}: empty first line; expected a Kaggle CSV header "
                              "(countrycode,drawing,key_id,recognized,timestamp,word)")
    try:
        header = [h.strip() for h in first.decode("utf-8-sig").strip().split(",")]
    except UnicodeDecodeError:
        raise FileFormatError(f"{path}: header is not UTF-8 text; is this a Kaggle CSV?") from None
    missing = {"drawing", "key_id"} - set(header)
    if missing or len(set(header)) != len(header):
        raise FileFormatError(f"{path}: header {header[:8]} lacks column(s) {sorted(missing)} or repeats one; "
                              "expected Kaggle's countrycode,drawing,key_id,recognized,timestamp,word")
    return header


def read_csv_header(path: Path) -> list[str]:
    """The header row of a Kaggle CSV; a clear error if it is not one."""
    with _open_checked(path) as f:
        return parse_csv_header(path, f.readline())


def read_csv(path: Path, limits: Limits = DEFAULT_LIMITS, chunk_bytes: int = CHUNK_BYTES
             ) -> Iterator[tuple[Batch, list[Reject]]]:
    """Kaggle CSV (train rows with `word`, or test rows without) in chunks; line numbers count the header."""
    with _open_checked(path) as f:
        header = parse_csv_header(path, f.readline())
        col = {name: i for i, name in enumerate(header)}
        for first, body, rejects in _blocks(f, chunk_bytes, _max_line(limits), 2):
            lns, cols = _split_rows(first, body, len(header), col["drawing"], rejects)
            yield _csv_chunk(lns, cols, col, limits, rejects), rejects


def _split_rows(first: int, body: bytes, n_fields: int, dcol: int, rejects: list[Reject]
                ) -> tuple[list[int], list[list[str]]]:
    """Line numbers and columns of a block's rows with the right number of fields; the rest go to `rejects`."""
    if not body:
        return [], [[] for _ in range(n_fields)]
    try:
        cols = _split_clean(body.decode("utf-8"), n_fields, dcol)
    except UnicodeDecodeError:
        cols = None
    if cols is not None:
        return list(range(first, first + len(cols[0]))), cols
    lns, rows = [], []
    for ln, text in _decode_lines(first, body, rejects):
        fields = _split_csv_line(text) if text.strip() else None
        if fields is None:
            rejects.append(Reject(ln, "", "empty_row"))
        elif len(fields) != n_fields:
            rejects.append(Reject(ln, "", "bad_row", f"expected {n_fields} fields, got {len(fields)}"))
        else:
            lns.append(ln)
            rows.append(fields)
    return lns, [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(n_fields)]


def _split_clean(text: str, n_fields: int, dcol: int) -> list[list[str]] | None:
    """Columns of a block in which every line is `a,b,"drawing",c...` with only the drawing quoted; else None.

    Whole-block string operations instead of a loop over lines: this is most of the CSV reading time.
    The checks make it give exactly what `_split_csv_line` gives line by line, or nothing.
    """
    text = text[:-1] if text.endswith("\n") else text
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    if not text or "\r" in text or "\0" in text:
        return None
    n = text.count("\n") + 1
    pieces = text.split('"')
    if len(pieces) != 2 * n + 1:
        return None
    glue = pieces[0::2]  # what lies outside the quotes: each inner piece must hold exactly one line break
    if n > 1 and set(map(str.count, glue[1:-1], repeat("\n"))) != {1}:
        return None
    rows = "\0".join(glue).split("\n")  # \0 marks where each quoted field was
    if len(rows) != n or set(map(str.count, rows, repeat(","))) != {n_fields - 1}:
        return None
    flat = ",".join(rows).split(",")
    cols = [flat[j::n_fields] for j in range(n_fields)]
    if set(cols[dcol]) != {"\0"}:
        return None
    cols[dcol] = pieces[1::2]
    return cols


def _csv_chunk(lns: list[int], cols: list[list[str]], col: dict, limits: Limits, rejects: list[Reject]) -> Batch:
    """Split rows (line numbers + columns) -> Batch in line order; rows that cannot be used go to `rejects`."""
    keys, key_errs = _parse_key_ids(cols[col["key_id"]])
    if any(key_errs):
        good = np.array([e is None for e in key_errs], dtype=bool)
        for i in np.flatnonzero(~good):
            rejects.append(Reject(lns[i], cols[col["key_id"]][i][:40], "bad_key_id", key_errs[i]))
        lns, keys = list(compress(lns, good)), keys[good]
        cols = [list(compress(c, good)) for c in cols]
    drawings = cols[col["drawing"]]
    fast = parse_kaggle_fields(drawings, limits)
    parts = [_csv_batch(cols, col, lns, keys, fast.ok, fast.xy, fast.stroke_len, fast.n_strokes)]
    if fast.ok.all():
        return parts[0]
    slow, slow_drawings = np.zeros(len(lns), bool), []
    for i in np.flatnonzero(~fast.ok):
        try:
            slow_drawings.append(parse_kaggle_drawing(drawings[i], limits))
            slow[i] = True
        except DrawingError as e:
            rejects.append(Reject(lns[i], str(keys[i]), e.reason, e.detail[:120]))
    if not slow_drawings:
        return parts[0]
    d = batch_from_drawings([{"key_id": 0, "line": 0}] * len(slow_drawings), slow_drawings)
    parts.append(_csv_batch(cols, col, lns, keys, slow, d.xy, d.stroke_len, d.n_strokes))
    order = np.argsort(np.concatenate([np.flatnonzero(fast.ok), np.flatnonzero(slow)]), kind="stable")
    return concat_batches(parts).take(order)


def _csv_batch(cols, col, lns, keys, rows, xy, stroke_len, n_strokes) -> Batch:
    """Metadata of `rows` (bool mask over the chunk's good rows) with their parsed strokes."""
    def column(name, default):
        return list(compress(cols[col[name]], rows)) if name in col else [default] * int(rows.sum())

    rec = column("recognized", "")
    return Batch(
        key_id=keys[rows], word=column("word", None), countrycode=column("countrycode", ""),
        recognized=np.fromiter(map(_RECOGNIZED.get, rec, repeat(-1)), dtype=np.int8, count=len(rec)),
        timestamp=column("timestamp", ""), line=np.array(lns, dtype=np.int64)[rows],
        xy=xy, t=np.full(len(xy), -1, np.int32), stroke_len=stroke_len, n_strokes=n_strokes,
        raw=np.zeros(int(rows.sum()), bool))


_RECOGNIZED = {"True": 1, "False": 0}


def read_ndjson(path: Path, limits: Limits = DEFAULT_LIMITS, chunk_bytes: int = CHUNK_BYTES
                ) -> Iterator[tuple[Batch, list[Reject]]]:
    """Google ndjson (raw strokes are simplified as Google does, keeping each kept point's time)."""
    with _open_checked(path) as f:
        for first, body, rejects in _blocks(f, chunk_bytes, _max_line(limits), 1):
            rows, drawings = [], []
            for ln, text in _decode_lines(first, body, rejects):
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
