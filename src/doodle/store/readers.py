"""Stream drawing files (Kaggle CSV, Google ndjson raw or simplified) as flat batches: the entry point.

`read_file` picks the reader by extension: `kaggle_csv.read_csv` for Kaggle CSVs, `read_ndjson` here for
Google's ndjson. Every reader yields `(Batch, rejects)` chunks of bounded size (`line_blocks` reads the file
in blocks and rejects over-long lines as `too_large`). Each input row ends either in a batch or in the
rejects list with its 1-based line number and reason (`empty_row` for a blank line, `bad_encoding` for a
line that is not UTF-8, `bad_row` for a CSV row with the wrong number of fields, `bad_key_id`, or the
parser's reason); a file that cannot be read at all raises `FileFormatError` naming it.

`read_csv` and `FileFormatError` can also be imported from here, as `read_file` hands out the one and raises
the other; the types live in `doodle.drawing.batch`, the CSV machinery in `doodle.store.kaggle_csv`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from doodle.drawing.batch import Batch, FileFormatError, Reject, batch_from_drawings
from doodle.drawing.strokes import DEFAULT_LIMITS, DrawingError, Limits, parse_ndjson_line
from doodle.store.collected import DECISIONS
from doodle.store.kaggle_csv import read_csv, read_csv_header
from doodle.store.line_blocks import CHUNK_BYTES, decode_lines, line_blocks, max_line_bytes, open_checked

__all__ = ["FORMATS", "FileFormatError", "is_labelled", "read_csv", "read_file", "read_ndjson", "scan_drawing_files"]

FORMATS = (".csv", ".ndjson")
NON_DRAWING_CSV = {"sample_submission.csv", "rejects.csv"}
NOT_A_DRAWING_FILE = "not a drawing file (labels or submission)"
DECISIONS_FILE = "review decisions of a collected folder (not drawings)"


def scan_drawing_files(root: Path, exclude: Path | None = None) -> tuple[list[Path], list[dict]]:
    """The drawing files under a folder, sorted, and the label files and submissions met there (`key_id,word`
    CSVs, sample_submission.csv, a collected folder's `_decisions.ndjson`), each with why it is skipped. A
    store's own files (any folder holding store.json) and everything under `exclude` are not looked at."""
    exclude = None if exclude is None else Path(exclude).resolve()

    @cache
    def excluded(folder: Path) -> bool:
        real = folder.resolve()
        inside = exclude is not None and (real == exclude or exclude in real.parents)
        return inside or (folder / "store.json").exists()

    files, skipped = [], []
    for p in sorted(Path(root).rglob("*")):
        if p.suffix not in FORMATS or not p.is_file() or any(map(excluded, [p.parent, *p.parent.parents])):
            continue
        if p.name == DECISIONS:  # its lines are key_ids and verdicts: read as drawings, each would be "guessed"
            skipped.append({"file": str(p), "reason": DECISIONS_FILE})
        elif p.name in NON_DRAWING_CSV or (p.suffix == ".csv" and _first_line(p) == ["key_id", "word"]):
            skipped.append({"file": str(p), "reason": NOT_A_DRAWING_FILE})
        else:
            files.append(p)
    return files, skipped


def _first_line(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return f.readline().decode("utf-8", "replace").strip().split(",")


def read_ndjson(path: Path, limits: Limits = DEFAULT_LIMITS, chunk_bytes: int = CHUNK_BYTES
                ) -> Iterator[tuple[Batch, list[Reject]]]:
    """Google ndjson (raw strokes are simplified as Google does, keeping each kept point's time)."""
    with open_checked(path) as f:
        for first, body, rejects in line_blocks(f, chunk_bytes, max_line_bytes(limits), 1):
            rows, drawings = [], []
            for ln, text in decode_lines(first, body, rejects):
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


_KEY_ID_FIELD = re.compile(r'"key_id"\s*:\s*("?)([0-9]{1,19})\1\s*[,}]')


def _guess_key(text: str) -> str:
    """A rejected line's key_id for the rejects file when the field reads as one ('' otherwise: never a
    number pieced together from a broken id)."""
    m = _KEY_ID_FIELD.search(text)
    return m[2] if m else ""


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
