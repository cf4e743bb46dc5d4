"""Read Kaggle's drawing CSVs (train rows with `word`, test rows without) as `(Batch, rejects)` chunks.

The header is checked first (`parse_csv_header`); then each block of rows is split into columns, in one
pass over the whole block when only the drawing field is quoted, else line by line with the csv module.
Rows with the wrong number of fields (`bad_row`), blank lines (`empty_row`) and bad key_ids (`bad_key_id`)
are rejected with their 1-based line number (the header is line 1), as are drawings the parser refuses.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from itertools import compress, repeat
from pathlib import Path

import numpy as np

from doodle.drawing.batch import Batch, FileFormatError, Reject, concat_batches
from doodle.drawing.flat import Drawings
from doodle.drawing.kaggle_fields import parse_kaggle_fields
from doodle.drawing.strokes import DEFAULT_LIMITS, DrawingError, Limits, parse_kaggle_drawing, parse_key_id
from doodle.store.line_blocks import CHUNK_BYTES, decode_lines, line_blocks, max_line_bytes, open_checked


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
    with open_checked(path) as f:
        return parse_csv_header(path, f.readline())


def read_csv(path: Path, limits: Limits = DEFAULT_LIMITS, chunk_bytes: int = CHUNK_BYTES
             ) -> Iterator[tuple[Batch, list[Reject]]]:
    """Kaggle CSV (train rows with `word`, or test rows without) in chunks; line numbers count the header."""
    with open_checked(path) as f:
        header = parse_csv_header(path, f.readline())
        col = {name: i for i, name in enumerate(header)}
        for first, body, rejects in line_blocks(f, chunk_bytes, max_line_bytes(limits), 2):
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
    for ln, text in decode_lines(first, body, rejects):
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
    if "\r" in text:  # CRLF files (csv.writer's default) first, so the last line's "\r\n" goes too
        text = text.replace("\r\n", "\n")
    text = text[:-1] if text.endswith("\n") else text
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
    ok, fast = parse_kaggle_fields(drawings, limits)
    parts = [_csv_batch(cols, col, lns, keys, ok, fast)]
    if ok.all():
        return parts[0]
    slow, slow_drawings = np.zeros(len(lns), bool), []
    for i in np.flatnonzero(~ok):
        try:
            slow_drawings.append(parse_kaggle_drawing(drawings[i], limits))
            slow[i] = True
        except DrawingError as e:
            rejects.append(Reject(lns[i], str(keys[i]), e.reason, e.detail[:120]))
    if not slow_drawings:
        return parts[0]
    parts.append(_csv_batch(cols, col, lns, keys, slow, Drawings.pack(slow_drawings)))
    order = np.argsort(np.concatenate([np.flatnonzero(ok), np.flatnonzero(slow)]), kind="stable")
    return concat_batches(parts).take(order)


def _csv_batch(cols, col, lns, keys, rows, drawings: Drawings) -> Batch:
    """Metadata of `rows` (bool mask over the chunk's good rows) with their parsed strokes."""
    def column(name, default):
        return list(compress(cols[col[name]], rows)) if name in col else [default] * int(rows.sum())

    rec = column("recognized", "")
    return Batch.of(
        drawings, key_id=keys[rows], word=column("word", None), countrycode=column("countrycode", ""),
        recognized=np.fromiter(map(_RECOGNIZED.get, rec, repeat(-1)), dtype=np.int8, count=len(rec)),
        timestamp=column("timestamp", ""), line=np.array(lns, dtype=np.int64)[rows],
        raw=np.zeros(int(rows.sum()), bool))


_RECOGNIZED = {"True": 1, "False": 0}
